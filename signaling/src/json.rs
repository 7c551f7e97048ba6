//! Reading a client's JSON: a nesting limit checked before anything is parsed, and error messages
//! in the protocol's own words.
//!
//! `serde_json` bounds the recursion of typed parsing, but not the depth of a value it skips or
//! keeps raw (a broadcast's `data` is relayed byte for byte): a 30 000-level array would be
//! accepted and sent to every member, whose own parser may not survive it. [`check_depth`] scans
//! the bytes once, without allocating, and refuses anything nested deeper than [`MAX_DEPTH`].
//!
//! Parse errors are described without the library's vocabulary (`u64`, `struct TaskDraft`,
//! "at line 1 column 40"): a client sees the field's path and what it should have been.

use serde::de::DeserializeOwned;

use crate::error::ErrorCode;

/// Deepest nesting of arrays and objects accepted in one frame or body (the outermost object
/// counts as one level).
pub const MAX_DEPTH: usize = 32;
/// Longest error message built from client input.
const MAX_MESSAGE_CHARS: usize = 200;

/// Why client JSON was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// `bad_json`, `nesting_too_deep` or `invalid_payload`.
    pub code: ErrorCode,
    /// For humans.
    pub message: String,
}

/// Refuses JSON that nests arrays and objects more than `max` levels deep. Only the structure
/// is looked at (strings are skipped, escapes included); malformed JSON passes, for the parser
/// to refuse.
///
/// # Errors
/// `nesting_too_deep`.
pub fn check_depth(bytes: &[u8], max: usize) -> Result<(), JsonError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return Err(JsonError {
                        code: ErrorCode::NestingTooDeep,
                        message: format!("JSON may nest at most {max} levels deep"),
                    });
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Parses client JSON into `T`: depth first, then the value.
///
/// # Errors
/// `nesting_too_deep`; `bad_json` when it is not JSON; `invalid_payload` (with the field's path)
/// when it is JSON of the wrong shape.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonError> {
    check_depth(bytes, MAX_DEPTH)?;
    match serde_json::from_slice(bytes) {
        Ok(v) => Ok(v),
        // Only a refused input pays for finding the path of the field that failed.
        Err(_) => Err(explain::<T>(bytes)),
    }
}

/// The error of parsing `bytes` as `T`, with the failing field's path.
fn explain<T: DeserializeOwned>(bytes: &[u8]) -> JsonError {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let err = match serde_path_to_error::deserialize::<_, T>(&mut de) {
        // Parsing succeeded the second time only if the trailing check failed.
        Ok(_) => match de.end() {
            Err(e) => return syntax(&e),
            Ok(()) => {
                return JsonError {
                    code: ErrorCode::InvalidPayload,
                    message: "invalid payload".into(),
                };
            }
        },
        Err(e) => e,
    };
    let path = err.path().to_string();
    let inner = err.into_inner();
    if !inner.is_data() {
        return syntax(&inner);
    }
    let what = describe(&inner);
    JsonError {
        code: ErrorCode::InvalidPayload,
        message: if path.is_empty() || path == "." {
            what
        } else {
            format!("{path}: {what}")
        },
    }
}

fn syntax(e: &serde_json::Error) -> JsonError {
    JsonError {
        code: ErrorCode::BadJson,
        message: format!(
            "invalid JSON at line {}, column {}: {}",
            e.line(),
            e.column(),
            describe(e)
        ),
    }
}

/// A parse error's message without its position and in plain words.
pub fn describe(e: &serde_json::Error) -> String {
    let mut text = e.to_string();
    if let Some(at) = text.rfind(" at line ") {
        text.truncate(at);
    }
    for (from, to) in [
        ("expected u64", "expected a non-negative integer"),
        ("expected u32", "expected a non-negative integer"),
        ("expected u16", "expected a non-negative integer"),
        ("expected u8", "expected a non-negative integer"),
        ("expected usize", "expected a non-negative integer"),
        ("expected i64", "expected an integer"),
        ("expected i32", "expected an integer"),
        ("expected f64", "expected a number"),
        ("expected a borrowed string", "expected a string"),
        ("expected unit", "expected null"),
    ] {
        if let Some(i) = text.find(from) {
            text.replace_range(i..i + from.len(), to);
        }
    }
    if let Some(i) = text.find("expected struct ") {
        text.truncate(i);
        text.push_str("expected an object");
    }
    if let Some(i) = text.find("expected enum ") {
        text.truncate(i);
        text.push_str("expected one of the allowed values");
    }
    if text.chars().count() > MAX_MESSAGE_CHARS {
        text = text.chars().take(MAX_MESSAGE_CHARS).collect::<String>() + "…";
    }
    text
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    fn nested(depth: usize) -> String {
        "[".repeat(depth) + &"]".repeat(depth)
    }

    #[test]
    fn depth_is_counted_outside_strings_only() {
        assert!(check_depth(nested(32).as_bytes(), 32).is_ok());
        let err = check_depth(nested(33).as_bytes(), 32).unwrap_err();
        assert_eq!(err.code, ErrorCode::NestingTooDeep);
        let text = format!(r#"{{"a":"{}\"{}"}}"#, "[".repeat(100), "{".repeat(100));
        assert!(check_depth(text.as_bytes(), 2).is_ok());
        assert!(check_depth(nested(30_000).as_bytes(), 32).is_err());
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        #[allow(dead_code)]
        count: u64,
        #[allow(dead_code)]
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    struct Inner {
        #[allow(dead_code)]
        flag: bool,
    }

    #[test]
    fn errors_name_the_field_in_plain_words() {
        let err = from_slice::<Body>(br#"{"count": -1}"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidPayload);
        assert_eq!(
            err.message,
            "count: invalid value: integer `-1`, expected a non-negative integer"
        );
        let err = from_slice::<Body>(br#"{"count": 1, "inner": 5}"#).unwrap_err();
        assert_eq!(
            err.message,
            "inner: invalid type: integer `5`, expected an object"
        );
        let err = from_slice::<Body>(br#"{"count": 1, "inner": {"flag": "x"}}"#).unwrap_err();
        assert_eq!(
            err.message,
            "inner.flag: invalid type: string \"x\", expected a boolean"
        );
        let err = from_slice::<Body>(br#"{}"#).unwrap_err();
        assert_eq!(err.message, "missing field `count`");
    }

    #[test]
    fn syntax_errors_are_bad_json_with_a_position() {
        let err = from_slice::<Body>(b"{\"count\": 1,").unwrap_err();
        assert_eq!(err.code, ErrorCode::BadJson);
        assert!(
            err.message.starts_with("invalid JSON at line 1, column"),
            "{}",
            err.message
        );
        let err = from_slice::<Body>(br#"{"count": 1} x"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadJson);
        let err = from_slice::<Body>(nested(40).as_bytes()).unwrap_err();
        assert_eq!(err.code, ErrorCode::NestingTooDeep);
    }
}

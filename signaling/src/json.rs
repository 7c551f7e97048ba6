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

/// The checks every client message gets before it is parsed: nested at most [`MAX_DEPTH`]
/// deep, and an object (serde would otherwise also read a struct from an array of its fields in
/// order). JSON that is not an object is refused with `not_an_object` and `message`.
///
/// # Errors
/// `nesting_too_deep`; `bad_json` when it is not JSON at all; else `not_an_object`.
pub fn check_object(
    bytes: &[u8],
    not_an_object: ErrorCode,
    message: &str,
) -> Result<(), JsonError> {
    check_depth(bytes, MAX_DEPTH)?;
    let opens_object = bytes
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .is_some_and(|&b| b == b'{');
    if opens_object {
        return Ok(());
    }
    Err(
        match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            Err(e) => syntax(&e),
            Ok(_) => JsonError {
                code: not_an_object,
                message: message.to_owned(),
            },
        },
    )
}

/// Parses a JSON object from a client into `T`: depth first, then the value.
///
/// # Errors
/// `nesting_too_deep`; `bad_json` when it is not JSON; `invalid_payload` (with the field's path)
/// when it is JSON of the wrong shape (not an object, a field of the wrong type...).
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonError> {
    check_object(bytes, ErrorCode::InvalidPayload, "expected a JSON object")?;
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
    let what = if inner.is_data() {
        describe(&inner)
    } else if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() {
        // Valid JSON, yet serde_json reports a syntax error: it does so for a value of the wrong
        // type where an enum is expected (`"role": 2`).
        "not one of the allowed values".to_owned()
    } else {
        return syntax(&inner);
    };
    JsonError {
        code: ErrorCode::InvalidPayload,
        message: clip(if path.is_empty() || path == "." {
            what
        } else {
            format!("{path}: {what}")
        }),
    }
}

/// At most [`MAX_MESSAGE_CHARS`]: an error must not echo a client's input back at any length.
fn clip(text: String) -> String {
    if text.chars().count() > MAX_MESSAGE_CHARS {
        text.chars().take(MAX_MESSAGE_CHARS).collect::<String>() + "…"
    } else {
        text
    }
}

/// A syntax error as the client is told it: `bad_json`, with where and what.
pub fn syntax(e: &serde_json::Error) -> JsonError {
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
    clip(text)
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

    // Regressions found by the `rest_bodies` fuzz target (signaling/fuzz/regressions/).

    #[test]
    fn an_array_is_not_read_as_an_object_of_its_fields() {
        #[derive(Debug, Deserialize)]
        struct Pair {
            #[allow(dead_code)]
            a: String,
            #[allow(dead_code)]
            b: String,
        }
        let err = from_slice::<Pair>(br#"["x", "y"]"#).unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str()),
            (ErrorCode::InvalidPayload, "expected a JSON object")
        );
        let err = from_slice::<Pair>(br#" ["x", "y", "z"]"#).unwrap_err();
        assert_eq!(
            err.code,
            ErrorCode::InvalidPayload,
            "valid JSON, not bad_json"
        );
        assert_eq!(
            from_slice::<Pair>(b"[\"x\"").unwrap_err().code,
            ErrorCode::BadJson
        );
    }

    #[test]
    fn a_wrong_type_where_an_enum_is_expected_is_invalid_payload() {
        #[derive(Debug, Deserialize)]
        #[serde(rename_all = "snake_case")]
        enum Role {
            Owner,
        }
        #[derive(Debug, Deserialize)]
        struct WithRole {
            #[allow(dead_code)]
            role: Role,
        }
        for body in [
            &br#"{"role": 2}"#[..],
            br#"{"role": null}"#,
            br#"{"role": []}"#,
        ] {
            let err = from_slice::<WithRole>(body).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidPayload, "{err:?}");
            assert_eq!(err.message, "role: not one of the allowed values");
        }
        let err = from_slice::<WithRole>(br#"{"role": "king"}"#).unwrap_err();
        assert!(
            err.message.starts_with("role: unknown variant `king`"),
            "{err:?}"
        );
    }

    #[test]
    fn an_error_never_echoes_a_long_field_name_whole() {
        let body = format!(r#"{{"{}": 1, "count": 1}}"#, "k".repeat(300));
        let err = from_slice::<Body>(body.as_bytes()).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidPayload);
        assert!(
            err.message.chars().count() <= MAX_MESSAGE_CHARS + 1,
            "{}",
            err.message
        );
    }
}

//! What the fuzz targets check, shared by them: the promises of `signaling::text` about the form
//! of the text it lets through, and the shape of the errors `signaling::json` gives back.
//!
//! The targets themselves live in `fuzz_targets/` (one per entry point: `client_frame` for the
//! WebSocket decoder, `rest_bodies` for the REST bodies, `text` for the text functions alone);
//! each feeds arbitrary bytes in and calls the checks below on whatever comes out. A check that
//! fails panics, which libFuzzer records as a crash with the input that caused it.
//!
//! The properties are stated from the documentation of `signaling`, not copied from its code:
//! a stored text never holds a control character (`\n`, `\r`, `\t` only in multi-line text), a
//! bidi control or one of the classic look-alike invisibles; it is in Unicode NFC (NFKC for
//! emails); and cleaning it again gives it back unchanged, so that a stored value compares equal
//! to a freshly cleaned one.

use std::sync::OnceLock;

use signaling::ErrorCode;
use signaling::json::{self, JsonError};
use signaling::text;
use unicode_normalization::{is_nfc, is_nfkc};

/// Longest error message a client can be sent for a refused frame or body, in characters: the
/// 200 `signaling::json` clips every message to, and its ellipsis.
pub const MAX_ERROR_MESSAGE_CHARS: usize = 201;

/// Whether the finding `name` is listed in `FUZZ_KNOWN` (comma-separated): a reported bug that
/// is not fixed yet, whose check is then skipped so that a run can go on looking for others.
/// Unset (the default), every check is made.
pub fn known(name: &str) -> bool {
    static KNOWN: OnceLock<Vec<String>> = OnceLock::new();
    KNOWN
        .get_or_init(|| {
            std::env::var("FUZZ_KNOWN")
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .iter()
        .any(|k| k == name)
}

/// The field name given to the text functions by the `text` target.
const FIELD: &str = "field";

/// Bidi controls (UAX #9): text holding one can display reversed. Never in stored text.
pub fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// The invisibles that make look-alike names and addresses: zero-width space, word joiner,
/// zero-width no-break space (BOM), soft hyphen. Never in stored text.
pub fn is_classic_invisible(c: char) -> bool {
    matches!(c, '\u{200B}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}')
}

/// Asserts that `line` is in the stored form of one line of text of at most `max_chars`
/// characters, and that cleaning it again gives it back.
///
/// # Panics
/// When it is not.
pub fn assert_clean_line(line: &str, max_chars: usize) {
    assert!(!line.trim().is_empty(), "clean line is blank: {line:?}");
    assert_eq!(line.trim(), line, "clean line is not trimmed");
    assert!(
        line.chars().count() <= max_chars,
        "clean line is longer than {max_chars}: {line:?}"
    );
    assert!(is_nfc(line), "clean line is not NFC: {line:?}");
    for c in line.chars() {
        assert!(!c.is_control(), "clean line holds control {c:?}: {line:?}");
        assert!(
            !matches!(c, '\u{2028}' | '\u{2029}'),
            "clean line holds a line break {c:?}: {line:?}"
        );
        assert!(!is_bidi_control(c), "clean line holds bidi {c:?}: {line:?}");
        assert!(
            !is_classic_invisible(c),
            "clean line holds invisible {c:?}: {line:?}"
        );
    }
    assert_eq!(
        text::clean_line(line, FIELD, max_chars).as_deref(),
        Ok(line),
        "clean_line is not idempotent"
    );
    // A clean line is clean multi-line text as well, unchanged.
    assert_eq!(
        text::clean_text(line, FIELD, max_chars).as_deref(),
        Ok(line),
        "a clean line is refused or changed by clean_text"
    );
}

/// Asserts that `text` is in the stored form of multi-line text of at most `max_chars`
/// characters, and that cleaning it again gives it back.
///
/// # Panics
/// When it is not.
pub fn assert_clean_text(text: &str, max_chars: usize) {
    assert!(
        text.chars().count() <= max_chars,
        "clean text is longer than {max_chars}: {text:?}"
    );
    assert!(is_nfc(text), "clean text is not NFC: {text:?}");
    for c in text.chars() {
        assert!(
            !c.is_control() || matches!(c, '\n' | '\r' | '\t'),
            "clean text holds control {c:?}: {text:?}"
        );
        assert!(!is_bidi_control(c), "clean text holds bidi {c:?}: {text:?}");
        assert!(
            !is_classic_invisible(c),
            "clean text holds invisible {c:?}: {text:?}"
        );
    }
    assert_eq!(
        text::clean_text(text, FIELD, max_chars).as_deref(),
        Ok(text),
        "clean_text is not idempotent"
    );
}

/// Asserts that `email` is in the stored form of an address, and that normalizing it again
/// gives it back.
///
/// # Panics
/// When it is not.
pub fn assert_clean_email(email: &str) {
    assert!(
        email.len() <= text::MAX_EMAIL_BYTES,
        "email is longer than {} bytes: {email:?}",
        text::MAX_EMAIL_BYTES
    );
    assert!(is_nfkc(email), "email is not NFKC: {email:?}");
    assert_eq!(
        email.to_lowercase(),
        email,
        "email is not lower-case: {email:?}"
    );
    assert!(
        !text::has_control_or_invisible(email),
        "email holds a control or invisible character: {email:?}"
    );
    assert!(
        !email.chars().any(char::is_whitespace),
        "email holds whitespace: {email:?}"
    );
    let (local, domain) = email.split_once('@').expect("email without `@`");
    assert!(
        !local.is_empty(),
        "email with an empty local part: {email:?}"
    );
    assert!(!domain.contains('@'), "email with two `@`: {email:?}");
    assert!(
        domain.split('.').count() >= 2 && domain.split('.').all(|l| !l.is_empty()),
        "email's domain is not `label.label`: {email:?}"
    );
    assert_eq!(
        text::normalize_email(email).as_deref(),
        Ok(email),
        "normalize_email is not idempotent"
    );
    // An address is one line of text too.
    assert_eq!(
        text::clean_line(email, FIELD, text::MAX_EMAIL_BYTES).as_deref(),
        Ok(email),
        "a normalized email is refused or changed by clean_line"
    );
}

/// Runs `clean_line` on `raw` and checks its output, if any.
pub fn check_line(raw: &str, max_chars: usize) -> Option<String> {
    let line = text::clean_line(raw, FIELD, max_chars).ok()?;
    assert_clean_line(&line, max_chars);
    Some(line)
}

/// Runs `clean_text` on `raw` and checks its output, if any.
pub fn check_text(raw: &str, max_chars: usize) -> Option<String> {
    let text = text::clean_text(raw, FIELD, max_chars).ok()?;
    assert_clean_text(&text, max_chars);
    Some(text)
}

/// Runs `normalize_email` on `raw` and checks its output, if any.
pub fn check_email(raw: &str) -> Option<String> {
    let email = text::normalize_email(raw).ok()?;
    assert_clean_email(&email);
    Some(email)
}

/// Whether `bytes` is one JSON value as `serde_json` reads it: RFC 8259, with the limit the RFC
/// lets a parser set on numbers (each must fit an `f64`, so `1e999` is not JSON here and may be
/// refused as `bad_json`).
pub fn is_json(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(bytes).is_ok()
}

/// Whether the first byte that is not JSON whitespace opens an object: every frame and every
/// REST body is documented as a JSON object.
pub fn is_object(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .is_some_and(|&b| b == b'{')
}

/// Asserts what every refusal of [`json::from_slice`] promises: one of its three codes,
/// `nesting_too_deep` exactly when the depth check fails, `bad_json` only for what is not JSON,
/// `invalid_payload` for JSON that is not an object, and a short message that names the problem.
///
/// # Panics
/// When it does not.
pub fn assert_json_error(bytes: &[u8], err: &JsonError) {
    let too_deep = json::check_depth(bytes, json::MAX_DEPTH).is_err();
    assert_eq!(
        err.code == ErrorCode::NestingTooDeep,
        too_deep,
        "nesting_too_deep given or missed: {err:?}"
    );
    assert!(
        matches!(
            err.code,
            ErrorCode::BadJson | ErrorCode::InvalidPayload | ErrorCode::NestingTooDeep
        ),
        "unexpected code: {err:?}"
    );
    if err.code == ErrorCode::BadJson {
        assert!(!is_json(bytes), "valid JSON refused as bad_json: {err:?}");
    }
    assert_message(&err.message);
}

/// Asserts that a due date the hub stores and sends is written in RFC 3339, as
/// `docs/protocol.md` promises: chrono writes a year past 0000–9999 as `+10000-…` or `-0001-…`,
/// which RFC 3339 (and, say, JavaScript's `Date`) cannot read.
///
/// # Panics
/// When it is not.
pub fn assert_rfc3339_date<T: serde::Serialize + std::fmt::Debug>(date: &T) {
    let value = serde_json::to_value(date).expect("a date always serializes");
    let text = value.as_str().expect("a date serializes as a string");
    let year_ok = text.len() > 4 && text.as_bytes()[..4].iter().all(u8::is_ascii_digit);
    assert!(
        year_ok,
        "a due date that is not RFC 3339: {text:?} from {date:?}"
    );
}

/// Asserts that a body [`json::from_slice`] accepted was a JSON object.
///
/// # Panics
/// When it was not.
pub fn assert_accepted_object(bytes: &[u8]) {
    assert!(
        is_object(bytes),
        "a body that is not a JSON object was accepted: {:?}",
        String::from_utf8_lossy(bytes)
    );
}

/// Asserts that an error message for a client is worth sending: not empty, not too long, and
/// not the fallback that means the parser and the error finder disagreed.
///
/// # Panics
/// When it is not.
pub fn assert_message(message: &str) {
    assert!(!message.is_empty(), "empty error message");
    assert!(
        message.chars().count() <= MAX_ERROR_MESSAGE_CHARS,
        "error message of {} characters: {message:?}",
        message.chars().count()
    );
    assert_ne!(
        message, "invalid payload",
        "the parse failed but no reason was found"
    );
}

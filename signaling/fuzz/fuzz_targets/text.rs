//! Arbitrary strings straight into `signaling::text`: `normalize_email`, `clean_line` and
//! `clean_text`, without the JSON around them (so the fuzzer spends its time on Unicode, not on
//! quoting).
//!
//! The first byte picks the character limit (0–255) for `clean_line` and `clean_text`; the rest,
//! read as UTF-8 (invalid sequences become U+FFFD), is the text. Properties, beyond "never
//! panics" (see `signaling_fuzz` for the details):
//! - every output is in its stored form (no control character but `\n`, `\r`, `\t` in
//!   multi-line text, no bidi control or look-alike invisible, NFC; NFKC and lower-case for an
//!   email; trimmed, one line, not blank for a line) and within its limit;
//! - every function is idempotent on its own output;
//! - a clean line is clean text, and a normalized email is a clean line, both unchanged;
//! - a line refused only for its length is accepted with a larger limit, and the limit counts
//!   characters of the cleaned form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signaling::text::{self, problem};
use signaling_fuzz::{check_email, check_line, check_text};

fuzz_target!(|data: &[u8]| {
    let Some((&limit, rest)) = data.split_first() else {
        return;
    };
    let max_chars = usize::from(limit);
    let raw = String::from_utf8_lossy(rest);
    check_email(&raw);
    check_text(&raw, max_chars);
    match text::clean_line(&raw, "field", max_chars) {
        Ok(_) => {
            check_line(&raw, max_chars);
        }
        Err(e) if e.problem == problem::TOO_LONG => {
            // Only the length was wrong: with room enough, the same line is accepted, and it is
            // longer than the limit that refused it.
            let line = check_line(&raw, usize::MAX).expect("a line refused only as too long");
            assert!(
                line.chars().count() > max_chars,
                "refused a line within the limit"
            );
        }
        Err(_) => {}
    }
    // Descriptions: the same length rule.
    if let Err(e) = text::clean_text(&raw, "field", max_chars)
        && e.problem == problem::TOO_LONG
    {
        let t = check_text(&raw, usize::MAX).expect("a text refused only as too long");
        assert!(
            t.chars().count() > max_chars,
            "refused a text within the limit"
        );
    }
});

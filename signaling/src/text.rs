//! Normalizing and checking the human text a client sends (emails, names, titles, descriptions)
//! before it is stored.
//!
//! Why this exists: a hostile-client probe made `ada\u{200B}@x.io` (with a zero-width space) a
//! second account that looks exactly like `ada@x.io`, and found that PostgreSQL refuses a NUL byte
//! in a `text` column (the hub answered 503) where SQLite stores it. So every piece of human text
//! goes through one of these functions on its way in: the stored form is always the normalized
//! one, and a bad input is a [`FieldError`] (a 400 with a code) before any query runs, whichever
//! database is behind.
//!
//! - [`normalize_email`]: Unicode NFKC, lower-cased, strict: no control, format or invisible
//!   character at all, since an address is an identity, not prose.
//! - [`clean_line`]: one line of text (a display name, a workspace name, a task title, an app
//!   event name): NFC, trimmed, one line, no bidi controls or look-alike invisibles; the joiners
//!   and variation selectors that emoji and Persian or Indic text need are kept.
//! - [`clean_text`]: several lines (a task description): like [`clean_line`] but kept as typed
//!   (not trimmed), with newlines and tabs allowed.
//!
//! Where the character tables come from: control characters are general category `Cc`, which is
//! exactly [`char::is_control`]; the rest is general category `Cf` (`UnicodeData.txt`) and the
//! `Default_Ignorable_Code_Point` property (`DerivedCoreProperties.txt`), Unicode 16, split by
//! what each kind of text may keep. Together the four tables below cover all of `Cf`.

use unicode_normalization::UnicodeNormalization;

/// A field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct FieldError {
    /// The field's name on the wire.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: &'static str,
}

/// The `problem` texts these functions put in a [`FieldError`]. Public so that a caller can match
/// one without repeating it, e.g. to add its own limit to a [`problem::TOO_LONG`] message (a
/// `&'static str` cannot carry the number).
pub mod problem {
    /// Nothing was left after trimming (or only joiners and variation selectors were).
    pub const EMPTY: &str = "must not be empty";
    /// More characters (or, for an email, bytes) than allowed; the caller states the limit.
    pub const TOO_LONG: &str = "too long";
    /// A line break in text that must be one line (a name, a title).
    pub const NOT_ONE_LINE: &str = "must be one line";
    /// A control character (NUL included) or an invisible character that makes look-alikes.
    pub const INVISIBLE_OR_CONTROL: &str = "contains invisible or control characters";
    /// A bidi embedding, override, isolate or mark, which can make text display reversed.
    pub const BIDI_CONTROL: &str = "contains bidirectional control characters";
    /// Not shaped like `local@domain.tld`.
    pub const NOT_AN_ADDRESS: &str = "not a valid address";
}

/// Longest email address, in bytes (RFC 5321: a 256-byte path minus its angle brackets).
pub const MAX_EMAIL_BYTES: usize = 254;

/// The email's field name on the wire.
const EMAIL_FIELD: &str = "email";

/// U+1F3F4 WAVING BLACK FLAG: the base of the emoji tag sequences (subdivision flags such as
/// Scotland's), the one place where tag characters are text rather than hidden payload.
const TAG_BASE: char = '\u{1F3F4}';

/// Normalizes an email address to the form the hub stores and looks accounts up by.
///
/// Trims surrounding whitespace, applies Unicode NFKC (so fullwidth `ａｄａ＠ｘ．ｉｏ` is
/// `ada@x.io`) and lower-cases the whole address, because the hub treats emails
/// case-insensitively: `Ada@x.io` and `ada@x.io` are one account. The result is a fixed point:
/// normalizing it again gives it back, so a stored address can be compared with a freshly
/// normalized one.
///
/// # Errors
///
/// A [`FieldError`] on `"email"` when the address contains any control (NUL included), format or
/// invisible character, variation selector or Hangul filler ([`problem::INVISIBLE_OR_CONTROL`]);
/// is longer than [`MAX_EMAIL_BYTES`] once normalized ([`problem::TOO_LONG`]); or is not
/// shaped `local@domain` with exactly one `@`, a non-empty local part, no whitespace, and a
/// domain of at least two non-empty dot-separated labels ([`problem::NOT_AN_ADDRESS`]).
pub fn normalize_email(raw: &str) -> Result<String, FieldError> {
    let error = |problem| FieldError {
        field: EMAIL_FIELD,
        problem,
    };
    let nfkc: String = raw.nfkc().collect();
    // Lower-casing can leave a string that NFKC would change (rarely), so normalize once more to
    // make the result a fixed point.
    let email: String = nfkc.trim().to_lowercase().nfkc().collect();
    if has_control_or_invisible(&email) {
        return Err(error(problem::INVISIBLE_OR_CONTROL));
    }
    if email.len() > MAX_EMAIL_BYTES {
        return Err(error(problem::TOO_LONG));
    }
    if !is_address_shaped(&email) {
        return Err(error(problem::NOT_AN_ADDRESS));
    }
    Ok(email)
}

/// Cleans one line of human text: a display name, a workspace name, a task title, an app event
/// name. Returns the form to store.
///
/// Applies Unicode NFC (so `e` + U+0301 and `é` are the same name) and trims surrounding
/// whitespace. Keeps ZWJ, ZWNJ and variation selectors inside the line, because emoji sequences
/// (👨‍👩‍👧, ❤️) and Persian or Indic words need them, and keeps tag characters only inside an
/// emoji flag sequence (🏴󠁧󠁢󠁳󠁣󠁴󠁿), where they are text rather than a hidden payload. `max_chars`
/// counts `char`s (not bytes) of the cleaned line.
///
/// # Errors
///
/// A [`FieldError`] on `field` when the line is empty after trimming, or holds nothing but
/// joiners and variation selectors ([`problem::EMPTY`]); contains a line break
/// ([`problem::NOT_ONE_LINE`]); contains any other control character, tab and NUL included, or
/// an invisible character that makes look-alikes ([`problem::INVISIBLE_OR_CONTROL`]); contains a
/// bidi control ([`problem::BIDI_CONTROL`]); or is longer than `max_chars`
/// ([`problem::TOO_LONG`]; the caller's message should state the limit).
pub fn clean_line(raw: &str, field: &'static str, max_chars: usize) -> Result<String, FieldError> {
    let error = |problem| FieldError { field, problem };
    let nfc: String = raw.nfc().collect();
    let line = nfc.trim();
    if line
        .chars()
        .all(|c| c.is_whitespace() || is_joiner_or_selector(c))
    {
        return Err(error(problem::EMPTY));
    }
    if let Some(problem) = text_problem(line, true) {
        return Err(error(problem));
    }
    if line.chars().count() > max_chars {
        return Err(error(problem::TOO_LONG));
    }
    Ok(line.to_owned())
}

/// Cleans multi-line human text: a task description. Returns the form to store.
///
/// Applies Unicode NFC but does not trim: a description is kept as typed, leading indentation
/// and trailing newlines included. Newlines (`\n`, `\r`, U+2028, U+2029) and tabs are allowed;
/// the empty string is allowed. Joiners, variation selectors and emoji flag sequences are kept,
/// as in [`clean_line`]. `max_chars` counts `char`s (not bytes) of the normalized text.
///
/// # Errors
///
/// A [`FieldError`] on `field` when the text contains a control character other than `\n`, `\r`
/// and `\t` (NUL included) or an invisible character that makes look-alikes
/// ([`problem::INVISIBLE_OR_CONTROL`]); contains a bidi control ([`problem::BIDI_CONTROL`]); or
/// is longer than `max_chars` ([`problem::TOO_LONG`]).
pub fn clean_text(raw: &str, field: &'static str, max_chars: usize) -> Result<String, FieldError> {
    let error = |problem| FieldError { field, problem };
    let text: String = raw.nfc().collect();
    if let Some(problem) = text_problem(&text, false) {
        return Err(error(problem));
    }
    if text.chars().count() > max_chars {
        return Err(error(problem::TOO_LONG));
    }
    Ok(text)
}

/// Whether `s` contains a control character (category `Cc`, NUL included) or any format,
/// invisible or joining character: every `Cf` character, variation selectors, the combining
/// grapheme joiner, Hangul fillers and the other default-ignorable code points.
///
/// This is the strict set [`normalize_email`] refuses, for identifiers where no such character
/// has a legitimate use. Human text is checked with [`clean_line`] or [`clean_text`] instead,
/// which allow the joiners that emoji and some scripts need.
pub fn has_control_or_invisible(s: &str) -> bool {
    s.chars().any(|c| {
        c.is_control()
            || is_bidi_control(c)
            || is_invisible(c)
            || is_joiner_or_selector(c)
            || is_other_format(c)
    })
}

/// The first problem with the characters of `s`, as human text; `one_line` for a name or title.
fn text_problem(s: &str, one_line: bool) -> Option<&'static str> {
    // Byte offset before which characters belong to an emoji tag sequence already accepted.
    let mut accepted_until = 0;
    for (at, c) in s.char_indices() {
        if at < accepted_until {
            continue;
        }
        if c == TAG_BASE {
            let after = at + c.len_utf8();
            accepted_until = after + tag_sequence_len(&s[after..]);
            continue;
        }
        if let Some(problem) = char_problem(c, one_line) {
            return Some(problem);
        }
    }
    None
}

/// What is wrong with `c` in human text, if anything.
fn char_problem(c: char, one_line: bool) -> Option<&'static str> {
    if one_line && is_line_break(c) {
        return Some(problem::NOT_ONE_LINE);
    }
    if c.is_control() {
        let allowed = !one_line && matches!(c, '\n' | '\r' | '\t');
        return (!allowed).then_some(problem::INVISIBLE_OR_CONTROL);
    }
    if is_bidi_control(c) {
        return Some(problem::BIDI_CONTROL);
    }
    if is_invisible(c) {
        return Some(problem::INVISIBLE_OR_CONTROL);
    }
    None
}

/// The length in bytes of the tag characters that complete an emoji tag sequence at the start of
/// `rest` (the text just after a [`TAG_BASE`]): one or more tag specs U+E0020–U+E007E, then
/// CANCEL TAG U+E007F (UTS #51, `emoji_tag_sequence`). Zero when there is no complete sequence,
/// so that stray tag characters are refused as hidden text.
fn tag_sequence_len(rest: &str) -> usize {
    let mut len = 0;
    for c in rest.chars() {
        match c {
            '\u{E0020}'..='\u{E007E}' => len += c.len_utf8(),
            '\u{E007F}' if len > 0 => return len + c.len_utf8(),
            _ => return 0,
        }
    }
    0
}

/// Whether `email` (already normalized, no controls) is shaped `local@domain.tld`.
fn is_address_shaped(email: &str) -> bool {
    if email.chars().any(char::is_whitespace) {
        return false;
    }
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    // Splitting on dots refuses an empty domain, a leading or trailing dot and `..` at once.
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && domain.split('.').all(|label| !label.is_empty())
}

/// The mandatory line breaks of UAX #14 (`BK`, `CR`, `LF`, `NL`): what ends a line on screen.
fn is_line_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\u{0B}' | '\u{0C}' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}'
    )
}

/// Bidi controls (category `Cf`, UAX #9): ALM, LRM, RLM, the embeddings and overrides LRE–RLO
/// and the isolates LRI–PDI. Refused everywhere: an RLO can make `exe.txt` read as `txt.exe`.
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// Invisible characters with no place in the text the hub stores: they make look-alikes or hide
/// a payload. `Default_Ignorable_Code_Point` minus the bidi controls and the joiners and
/// selectors (which have their own tables), plus the interlinear annotation characters
/// U+FFF9–U+FFFB (`Cf`). Unassigned default-ignorable code points are included, so that a
/// future Unicode version cannot slip a new invisible character through.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'                       // soft hyphen
            | '\u{034F}'                 // combining grapheme joiner
            | '\u{115F}' | '\u{1160}'    // Hangul choseong and jungseong fillers
            | '\u{17B4}' | '\u{17B5}'    // Khmer inherent vowels
            | '\u{180E}'                 // Mongolian vowel separator
            | '\u{200B}'                 // zero-width space
            | '\u{2060}'..='\u{2065}'    // word joiner, invisible operators (+ U+2065 unassigned)
            | '\u{206A}'..='\u{206F}'    // deprecated format characters
            | '\u{3164}'                 // Hangul filler
            | '\u{FEFF}'                 // zero-width no-break space (BOM)
            | '\u{FFA0}'                 // halfwidth Hangul filler
            | '\u{FFF0}'..='\u{FFFB}'    // unassigned, then interlinear annotations
            | '\u{1BCA0}'..='\u{1BCA3}'  // shorthand format controls
            | '\u{1D173}'..='\u{1D17A}'  // musical beam and phrase controls
            | '\u{E0000}'..='\u{E00FF}'  // language tag, tags (allowed only in emoji flags)
            | '\u{E01F0}'..='\u{E0FFF}'  // unassigned default-ignorables
    )
}

/// Joiners and variation selectors: invisible, but emoji sequences (👨‍👩‍👧, ❤️) and Persian,
/// Indic and Mongolian text need them, so human text keeps them and only emails refuse them.
fn is_joiner_or_selector(c: char) -> bool {
    matches!(
        c,
        '\u{200C}' | '\u{200D}'          // ZWNJ, ZWJ
            | '\u{180B}'..='\u{180D}'    // Mongolian free variation selectors
            | '\u{180F}'
            | '\u{FE00}'..='\u{FE0F}'    // variation selectors
            | '\u{E0100}'..='\u{E01EF}'  // variation selectors supplement
    )
}

/// The rest of category `Cf`: prepended number and end-of-ayah signs (Arabic, Syriac, Kaithi)
/// and Egyptian hieroglyph format controls. They display as part of their script's text, so
/// human text keeps them; emails refuse them with every other format character.
fn is_other_format(c: char) -> bool {
    matches!(
        c,
        '\u{0600}'..='\u{0605}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bad addresses the hub's API tests already refuse, and the dot cases added with this
    /// module.
    const BAD_EMAILS: &[&str] = &[
        "", "ada", "@x.io", "ada@", "ada@x", "a b@x.io", "a@x.io.", "a@@x.io", "a@x..io", "a@.x.io",
    ];

    fn problem_of<T: std::fmt::Debug>(result: Result<T, FieldError>) -> &'static str {
        result.unwrap_err().problem
    }

    #[test]
    fn email_is_trimmed_and_lowercased() {
        assert_eq!(
            normalize_email(" Ada@Example.COM ").unwrap(),
            "ada@example.com"
        );
    }

    #[test]
    fn fullwidth_email_normalizes_to_ascii() {
        assert_eq!(
            normalize_email("ａｄａ＠ｅｘａｍｐｌｅ．ｃｏｍ").unwrap(),
            "ada@example.com"
        );
    }

    #[test]
    fn badly_shaped_emails_are_refused() {
        for bad in BAD_EMAILS {
            let error = normalize_email(bad).expect_err(bad);
            assert_eq!(error.field, "email");
            assert_eq!(error.problem, problem::NOT_AN_ADDRESS, "{bad:?}");
        }
    }

    #[test]
    fn nul_is_refused_in_every_function() {
        assert_eq!(
            problem_of(normalize_email("ada\0@x.io")),
            problem::INVISIBLE_OR_CONTROL
        );
        assert_eq!(
            problem_of(clean_line("Ada\0", "name", 100)),
            problem::INVISIBLE_OR_CONTROL
        );
        assert_eq!(
            problem_of(clean_text("notes\0", "description", 100)),
            problem::INVISIBLE_OR_CONTROL
        );
    }

    #[test]
    fn zero_width_look_alike_email_is_refused() {
        for sneaky in [
            "ada\u{200B}@x.io",
            "ada\u{200D}@x.io",
            "ada@x\u{FEFF}.io",
            "\u{202E}ada@x.io",
            "ada\u{00AD}@x.io",
            "ada\u{FE0F}@x.io",
            "ada\u{034F}@x.io",
            "ada\u{3164}@x.io",
            "ada\u{FFA0}@x.io",
            "ada\u{E0041}@x.io",
            "ada\u{0600}@x.io",
        ] {
            let error = normalize_email(sneaky).expect_err(sneaky);
            assert_eq!(error.problem, problem::INVISIBLE_OR_CONTROL, "{sneaky:?}");
        }
    }

    #[test]
    fn email_longer_than_254_bytes_is_refused() {
        let at_limit = format!("{}@example.com", "a".repeat(MAX_EMAIL_BYTES - 12));
        assert_eq!(at_limit.len(), 254);
        assert_eq!(normalize_email(&at_limit).unwrap(), at_limit);
        let over = format!("{}@example.com", "a".repeat(MAX_EMAIL_BYTES - 11));
        assert_eq!(over.len(), 255);
        assert_eq!(problem_of(normalize_email(&over)), problem::TOO_LONG);
    }

    #[test]
    fn normalizing_an_email_twice_changes_nothing() {
        for raw in [
            " Ada@Example.COM ",
            "ａｄａ＠ｅｘａｍｐｌｅ．ｃｏｍ",
            "İSTANBUL@x.io",
            "STRAẞE@x.io",
            "ΟΔΥΣΣΕΥΣ@x.io",
            "\u{212A}elvin@x.io",
        ] {
            let once = normalize_email(raw).unwrap();
            assert_eq!(normalize_email(&once).unwrap(), once, "{raw:?}");
        }
    }

    #[test]
    fn names_with_emoji_and_joiners_are_accepted() {
        for name in [
            "👨\u{200D}👩\u{200D}👧",
            "Ada ❤\u{FE0F}",
            "می\u{200C}خواهم",
            "Team 🏴\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}",
        ] {
            assert_eq!(clean_line(name, "name", 100).unwrap(), name);
        }
    }

    #[test]
    fn stray_tag_characters_are_refused_as_hidden_text() {
        for name in [
            "Ada\u{E0041}\u{E0042}",
            "🏴\u{E0067}\u{E0062}",
            "\u{E0067}\u{E007F}",
        ] {
            assert_eq!(
                problem_of(clean_line(name, "name", 100)),
                problem::INVISIBLE_OR_CONTROL,
                "{name:?}"
            );
        }
    }

    #[test]
    fn names_with_bidi_overrides_are_refused() {
        for name in ["Ada\u{202E}txt.exe", "\u{2066}Ada", "Ada\u{200F}"] {
            assert_eq!(
                problem_of(clean_line(name, "name", 100)),
                problem::BIDI_CONTROL
            );
        }
        assert_eq!(
            problem_of(clean_text("a\u{202E}b", "description", 100)),
            problem::BIDI_CONTROL
        );
    }

    #[test]
    fn names_with_look_alike_invisibles_are_refused() {
        for name in ["Ada\u{200B}", "A\u{2060}da", "\u{FEFF}Ada", "Ad\u{00AD}a"] {
            assert_eq!(
                problem_of(clean_line(name, "name", 100)),
                problem::INVISIBLE_OR_CONTROL
            );
        }
        assert_eq!(
            problem_of(clean_text("a\u{200B}b", "description", 100)),
            problem::INVISIBLE_OR_CONTROL
        );
    }

    #[test]
    fn names_with_a_newline_or_tab_are_refused() {
        for name in ["Ada\nLovelace", "Ada\r\nLovelace", "Ada\u{2028}Lovelace"] {
            assert_eq!(
                problem_of(clean_line(name, "name", 100)),
                problem::NOT_ONE_LINE
            );
        }
        assert_eq!(
            problem_of(clean_line("Ada\tLovelace", "name", 100)),
            problem::INVISIBLE_OR_CONTROL
        );
    }

    #[test]
    fn name_is_trimmed_and_composed() {
        assert_eq!(
            clean_line("  Jose\u{0301} \t", "name", 100).unwrap(),
            "José"
        );
    }

    #[test]
    fn whitespace_only_names_are_refused() {
        for name in ["", "   ", " \t\n ", "\u{3000}", "\u{200D}", " \u{FE0F} "] {
            let error = clean_line(name, "name", 100).expect_err(name);
            assert_eq!(
                error,
                FieldError {
                    field: "name",
                    problem: problem::EMPTY
                }
            );
        }
    }

    #[test]
    fn name_limit_counts_chars_not_bytes() {
        let hundred = "日".repeat(100);
        assert_eq!(clean_line(&hundred, "name", 100).unwrap(), hundred);
        let hundred_and_one = "日".repeat(101);
        assert_eq!(
            problem_of(clean_line(&hundred_and_one, "name", 100)),
            problem::TOO_LONG
        );
    }

    #[test]
    fn name_limit_counts_the_composed_form() {
        // 200 chars as sent (e + combining acute), 100 once composed.
        let decomposed = "e\u{0301}".repeat(100);
        assert_eq!(
            clean_line(&decomposed, "name", 100).unwrap(),
            "é".repeat(100)
        );
    }

    #[test]
    fn descriptions_keep_newlines_tabs_and_surrounding_space() {
        let typed = "  Steps:\n\t1. open\r\n\t2. close\n\n";
        assert_eq!(clean_text(typed, "description", 2000).unwrap(), typed);
    }

    #[test]
    fn descriptions_may_be_empty() {
        assert_eq!(clean_text("", "description", 2000).unwrap(), "");
    }

    #[test]
    fn descriptions_refuse_other_controls_and_respect_the_limit() {
        for bad in ["bell\u{07}", "escape\u{1B}[31m", "nel\u{85}"] {
            assert_eq!(
                problem_of(clean_text(bad, "description", 100)),
                problem::INVISIBLE_OR_CONTROL
            );
        }
        assert_eq!(
            clean_text(&"ü".repeat(10), "description", 10)
                .unwrap()
                .chars()
                .count(),
            10
        );
        assert_eq!(
            problem_of(clean_text(&"ü".repeat(11), "description", 10)),
            problem::TOO_LONG
        );
    }

    #[test]
    fn errors_name_the_callers_field() {
        let error = clean_line("", "title", 500).unwrap_err();
        assert_eq!(error.to_string(), "title: must not be empty");
    }
}

//! Any bytes as the body of every REST request, through `signaling::json::from_slice` and, when
//! it parses, the body's own `normalize`.
//!
//! Properties, beyond "never panics":
//! - only a JSON object is accepted; a refusal has one of `bad_json`, `nesting_too_deep`,
//!   `invalid_payload` (the first only for what is not JSON, the second exactly when the depth
//!   check fails) and a short message;
//! - whatever `normalize` lets through is in its stored form: emails NFKC, lower-case, without
//!   any control or invisible character; names and titles one clean, trimmed NFC line within
//!   their limit; descriptions NFC with no control character but `\n`, `\r`, `\t`; due
//!   dates written in RFC 3339;
//! - `normalize` is idempotent: normalizing its output again succeeds and changes nothing;
//! - for tasks, `validate` accepts exactly what `normalize` accepts, and a normalized draft or
//!   change set survives the JSON round trip the hub puts it through (journal, broadcast).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use signaling::json;
use signaling::rest::{
    AddMemberBody, LoginBody, MAX_NAME_CHARS, NameBody, PASSWORD_CHARS, PasswordBody, RefreshBody,
    RegisterBody, RoleBody,
};
use signaling::task::{MAX_DESCRIPTION_CHARS, MAX_TITLE_CHARS, TaskChanges, TaskDraft};
use signaling_fuzz::{
    assert_accepted_object, assert_clean_email, assert_clean_line, assert_clean_text,
    assert_json_error, assert_rfc3339_date,
};

fuzz_target!(|body: &[u8]| {
    if let Some(b) = parse::<RegisterBody>(body) {
        register(b);
    }
    if let Some(b) = parse::<LoginBody>(body)
        && let Ok(n) = b.clone().normalize()
    {
        assert_clean_email(&n.email);
        assert_eq!(
            n.password, b.password,
            "login normalize touched the password"
        );
    }
    if let Some(b) = parse::<AddMemberBody>(body)
        && let Ok(n) = b.clone().normalize()
    {
        assert_clean_email(&n.email);
        assert_eq!(n.role, b.role, "add-member normalize touched the role");
    }
    if let Some(b) = parse::<NameBody>(body)
        && let Ok(name) = b.normalize()
    {
        assert_clean_line(&name, MAX_NAME_CHARS);
        let again = NameBody { name: name.clone() }.normalize();
        assert_eq!(
            again.as_ref(),
            Ok(&name),
            "NameBody::normalize is not idempotent"
        );
    }
    // Taken as they are (hashed, looked up, matched): parsing must only not panic.
    let _ = parse::<RefreshBody>(body);
    let _ = parse::<PasswordBody>(body);
    let _ = parse::<RoleBody>(body);
    if let Some(d) = parse::<TaskDraft>(body) {
        draft(d);
    }
    if let Some(c) = parse::<TaskChanges>(body) {
        changes(c);
    }
});

/// `json::from_slice`, with its refusal checked.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Option<T> {
    match json::from_slice::<T>(body) {
        Ok(v) => {
            assert_accepted_object(body);
            Some(v)
        }
        Err(e) => {
            assert_json_error(body, &e);
            None
        }
    }
}

fn register(b: RegisterBody) {
    let Ok(n) = b.clone().normalize() else {
        return;
    };
    assert_clean_email(&n.email);
    assert_clean_line(&n.name, MAX_NAME_CHARS);
    // The password is hashed, not stored as text: only its length is checked, and it is kept
    // byte for byte.
    assert_eq!(
        n.password, b.password,
        "register normalize touched the password"
    );
    assert!(PASSWORD_CHARS.contains(&n.password.chars().count()));
    let again = n
        .clone()
        .normalize()
        .expect("a normalized registration is refused");
    assert_eq!(
        (again.email, again.name, again.password),
        (n.email, n.name, n.password),
        "RegisterBody::normalize is not idempotent"
    );
}

fn draft(d: TaskDraft) {
    let mut n = d.clone();
    let normalized = n.normalize();
    assert_eq!(
        d.validate().is_ok(),
        normalized.is_ok(),
        "TaskDraft: validate and normalize disagree: {:?} vs {normalized:?}",
        d.validate()
    );
    if normalized.is_err() {
        return;
    }
    assert_clean_line(&n.title, MAX_TITLE_CHARS);
    if let Some(desc) = &n.description {
        assert_clean_text(desc, MAX_DESCRIPTION_CHARS);
    }
    if let Some(due) = &n.due_date {
        assert_rfc3339_date(due);
    }
    let mut again = n.clone();
    assert_eq!(again.normalize(), Ok(()), "a normalized draft is refused");
    assert_eq!(again, n, "TaskDraft::normalize is not idempotent");
    let encoded = serde_json::to_vec(&n).expect("a TaskDraft always serializes");
    let back: TaskDraft = json::from_slice(&encoded).unwrap_or_else(|e| {
        panic!(
            "a normalized draft does not read back: {e:?} in {}",
            String::from_utf8_lossy(&encoded)
        )
    });
    assert_eq!(back, n, "a normalized draft changes through JSON");
}

fn changes(c: TaskChanges) {
    let mut n = c.clone();
    let normalized = n.normalize();
    assert_eq!(
        c.validate().is_ok(),
        normalized.is_ok(),
        "TaskChanges: validate and normalize disagree: {:?} vs {normalized:?}",
        c.validate()
    );
    if normalized.is_err() {
        return;
    }
    assert!(!n.is_empty(), "normalized changes change nothing");
    if let Some(t) = &n.title {
        assert_clean_line(t, MAX_TITLE_CHARS);
    }
    if let Some(Some(desc)) = &n.description {
        assert_clean_text(desc, MAX_DESCRIPTION_CHARS);
    }
    if let Some(Some(due)) = &n.due_date {
        assert_rfc3339_date(due);
    }
    let mut again = n.clone();
    assert_eq!(again.normalize(), Ok(()), "normalized changes are refused");
    assert_eq!(again, n, "TaskChanges::normalize is not idempotent");
    let encoded = serde_json::to_vec(&n).expect("TaskChanges always serialize");
    let back: TaskChanges = json::from_slice(&encoded).unwrap_or_else(|e| {
        panic!(
            "normalized changes do not read back: {e:?} in {}",
            String::from_utf8_lossy(&encoded)
        )
    });
    assert_eq!(back, n, "normalized changes change through JSON");
}

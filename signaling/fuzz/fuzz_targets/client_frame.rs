//! Any bytes as one WebSocket text frame, through `signaling::client::decode` and `peek_ref`.
//!
//! Properties, beyond "never panics":
//! - `peek_ref` finds exactly the `ref` that `decode` reports (on success or in its error), so a
//!   frame refused before decoding (rate-limited, too large) is answered with the same `ref`;
//! - a frame nested deeper than `json::MAX_DEPTH` fails with `nesting_too_deep`, and only such
//!   a frame does; `bad_json` only for what is not JSON, `bad_envelope` for JSON that is not an
//!   object (only an object is ever decoded); every error has a short message;
//! - an `invalid_payload` for valid JSON does not call it invalid JSON;
//! - a decoded command is in its stored form (titles, descriptions, event names cleaned; due
//!   dates that write as RFC 3339; a `ref` within its limit; `presence_update` never `offline`;
//!   `task_update` changes something);
//! - a decoded command, encoded again with `serde_json` (as the hub relays and journals it) and
//!   decoded again, is the same command, with or without its `ref`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signaling::ErrorCode;
use signaling::client::{self, ClientMsg, DecodeError, MAX_EVENT_NAME_CHARS, MAX_REF_CHARS, Ref};
use signaling::json;
use signaling::task::{MAX_DESCRIPTION_CHARS, MAX_TITLE_CHARS};
use signaling::workspace::PresenceStatus;
use signaling_fuzz::{
    assert_clean_line, assert_clean_text, assert_message, assert_rfc3339_date, is_json, is_object,
};

fuzz_target!(|frame: &[u8]| {
    let decoded = client::decode(frame);
    let reference = match &decoded {
        Ok((r, _)) => r.clone(),
        Err(e) => e.reference.clone(),
    };
    assert_eq!(
        client::peek_ref(frame),
        reference,
        "peek_ref and decode disagree on the ref"
    );
    match decoded {
        Err(e) => check_error(frame, &e),
        Ok((r, msg)) => {
            assert!(
                is_object(frame),
                "a frame that is not an object was decoded"
            );
            check_ref(r.as_ref());
            check_command(&msg);
            check_round_trip(r, msg);
        }
    }
});

fn check_error(frame: &[u8], e: &DecodeError) {
    let too_deep = json::check_depth(frame, json::MAX_DEPTH).is_err();
    assert_eq!(
        e.code == ErrorCode::NestingTooDeep,
        too_deep,
        "nesting_too_deep given or missed: {e:?}"
    );
    assert!(
        matches!(
            e.code,
            ErrorCode::BadJson
                | ErrorCode::BadEnvelope
                | ErrorCode::UnknownType
                | ErrorCode::InvalidPayload
                | ErrorCode::NestingTooDeep
        ),
        "a code decode never gives: {e:?}"
    );
    if e.code == ErrorCode::BadJson {
        assert!(!is_json(frame), "valid JSON refused as bad_json: {e:?}");
    }
    if is_json(frame) && !is_object(frame) && !too_deep {
        assert_eq!(
            e.code,
            ErrorCode::BadEnvelope,
            "JSON that is not an object is not refused as bad_envelope: {e:?}"
        );
    }
    if matches!(e.code, ErrorCode::BadJson | ErrorCode::NestingTooDeep) {
        assert_eq!(e.reference, None, "a ref read from unreadable JSON: {e:?}");
    }
    if e.code == ErrorCode::InvalidPayload && is_json(frame) {
        assert!(
            !e.message.starts_with("invalid JSON"),
            "valid JSON described as invalid: {e:?}"
        );
    }
    check_ref(e.reference.as_ref());
    assert_message(&e.message);
}

fn check_ref(r: Option<&Ref>) {
    if let Some(Ref::Str(s)) = r {
        assert!(s.chars().count() <= MAX_REF_CHARS, "ref too long: {s:?}");
    }
}

fn check_command(msg: &ClientMsg) {
    let _ = msg.workspace_id();
    match msg {
        ClientMsg::PresenceUpdate(m) => {
            assert_ne!(m.status, PresenceStatus::Offline, "a client said offline")
        }
        ClientMsg::TaskCreate(m) => {
            assert_clean_line(&m.task.title, MAX_TITLE_CHARS);
            if let Some(d) = &m.task.description {
                assert_clean_text(d, MAX_DESCRIPTION_CHARS);
            }
            if let Some(due) = &m.task.due_date {
                assert_rfc3339_date(due);
            }
            assert_eq!(m.task.validate(), Ok(()), "a decoded draft fails validate");
        }
        ClientMsg::TaskUpdate(m) => {
            assert!(!m.changes.is_empty(), "a decoded update changes nothing");
            if let Some(t) = &m.changes.title {
                assert_clean_line(t, MAX_TITLE_CHARS);
            }
            if let Some(Some(d)) = &m.changes.description {
                assert_clean_text(d, MAX_DESCRIPTION_CHARS);
            }
            if let Some(Some(due)) = &m.changes.due_date {
                assert_rfc3339_date(due);
            }
            assert_eq!(
                m.changes.validate(),
                Ok(()),
                "decoded changes fail validate"
            );
        }
        ClientMsg::Broadcast(m) => {
            assert_clean_line(&m.event, MAX_EVENT_NAME_CHARS);
            // Relayed byte for byte: one JSON value by the grammar (numbers of any size).
            let data = serde_json::from_str::<serde::de::IgnoredAny>(m.data.get());
            assert!(
                data.is_ok(),
                "broadcast data is not JSON: {:?}",
                m.data.get()
            );
        }
        ClientMsg::JoinWorkspace(_)
        | ClientMsg::LeaveWorkspace(_)
        | ClientMsg::Typing(_)
        | ClientMsg::TaskDelete(_) => {}
    }
}

fn check_round_trip(r: Option<Ref>, msg: ClientMsg) {
    let encoded = serde_json::to_vec(&msg).expect("a ClientMsg always serializes");
    assert!(
        json::check_depth(&encoded, json::MAX_DEPTH).is_ok(),
        "encoding made the frame deeper"
    );
    assert_eq!(
        client::decode(&encoded),
        Ok((None, msg.clone())),
        "re-encoded frame decodes differently: {}",
        String::from_utf8_lossy(&encoded)
    );
    if let Some(r) = r {
        // `{"type":...}` becomes `{"ref":<r>,"type":...}`.
        let mut framed = b"{\"ref\":".to_vec();
        framed.extend(serde_json::to_vec(&r).expect("a Ref always serializes"));
        framed.push(b',');
        framed.extend_from_slice(&encoded[1..]);
        assert_eq!(
            client::decode(&framed),
            Ok((Some(r), msg)),
            "re-encoded frame with its ref decodes differently: {}",
            String::from_utf8_lossy(&framed)
        );
    }
}

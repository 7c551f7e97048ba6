//! Session analytics computed from what the tables hold (seed 003 BACKEND-010/011): attendance
//! over time, and the CSV form of an export.
//!
//! Pure functions over records, so that the REST route only reads and formats.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use persistence::AttendeeRecord;
use serde::Serialize;

/// Who came and when.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attendance {
    /// Joins recorded (a reconnect that rejoined counts again).
    pub joins: usize,
    /// Distinct people: accounts by account, guests by attendee id.
    pub unique: usize,
    /// Most people present at once (one person with two tabs is one).
    pub peak: usize,
    /// When that peak was first reached.
    pub peak_at: Option<DateTime<Utc>>,
    /// People present now (joined, not left).
    pub current: usize,
    /// Mean time present per join, in seconds (those still present count until `now`).
    pub mean_seconds: f64,
}

/// Attendance at `now` from the attendees' join and leave times.
pub fn attendance(records: &[AttendeeRecord], now: DateTime<Utc>) -> Attendance {
    // A person: an account by its id, a guest by its attendee id.
    let person = |r: &AttendeeRecord| r.user.map_or(r.id.as_uuid(), |u| u.as_uuid());
    // +1 at each join, -1 at each leave; at equal times a leave comes first, so that someone
    // who rejoins at the second they left is not counted twice.
    let mut steps: Vec<(DateTime<Utc>, i8, uuid::Uuid)> = Vec::with_capacity(records.len() * 2);
    let mut total_seconds = 0.0;
    for r in records {
        steps.push((r.joined_at, 1, person(r)));
        if let Some(left) = r.left_at {
            steps.push((left.max(r.joined_at), -1, person(r)));
        }
        let end = r.left_at.unwrap_or(now).max(r.joined_at);
        #[allow(clippy::cast_precision_loss)]
        let seconds = (end - r.joined_at).num_milliseconds() as f64 / 1000.0;
        total_seconds += seconds;
    }
    steps.sort_by_key(|(at, delta, _)| (*at, *delta));
    let mut open: HashMap<uuid::Uuid, u32> = HashMap::new();
    let (mut present, mut peak, mut peak_at) = (0usize, 0usize, None);
    for (at, delta, who) in steps {
        let rows = open.entry(who).or_insert(0);
        if delta > 0 {
            *rows += 1;
            if *rows == 1 {
                present += 1;
                if present > peak {
                    peak = present;
                    peak_at = Some(at);
                }
            }
        } else if *rows > 0 {
            *rows -= 1;
            if *rows == 0 {
                present -= 1;
            }
        }
    }
    #[allow(clippy::cast_precision_loss)]
    let mean_seconds = if records.is_empty() {
        0.0
    } else {
        total_seconds / records.len() as f64
    };
    Attendance {
        joins: records.len(),
        unique: open.len(),
        peak,
        peak_at,
        current: present,
        mean_seconds,
    }
}

/// One CSV line (RFC 4180: fields with a comma, quote or line break are quoted, quotes
/// doubled), ending in CRLF. A field that a spreadsheet would run as a formula (starting with
/// `=`, `+`, `-`, `@`, a tab or a carriage return, and not a plain number) is prefixed with `'`,
/// since exports carry text that attendees typed.
pub fn csv_line<S: AsRef<str>>(fields: &[S]) -> String {
    let mut line = String::new();
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        let raw = field.as_ref();
        let guarded;
        let formula =
            raw.starts_with(['=', '+', '-', '@', '\t', '\r']) && raw.parse::<f64>().is_err();
        let text = if formula {
            guarded = format!("'{raw}");
            guarded.as_str()
        } else {
            raw
        };
        if text.contains([',', '"', '\n', '\r']) {
            line.push('"');
            line.push_str(&text.replace('"', "\"\""));
            line.push('"');
        } else {
            line.push_str(text);
        }
    }
    line.push_str("\r\n");
    line
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use signaling::{AttendeeId, SessionId, UserId};

    use super::*;

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap() + Duration::minutes(minute)
    }

    fn joined(minute: i64, left: Option<i64>, user: Option<UserId>) -> AttendeeRecord {
        AttendeeRecord {
            id: AttendeeId::new(),
            session: SessionId::new(),
            user,
            display_name: "x".into(),
            email: None,
            joined_at: at(minute),
            left_at: left.map(at),
        }
    }

    #[test]
    fn peak_current_and_mean_time_come_from_join_and_leave_times() {
        let ada = UserId::new();
        let records = [
            joined(0, Some(10), Some(ada)),
            joined(5, None, None),
            joined(8, Some(9), None),
            // Ada again, the minute she left: not two of her at once.
            joined(10, None, Some(ada)),
            // And in a second tab: still one Ada.
            joined(12, None, Some(ada)),
        ];
        let a = attendance(&records, at(20));
        assert_eq!(a.joins, 5);
        assert_eq!(a.unique, 3, "ada counted once");
        assert_eq!((a.peak, a.peak_at), (3, Some(at(8))));
        assert_eq!(a.current, 2, "ada (two tabs) and the first guest");
        // 10 + 15 + 1 + 10 + 8 minutes over 5 joins.
        assert!((a.mean_seconds - 44.0 * 60.0 / 5.0).abs() < 1e-6);
        let none = attendance(&[], at(0));
        assert_eq!((none.peak, none.peak_at, none.mean_seconds), (0, None, 0.0));
    }

    #[test]
    fn csv_quotes_what_needs_it_and_defuses_formulas() {
        assert_eq!(csv_line(&["a", "b c"]), "a,b c\r\n");
        assert_eq!(
            csv_line(&["say \"hi\"", "x,y", "two\nlines"]),
            "\"say \"\"hi\"\"\",\"x,y\",\"two\nlines\"\r\n"
        );
        assert_eq!(
            csv_line(&[
                "=HYPERLINK(\"http://evil\")",
                "-2+3",
                "@SUM(A1)",
                "-1.5",
                "ok"
            ]),
            "\"'=HYPERLINK(\"\"http://evil\"\")\",'-2+3,'@SUM(A1),-1.5,ok\r\n"
        );
        assert_eq!(csv_line::<&str>(&[]), "\r\n");
    }
}

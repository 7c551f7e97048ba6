//! Session analytics computed from what the tables hold (seed 003 BACKEND-010/011): attendance
//! over time, questions and votes per minute, engagement per attendee, a connection-quality
//! summary, presenter actions, and the CSV form of an export.
//!
//! Pure functions over records, so that the REST route only reads and formats.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use persistence::{Activity, AttendeeRecord, QualitySample, Visit};
use serde::Serialize;
use signaling::AttendeeId;

/// Who came and when.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
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

/// Attendance at `now` from the visits' join and leave times.
pub fn attendance(records: &[Visit], now: DateTime<Utc>) -> Attendance {
    // A person: an account by its id, a guest by its attendee id.
    let person = |r: &Visit| r.user.map_or(r.attendee.as_uuid(), |u| u.as_uuid());
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

/// Questions and votes in one minute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Minute {
    /// The minute's start.
    pub at: DateTime<Utc>,
    /// Questions asked.
    pub questions: usize,
    /// Votes cast (each change or clear counts).
    pub votes: usize,
}

/// What one attendee did.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Engagement {
    /// The attendee.
    pub attendee_id: AttendeeId,
    /// Their display name.
    pub display_name: String,
    /// First joined.
    pub joined_at: DateTime<Utc>,
    /// Last left (none while present).
    pub left_at: Option<DateTime<Utc>>,
    /// Seconds present over all visits (until `now` for an open one).
    pub seconds_present: f64,
    /// Visits (a reconnect after the grace window is a new one).
    pub visits: usize,
    /// Questions asked.
    pub questions: usize,
    /// Votes cast.
    pub votes: usize,
    /// Mean round-trip time of its quality samples, ms.
    pub rtt_ms: Option<f64>,
    /// Mean packet loss of its samples.
    pub packet_loss: Option<f64>,
}

/// Connection quality over the session.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Quality {
    /// Samples kept.
    pub samples: usize,
    /// Median round-trip time, ms.
    pub rtt_ms_p50: Option<u32>,
    /// 95th percentile round-trip time, ms.
    pub rtt_ms_p95: Option<u32>,
    /// Mean packet loss.
    pub packet_loss_mean: Option<f64>,
    /// Mean receive bitrate, kbit/s.
    pub bitrate_kbps_mean: Option<f64>,
}

/// A presenter action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Action {
    /// When.
    pub at: DateTime<Utc>,
    /// `session_started`, `session_ended`, `screen_share_started`, `screen_share_stopped`.
    pub kind: String,
    /// Who.
    pub by: Option<AttendeeId>,
}

/// A session's analytics.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Report {
    /// Who came and when.
    pub attendance: Attendance,
    /// Questions asked in all.
    pub questions: usize,
    /// Votes cast in all.
    pub votes: usize,
    /// Questions and votes per minute (minutes with neither are left out).
    pub timeline: Vec<Minute>,
    /// Each attendee, in the order they first joined.
    pub engagement: Vec<Engagement>,
    /// Connection quality.
    pub quality: Quality,
    /// Presenter actions, in order.
    pub actions: Vec<Action>,
}

/// Everything at `now` from the tables of one session.
pub fn report(
    attendees: &[AttendeeRecord],
    visits: &[Visit],
    activity: &[Activity],
    quality: &[QualitySample],
    now: DateTime<Utc>,
) -> Report {
    let mut timeline: BTreeMap<i64, Minute> = BTreeMap::new();
    let mut per: HashMap<AttendeeId, (usize, usize)> = HashMap::new();
    let mut actions = Vec::new();
    let (mut questions, mut votes) = (0, 0);
    for a in activity {
        let minute = a.at.timestamp().div_euclid(60);
        let slot = timeline.entry(minute).or_insert_with(|| Minute {
            at: DateTime::from_timestamp(minute * 60, 0).unwrap_or(a.at),
            questions: 0,
            votes: 0,
        });
        match a.kind.as_str() {
            "question" => {
                questions += 1;
                slot.questions += 1;
                if let Some(who) = a.attendee {
                    per.entry(who).or_default().0 += 1;
                }
            }
            "vote" => {
                votes += 1;
                slot.votes += 1;
                if let Some(who) = a.attendee {
                    per.entry(who).or_default().1 += 1;
                }
            }
            kind => actions.push(Action {
                at: a.at,
                kind: kind.to_owned(),
                by: a.attendee,
            }),
        }
    }
    let mut present: HashMap<AttendeeId, (f64, usize)> = HashMap::new();
    for v in visits {
        let end = v.left_at.unwrap_or(now).max(v.joined_at);
        #[allow(clippy::cast_precision_loss)]
        let seconds = (end - v.joined_at).num_milliseconds() as f64 / 1000.0;
        let p = present.entry(v.attendee).or_default();
        p.0 += seconds;
        p.1 += 1;
    }
    let mut samples: HashMap<AttendeeId, Vec<&QualitySample>> = HashMap::new();
    for q in quality {
        samples.entry(q.attendee).or_default().push(q);
    }
    let mean = |xs: &[f64]| {
        #[allow(clippy::cast_precision_loss)]
        let n = xs.len() as f64;
        (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / n)
    };
    let engagement = attendees
        .iter()
        .map(|a| {
            let (asked, voted) = per.get(&a.id).copied().unwrap_or_default();
            let (seconds_present, visits) = present.get(&a.id).copied().unwrap_or_default();
            let mine = samples.get(&a.id).map(Vec::as_slice).unwrap_or_default();
            let rtts: Vec<f64> = mine.iter().map(|q| f64::from(q.rtt_ms)).collect();
            let losses: Vec<f64> = mine.iter().map(|q| q.packet_loss).collect();
            Engagement {
                attendee_id: a.id,
                display_name: a.display_name.clone(),
                joined_at: a.joined_at,
                left_at: a.left_at,
                seconds_present,
                visits,
                questions: asked,
                votes: voted,
                rtt_ms: mean(&rtts),
                packet_loss: mean(&losses),
            }
        })
        .collect();
    let mut rtts: Vec<u32> = quality.iter().map(|q| q.rtt_ms).collect();
    rtts.sort_unstable();
    // Nearest rank: the smallest value with at least p % of the samples at or below it.
    let pick = |p: usize| -> Option<u32> {
        let rank = (rtts.len() * p).div_ceil(100).max(1);
        rtts.get(rank - 1).copied()
    };
    let losses: Vec<f64> = quality.iter().map(|q| q.packet_loss).collect();
    let rates: Vec<f64> = quality.iter().map(|q| f64::from(q.bitrate_kbps)).collect();
    Report {
        attendance: attendance(visits, now),
        questions,
        votes,
        timeline: timeline.into_values().collect(),
        engagement,
        quality: Quality {
            samples: quality.len(),
            rtt_ms_p50: pick(50),
            rtt_ms_p95: pick(95),
            packet_loss_mean: mean(&losses),
            bitrate_kbps_mean: mean(&rates),
        },
        actions,
    }
}

/// The export as CSV: one line per attendee, after a header.
pub fn csv(report: &Report) -> String {
    let mut out = csv_line(&[
        "attendee_id",
        "display_name",
        "joined_at",
        "left_at",
        "seconds_present",
        "visits",
        "questions",
        "votes",
        "rtt_ms",
        "packet_loss",
    ]);
    let opt = |x: Option<f64>| x.map(|v| format!("{v:.3}")).unwrap_or_default();
    for e in &report.engagement {
        out.push_str(&csv_line(&[
            e.attendee_id.to_string(),
            e.display_name.clone(),
            e.joined_at.to_rfc3339(),
            e.left_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
            format!("{:.0}", e.seconds_present),
            e.visits.to_string(),
            e.questions.to_string(),
            e.votes.to_string(),
            opt(e.rtt_ms),
            opt(e.packet_loss),
        ]));
    }
    out
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

    fn joined(minute: i64, left: Option<i64>, user: Option<UserId>) -> Visit {
        Visit {
            attendee: AttendeeId::new(),
            user,
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
    fn the_report_counts_per_minute_per_attendee_and_summarizes_quality() {
        let session = SessionId::new();
        let (ada, gus) = (AttendeeId::new(), AttendeeId::new());
        let attendee = |id: AttendeeId, name: &str| AttendeeRecord {
            id,
            session,
            user: None,
            display_name: name.into(),
            email: None,
            joined_at: at(0),
            left_at: None,
        };
        let act = |minute: i64, who: AttendeeId, kind: &str| Activity {
            session,
            at: at(minute),
            attendee: Some(who),
            kind: kind.into(),
            question: None,
        };
        let activity = [
            act(0, ada, "session_started"),
            act(1, gus, "question"),
            act(1, gus, "vote"),
            act(1, ada, "vote"),
            act(3, gus, "vote"),
            act(4, ada, "screen_share_started"),
        ];
        let visits = [
            Visit {
                attendee: gus,
                user: None,
                joined_at: at(0),
                left_at: Some(at(2)),
            },
            Visit {
                attendee: gus,
                user: None,
                joined_at: at(3),
                left_at: None,
            },
        ];
        let sample = |rtt: u32, loss: f64| QualitySample {
            session,
            at: at(1),
            attendee: gus,
            rtt_ms: rtt,
            packet_loss: loss,
            bitrate_kbps: 1000,
        };
        let quality: Vec<QualitySample> = (1..=20).map(|i| sample(i * 10, 0.01)).collect();
        let r = report(
            &[attendee(ada, "Ada"), attendee(gus, "Gus")],
            &visits,
            &activity,
            &quality,
            at(5),
        );
        assert_eq!((r.questions, r.votes), (1, 3));
        let minutes: Vec<(usize, usize)> =
            r.timeline.iter().map(|m| (m.questions, m.votes)).collect();
        assert_eq!(
            minutes,
            [(0, 0), (1, 2), (0, 1), (0, 0)],
            "minutes 0, 1, 3, 4"
        );
        let g = &r.engagement[1];
        assert_eq!((g.questions, g.votes, g.visits), (1, 2, 2));
        assert!((g.seconds_present - 240.0).abs() < 1e-6, "2 + 2 minutes");
        assert_eq!(g.rtt_ms, Some(105.0));
        assert_eq!(
            (r.quality.rtt_ms_p50, r.quality.rtt_ms_p95),
            (Some(100), Some(190))
        );
        let kinds: Vec<&str> = r.actions.iter().map(|a| a.kind.as_str()).collect();
        assert_eq!(kinds, ["session_started", "screen_share_started"]);
        let csv = csv(&r);
        assert!(csv.starts_with("attendee_id,display_name,"));
        assert_eq!(csv.lines().count(), 3);
        assert!(csv.contains(",Gus,"));
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

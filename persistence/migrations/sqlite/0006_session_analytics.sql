-- What a session's analytics are computed from, written off the room as things happen:
-- each presence interval of an attendee (a reconnect is a new visit), each question, vote and
-- presenter action, and connection-quality samples (at most one per attendee per few seconds).
CREATE TABLE session_visits (
    session_id  BLOB NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    attendee_id BLOB NOT NULL REFERENCES session_attendees(id) ON DELETE CASCADE,
    joined_at   TEXT NOT NULL,
    left_at     TEXT
);
CREATE INDEX session_visits_session ON session_visits(session_id, joined_at);
CREATE INDEX session_visits_open ON session_visits(attendee_id, left_at);

CREATE TABLE session_activity (
    session_id  BLOB NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    at          TEXT NOT NULL,
    attendee_id BLOB,
    kind        TEXT NOT NULL,
    question_id BLOB
);
CREATE INDEX session_activity_session ON session_activity(session_id, at);

CREATE TABLE session_quality (
    session_id   BLOB NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    at           TEXT NOT NULL,
    attendee_id  BLOB NOT NULL,
    rtt_ms       INTEGER NOT NULL,
    packet_loss  REAL NOT NULL,
    bitrate_kbps INTEGER NOT NULL
);
CREATE INDEX session_quality_session ON session_quality(session_id, at);

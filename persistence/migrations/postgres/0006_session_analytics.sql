-- What a session's analytics are computed from, written off the room as things happen:
-- each presence interval of an attendee (a reconnect is a new visit), each question, vote and
-- presenter action, and connection-quality samples (at most one per attendee per few seconds).
CREATE TABLE session_visits (
    session_id  UUID NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    attendee_id UUID NOT NULL REFERENCES session_attendees(id) ON DELETE CASCADE,
    joined_at   TIMESTAMPTZ NOT NULL,
    left_at     TIMESTAMPTZ
);
CREATE INDEX session_visits_session ON session_visits(session_id, joined_at);
CREATE INDEX session_visits_open ON session_visits(attendee_id, left_at);

CREATE TABLE session_activity (
    session_id  UUID NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    at          TIMESTAMPTZ NOT NULL,
    attendee_id UUID,
    kind        TEXT NOT NULL,
    question_id UUID
);
CREATE INDEX session_activity_session ON session_activity(session_id, at);

CREATE TABLE session_quality (
    session_id   UUID NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    at           TIMESTAMPTZ NOT NULL,
    attendee_id  UUID NOT NULL,
    rtt_ms       BIGINT NOT NULL,
    packet_loss  DOUBLE PRECISION NOT NULL,
    bitrate_kbps BIGINT NOT NULL
);
CREATE INDEX session_quality_session ON session_quality(session_id, at);

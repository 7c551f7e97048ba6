-- Conference sessions: the relational index of what each session is and who runs it (the room's
-- journal and snapshot hold the live state), and the attendees who joined, with no more about a
-- guest than they gave.
CREATE TABLE sessions (
    id           UUID PRIMARY KEY,
    created_by   UUID REFERENCES users(id) ON DELETE SET NULL,
    title        TEXT NOT NULL,
    description  TEXT NOT NULL,
    status       TEXT NOT NULL,
    scheduled_at TIMESTAMPTZ,
    capacity     BIGINT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL
);

CREATE TABLE session_staff (
    session_id UUID NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    user_id    UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role       TEXT NOT NULL,
    added_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (session_id, user_id)
);
-- "My sessions": the staff rows of a user, then sessions by their (time-ordered) id.
CREATE INDEX session_staff_user ON session_staff(user_id, session_id);

CREATE TABLE session_attendees (
    id           UUID PRIMARY KEY,
    session_id   UUID NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    user_id      UUID REFERENCES users(id) ON DELETE SET NULL,
    display_name TEXT NOT NULL,
    email        TEXT,
    joined_at    TIMESTAMPTZ NOT NULL,
    left_at      TIMESTAMPTZ
);
CREATE INDEX session_attendees_session ON session_attendees(session_id, joined_at);

-- Which session each question belongs to (the room's journal holds the questions themselves), so
-- that `/api/v1/questions/{id}` finds its room, and when it was asked, for analytics. Written in
-- the same transaction as the journal event that asked it.
CREATE TABLE session_questions (
    id         BLOB PRIMARY KEY,
    session_id BLOB NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    asked_at   TEXT NOT NULL
);
CREATE INDEX session_questions_session ON session_questions(session_id, asked_at);

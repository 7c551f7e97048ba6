CREATE TABLE users (
    id            BLOB PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL
);

CREATE TABLE refresh_tokens (
    id          BLOB PRIMARY KEY,
    user_id     BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    family_id   BLOB NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    rotated_at  TEXT,
    revoked_at  TEXT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens(family_id);

CREATE TABLE workspaces (
    id          BLOB PRIMARY KEY,
    name        TEXT NOT NULL,
    created_by  BLOB REFERENCES users(id) ON DELETE SET NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE workspace_members (
    workspace_id BLOB NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    user_id      BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role         TEXT NOT NULL,
    added_by     BLOB REFERENCES users(id) ON DELETE SET NULL,
    joined_at    TEXT NOT NULL,
    PRIMARY KEY (workspace_id, user_id)
);
CREATE INDEX workspace_members_user ON workspace_members(user_id);

-- One row per room: the fencing epoch only grows; a writer holding an older epoch is refused.
CREATE TABLE rooms (
    room_key TEXT PRIMARY KEY,
    epoch    INTEGER NOT NULL
);

CREATE TABLE room_journal (
    room_key    TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    epoch       INTEGER NOT NULL,
    event       TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (room_key, seq)
);

CREATE TABLE room_snapshots (
    room_key TEXT PRIMARY KEY,
    epoch    INTEGER NOT NULL,
    seq      INTEGER NOT NULL,
    state    TEXT NOT NULL,
    taken_at TEXT NOT NULL
);

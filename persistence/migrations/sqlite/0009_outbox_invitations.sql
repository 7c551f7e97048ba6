-- Side effects that leave the process (emails) are written here in the same transaction as the
-- change that causes them, then sent by a worker: pending -> sent, or dead after the last retry.
-- A worker claims a job with a lease, so that a crash after sending re-sends it (at least once)
-- and a crash before never loses it.
CREATE TABLE outbox (
    id             BLOB PRIMARY KEY,
    kind           TEXT NOT NULL,
    payload        TEXT NOT NULL,
    state          TEXT NOT NULL,
    attempts       INTEGER NOT NULL,
    run_after_ms   INTEGER NOT NULL,
    lease_until_ms INTEGER,
    last_error     TEXT,
    created_ms     INTEGER NOT NULL,
    done_ms        INTEGER
);
CREATE INDEX outbox_due ON outbox (state, run_after_ms);

-- Invitations to a workspace, by email; the token is stored hashed, used once.
CREATE TABLE invitations (
    id           BLOB PRIMARY KEY,
    workspace_id BLOB NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    email        TEXT NOT NULL,
    role         TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    invited_by   BLOB NOT NULL,
    created_ms   INTEGER NOT NULL,
    expires_ms   INTEGER NOT NULL,
    accepted_ms  INTEGER,
    accepted_by  BLOB,
    revoked_ms   INTEGER
);
CREATE INDEX invitations_workspace ON invitations (workspace_id, created_ms);

-- Password reset tokens, stored hashed, used once.
CREATE TABLE password_resets (
    token_hash TEXT PRIMARY KEY,
    user_id    BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    used_ms    INTEGER
);
CREATE INDEX password_resets_user ON password_resets (user_id);

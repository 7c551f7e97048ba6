-- Side effects that leave the process (emails) are written here in the same transaction as the
-- change that causes them, then sent by a worker: pending -> sent, or dead after the last retry.
-- A worker claims a job with a lease, so that a crash after sending re-sends it (at least once)
-- and a crash before never loses it.
CREATE TABLE outbox (
    id             UUID PRIMARY KEY,
    kind           TEXT NOT NULL,
    payload        TEXT NOT NULL,
    state          TEXT NOT NULL,
    attempts       BIGINT NOT NULL,
    run_after_ms   BIGINT NOT NULL,
    lease_until_ms BIGINT,
    last_error     TEXT,
    created_ms     BIGINT NOT NULL,
    done_ms        BIGINT
);
CREATE INDEX outbox_due ON outbox (state, run_after_ms);

-- Invitations to a workspace, by email; the token is stored hashed, used once.
CREATE TABLE invitations (
    id           UUID PRIMARY KEY,
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    email        TEXT NOT NULL,
    role         TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    invited_by   UUID NOT NULL,
    created_ms   BIGINT NOT NULL,
    expires_ms   BIGINT NOT NULL,
    accepted_ms  BIGINT,
    accepted_by  UUID,
    revoked_ms   BIGINT
);
CREATE INDEX invitations_workspace ON invitations (workspace_id, created_ms);

-- Password reset tokens, stored hashed, used once.
CREATE TABLE password_resets (
    token_hash TEXT PRIMARY KEY,
    user_id    UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    used_ms    BIGINT
);
CREATE INDEX password_resets_user ON password_resets (user_id);

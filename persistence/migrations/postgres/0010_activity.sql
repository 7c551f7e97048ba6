-- The activity feed: one row per durable event of a workspace (who did what to which task,
-- category or member, and when), written with the journal batch of the event and kept past the
-- journal's trimming for the retention period (HUB_ACTIVITY_RETENTION_DAYS).
CREATE TABLE activity (
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    seq          BIGINT NOT NULL,
    at_ms        BIGINT NOT NULL,
    actor        UUID NOT NULL,
    kind         TEXT NOT NULL,
    subject      UUID,
    detail       TEXT NOT NULL,
    PRIMARY KEY (workspace_id, seq)
);
CREATE INDEX activity_kind ON activity (workspace_id, kind, at_ms);
CREATE INDEX activity_at ON activity (at_ms);

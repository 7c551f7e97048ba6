-- The conflict ledger of offline sync: what lost in a merge, until someone settles it. Written
-- with the journal batch of the event that made the entry (or settled it).
CREATE TABLE sync_conflicts (
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    id           UUID NOT NULL,
    task_id      UUID NOT NULL,
    created_ms   BIGINT NOT NULL,
    resolved_ms  BIGINT,
    resolved_by  UUID,
    resolution   TEXT,
    doc          TEXT NOT NULL,
    PRIMARY KEY (workspace_id, id)
);
CREATE INDEX sync_conflicts_open ON sync_conflicts (workspace_id, resolved_ms, id);

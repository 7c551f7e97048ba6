-- The conflict ledger of offline sync: what lost in a merge, until someone settles it. Written
-- with the journal batch of the event that made the entry (or settled it).
CREATE TABLE sync_conflicts (
    workspace_id BLOB NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    id           BLOB NOT NULL,
    task_id      BLOB NOT NULL,
    created_ms   INTEGER NOT NULL,
    resolved_ms  INTEGER,
    resolved_by  BLOB,
    resolution   TEXT,
    doc          TEXT NOT NULL,
    PRIMARY KEY (workspace_id, id)
);
CREATE INDEX sync_conflicts_open ON sync_conflicts (workspace_id, resolved_ms, id);

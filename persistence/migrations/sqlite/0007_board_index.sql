-- The task board, queryable: see the PostgreSQL migration of the same number. Text search is an
-- FTS5 table over title and description, kept in step by triggers, keyed by `rid` (an explicit
-- INTEGER PRIMARY KEY, which VACUUM never renumbers).
CREATE TABLE tasks (
    rid          INTEGER PRIMARY KEY,
    id           BLOB NOT NULL,
    workspace_id BLOB NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    title        TEXT NOT NULL,
    description  TEXT,
    status       TEXT NOT NULL,
    priority     INTEGER NOT NULL,
    completed    BOOLEAN NOT NULL,
    position     TEXT NOT NULL,
    assignee_id  BLOB,
    category_id  BLOB,
    parent_id    BLOB,
    due_sort     INTEGER NOT NULL,
    completed_ms INTEGER,
    created_ms   INTEGER NOT NULL,
    updated_ms   INTEGER NOT NULL,
    recurring    BOOLEAN NOT NULL,
    version      INTEGER NOT NULL,
    doc          TEXT NOT NULL,
    UNIQUE (workspace_id, id)
);
-- Ids are unique per workspace only: a client may name its tasks, in any workspace.
CREATE INDEX tasks_board ON tasks (workspace_id, position, created_ms, id);
CREATE INDEX tasks_status ON tasks (workspace_id, status, position);
CREATE INDEX tasks_priority ON tasks (workspace_id, priority);
CREATE INDEX tasks_assignee ON tasks (workspace_id, assignee_id);
CREATE INDEX tasks_category ON tasks (workspace_id, category_id);
CREATE INDEX tasks_parent ON tasks (workspace_id, parent_id);
CREATE INDEX tasks_due ON tasks (workspace_id, due_sort);
CREATE INDEX tasks_created ON tasks (workspace_id, created_ms);
CREATE INDEX tasks_updated ON tasks (workspace_id, updated_ms);
CREATE INDEX tasks_completed ON tasks (workspace_id, completed_ms);

CREATE VIRTUAL TABLE tasks_fts USING fts5(
    title, description, content='tasks', content_rowid='rid', tokenize='unicode61'
);
CREATE TRIGGER tasks_fts_insert AFTER INSERT ON tasks BEGIN
    INSERT INTO tasks_fts (rowid, title, description)
    VALUES (new.rid, new.title, coalesce(new.description, ''));
END;
CREATE TRIGGER tasks_fts_delete AFTER DELETE ON tasks BEGIN
    INSERT INTO tasks_fts (tasks_fts, rowid, title, description)
    VALUES ('delete', old.rid, old.title, coalesce(old.description, ''));
END;
CREATE TRIGGER tasks_fts_update AFTER UPDATE OF title, description ON tasks BEGIN
    INSERT INTO tasks_fts (tasks_fts, rowid, title, description)
    VALUES ('delete', old.rid, old.title, coalesce(old.description, ''));
    INSERT INTO tasks_fts (rowid, title, description)
    VALUES (new.rid, new.title, coalesce(new.description, ''));
END;

CREATE TABLE task_tags (
    workspace_id BLOB NOT NULL,
    task_id      BLOB NOT NULL,
    tag          TEXT NOT NULL,
    PRIMARY KEY (workspace_id, task_id, tag),
    FOREIGN KEY (workspace_id, task_id) REFERENCES tasks (workspace_id, id) ON DELETE CASCADE
);
CREATE INDEX task_tags_tag ON task_tags (workspace_id, tag);

CREATE TABLE categories (
    id           BLOB NOT NULL,
    workspace_id BLOB NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    position     INTEGER NOT NULL,
    doc          TEXT NOT NULL,
    PRIMARY KEY (workspace_id, id)
);
CREATE INDEX categories_workspace ON categories (workspace_id, position);

ALTER TABLE rooms ADD COLUMN indexed_seq INTEGER NOT NULL DEFAULT -1;

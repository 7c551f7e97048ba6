-- The task board, queryable: every task and category of every workspace, written in the same
-- transaction as the journal batch that changed them (the room's state stays the truth; these
-- rows are its index, for filters, search and paging). `doc` is the task exactly as clients see
-- it; the other columns exist to be filtered and sorted on. Times are epoch milliseconds so that
-- both backends compare them the same way; `due_sort` puts tasks without a due date last.
CREATE TABLE tasks (
    id           UUID NOT NULL,
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    title        TEXT NOT NULL,
    description  TEXT,
    status       TEXT NOT NULL,
    priority     SMALLINT NOT NULL,
    completed    BOOLEAN NOT NULL,
    position     TEXT COLLATE "C" NOT NULL,
    assignee_id  UUID,
    category_id  UUID,
    parent_id    UUID,
    due_sort     BIGINT NOT NULL,
    completed_ms BIGINT,
    created_ms   BIGINT NOT NULL,
    updated_ms   BIGINT NOT NULL,
    recurring    BOOLEAN NOT NULL,
    version      BIGINT NOT NULL,
    doc          TEXT NOT NULL,
    PRIMARY KEY (workspace_id, id),
    search       TSVECTOR GENERATED ALWAYS AS
                 (to_tsvector('simple', title || ' ' || coalesce(description, ''))) STORED
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
CREATE INDEX tasks_search ON tasks USING GIN (search);

CREATE TABLE task_tags (
    workspace_id UUID NOT NULL,
    task_id      UUID NOT NULL,
    tag          TEXT NOT NULL,
    PRIMARY KEY (workspace_id, task_id, tag),
    FOREIGN KEY (workspace_id, task_id) REFERENCES tasks (workspace_id, id) ON DELETE CASCADE
);
CREATE INDEX task_tags_tag ON task_tags (workspace_id, tag);

CREATE TABLE categories (
    id           UUID NOT NULL,
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    position     BIGINT NOT NULL,
    doc          TEXT NOT NULL,
    PRIMARY KEY (workspace_id, id)
);
CREATE INDEX categories_workspace ON categories (workspace_id, position);

-- The offset the rows above reflect, per room. An append moves it with `last_seq` only when it
-- was in step (the append writes the rows too); a room whose index is behind (rooms journaled
-- before this migration) rebuilds it when it loads.
ALTER TABLE rooms ADD COLUMN indexed_seq BIGINT NOT NULL DEFAULT -1;

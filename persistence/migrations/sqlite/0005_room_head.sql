-- The last journaled offset of each room, kept by the appends themselves: an append of offsets
-- first..last succeeds only if the head is first - 1, so a room that writes while earlier appends
-- are still in flight can never leave a hole (when one fails, the ones after it fail too). The
-- owner sets it when it loads the room (after claiming the epoch, the journal it read is the
-- whole truth).
ALTER TABLE rooms ADD COLUMN last_seq BIGINT NOT NULL DEFAULT 0;

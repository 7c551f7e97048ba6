-- A disabled account keeps its data but can no longer sign in, refresh, or use its tokens.
ALTER TABLE users ADD COLUMN disabled_at TEXT;

-- Compaction (issue 7): when an object lost its last batch row. Garbage
-- collection deletes it once this is older than its grace period, longer
-- than any read that may still hold an old row. NULL while referenced.
-- Objects written by compaction carry commit_id = -id: unique like every
-- commit id, and never returned to followers (they read commit_id > n ≥ 0).
ALTER TABLE objects ADD COLUMN unreferenced timestamptz;
CREATE INDEX objects_unreferenced ON objects (unreferenced) WHERE unreferenced IS NOT NULL;

-- Compaction (issue 7): when an object lost its last batch row. Garbage
-- collection deletes it once this is older than its grace period, longer
-- than any read that may still hold an old row. NULL while referenced.
ALTER TABLE objects ADD COLUMN unreferenced INTEGER;
CREATE INDEX objects_unreferenced ON objects (unreferenced) WHERE unreferenced IS NOT NULL;

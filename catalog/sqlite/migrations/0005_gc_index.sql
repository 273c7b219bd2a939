-- Garbage collection finds its candidates by their unreferenced stamp
-- alone, as in catalog/postgres's migrations 0006 and 0007: every object left
-- without rows is stamped (a commit that gives it none stamps it with its
-- creation time), so no GC round scans the objects table.
--
-- Objects earlier versions left without rows and unstamped are stamped
-- here with the migration's time (unix microseconds), from which their
-- grace period runs.
UPDATE objects SET unreferenced = CAST(unixepoch('subsec') * 1000000 AS INTEGER)
WHERE unreferenced IS NULL AND state <> 'deletable'
  AND NOT EXISTS (SELECT 1 FROM batches b WHERE b.object_id = objects.id);

-- objects_gc holds exactly GC's candidates (objects without rows that are
-- not tombstones), objects_tombstones the tombstones PruneTombstones
-- deletes; objects_unreferenced held both.
DROP INDEX objects_unreferenced;
CREATE INDEX objects_gc ON objects (unreferenced) WHERE unreferenced IS NOT NULL AND state <> 'deletable';
CREATE INDEX objects_tombstones ON objects (unreferenced) WHERE state = 'deletable';

-- A process of an earlier version that still has the file open (an agent
-- is refused a schema newer than it knows only when it opens it) commits
-- objects without rows unstamped; nothing collects those, as on
-- PostgreSQL: safe, since nothing with rows is ever collected. Running the
-- UPDATE above again stamps them.

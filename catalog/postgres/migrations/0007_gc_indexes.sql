-- objects_unreferenced held the tombstones too (TombstoneRetention's worth
-- of collected objects, a week by default), every one of them stamped
-- before any GC candidate's grace ran out. objects_gc holds exactly GC's
-- candidates: objects without rows that are not tombstones yet (migration
-- 0006). Objects with rows are never in it, so commits do not write it.
-- PruneTombstones has objects_tombstones.
--
-- The table lock comes first: taken statement by statement (SHARE to build
-- an index, then ACCESS EXCLUSIVE to drop one), it would be upgraded while
-- held, and a commit that read objects and then writes them would deadlock
-- with the migration. Commits and reads of objects wait for the two index
-- builds, a scan of the table each.
LOCK TABLE objects IN ACCESS EXCLUSIVE MODE;
CREATE INDEX objects_gc ON objects (unreferenced) WHERE unreferenced IS NOT NULL AND state <> 'deletable';
CREATE INDEX objects_tombstones ON objects (unreferenced) WHERE state = 'deletable';
DROP INDEX objects_unreferenced;

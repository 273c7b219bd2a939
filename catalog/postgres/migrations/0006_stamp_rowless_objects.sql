-- Garbage collection finds its candidates by their unreferenced stamp alone
-- (UnreferencedObjects). It used to take objects without rows and without a
-- stamp by their creation time, coalesce(unreferenced, created), which no
-- index serves: every GC round (each compaction interval, once per fleet)
-- scanned the objects table and probed batches once per live object. From
-- this version on every object left without rows is stamped: a commit that
-- gives an object no rows (every batch of its segment a duplicate or
-- refused) stamps it with its creation time, as a swap without new rows
-- does, and markUnreferenced (swaps, trims, topic deletion) stamps an object
-- whose last row it removes. Migration 0007 indexes the stamp.
--
-- Objects earlier versions left without rows and unstamped (such commits,
-- and topic deletions before they stamped) are stamped here, with the
-- migration's time rather than their creation's: when a topic deletion took
-- an object's last row is not known, and a grace period from now is never
-- too short. This is a migration of its own so that its scan of objects and
-- batches runs beside the agents' traffic: it takes the table locks any
-- write does, and row locks only on the objects it stamps, which no commit
-- writes; 0007 locks the table.
UPDATE objects o SET unreferenced = now()
WHERE o.unreferenced IS NULL AND o.state <> 'deletable' AND o.commit_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM batches b WHERE b.object_id = o.id);

-- Rolling upgrades: `floe migrate` runs before the agents are replaced, and
-- an agent of an earlier version still running after it commits objects
-- without rows unstamped. Nothing collects those: this version's GC never
-- lists them, and the orphan sweep leaves them (KnownObjects knows their
-- keys), so their bytes and catalog rows stay. That is safe (no version
-- ever collects an object that has rows: every listing and ForgetObject
-- check for rows) and small (only segments none of whose batches was
-- stored, committed by an old agent during the roll); an old agent that
-- holds the GC lease meanwhile still collects them by their creation time.
-- Running the UPDATE above again once the roll is done stamps what is left.

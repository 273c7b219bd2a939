-- Commit verification in the write itself (catalog/postgres/commit.go).
-- A commit writes first and verifies what its unlocked reads assumed in the
-- same statement, which saves a second index probe per partition and per
-- producer state. When an assumption no longer holds, the statement fails
-- with this function's SQLSTATE so the transaction rolls back whole; the
-- client recognises the code and starts the commit over.
CREATE FUNCTION floe_commit_check(ok boolean) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF ok IS NOT TRUE THEN
        RAISE EXCEPTION 'floe: commit read stale state' USING ERRCODE = 'FL001';
    END IF;
    RETURN true;
END
$$;

-- A commit updates the producer state of every partition it writes in one
-- statement, so with one producer spread over many partitions it rewrites
-- every row of a page at once, before the previous versions can be pruned.
-- The update stays HOT (no index entry, no new page) only if the page has
-- room for a second copy of each row: fill pages at most half-way. Pages
-- written before this migration keep their density until rewritten.
ALTER TABLE producer_state SET (fillfactor = 45);

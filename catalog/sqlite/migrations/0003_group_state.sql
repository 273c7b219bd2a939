-- Consumer group coordinator state (catalog.Catalog's SaveGroupState), as in
-- catalog/postgres's 0004_group_state.sql. SQLite has no sequences: the
-- last version handed out lives in a one-row table, so a state deleted and
-- written again never reuses a version.
CREATE TABLE group_state_versions (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    last      INTEGER NOT NULL
);
INSERT INTO group_state_versions (singleton, last) VALUES (1, 0);

CREATE TABLE group_states (
    group_id TEXT PRIMARY KEY,
    version  INTEGER NOT NULL,
    state    BLOB NOT NULL,
    updated  INTEGER NOT NULL
) WITHOUT ROWID;

-- When each group last lost its coordinator state, as in catalog/postgres's
-- 0005_group_emptied.sql: offsets retention ages a group's offsets from its
-- latest commit or from then, whichever is later (KIP-211).
CREATE TABLE group_emptied (
    group_id TEXT PRIMARY KEY,
    since    INTEGER NOT NULL
) WITHOUT ROWID;

-- Floe catalog schema for SQLite, version 1: the PostgreSQL schema's
-- semantics in SQLite types. Times are INTEGER unix microseconds, UUIDs are
-- 16-byte BLOBs, configs are JSON TEXT.

CREATE TABLE topics (
    id         BLOB PRIMARY KEY CHECK (length(id) = 16),
    name       TEXT NOT NULL UNIQUE,
    partitions INTEGER NOT NULL CHECK (partitions > 0),
    configs    TEXT NOT NULL DEFAULT '{}',
    created    INTEGER NOT NULL
);

CREATE TABLE partitions (
    topic_id         BLOB NOT NULL REFERENCES topics (id) ON DELETE CASCADE,
    partition        INTEGER NOT NULL,
    next_offset      INTEGER NOT NULL DEFAULT 0,
    log_start_offset INTEGER NOT NULL DEFAULT 0,
    last_commit_id   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (topic_id, partition)
) WITHOUT ROWID;

-- AUTOINCREMENT: an object id is never reused, so a row can never point at
-- a different object than the one it was written for.
CREATE TABLE objects (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    key       TEXT NOT NULL UNIQUE,
    size      INTEGER NOT NULL,
    created   INTEGER NOT NULL,
    state     TEXT NOT NULL DEFAULT 'live' CHECK (state IN ('live', 'compacted', 'deletable')),
    commit_id INTEGER NOT NULL,
    results   BLOB NOT NULL
);

CREATE TABLE batches (
    topic_id      BLOB NOT NULL,
    partition     INTEGER NOT NULL,
    base_offset   INTEGER NOT NULL,
    last_offset   INTEGER NOT NULL,
    object_id     INTEGER NOT NULL,
    byte_offset   INTEGER NOT NULL,
    byte_length   INTEGER NOT NULL,
    records       INTEGER NOT NULL,
    max_timestamp INTEGER NOT NULL,
    commit_id     INTEGER NOT NULL,
    PRIMARY KEY (topic_id, partition, last_offset)
) WITHOUT ROWID;
CREATE INDEX batches_commit_id ON batches (commit_id);
CREATE INDEX batches_object_id ON batches (object_id);

CREATE TABLE commit_seq (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    id        INTEGER NOT NULL
);
INSERT INTO commit_seq (singleton, id) VALUES (1, 0);

CREATE TABLE producers (
    producer_id INTEGER PRIMARY KEY AUTOINCREMENT,
    epoch       INTEGER NOT NULL,
    updated     INTEGER NOT NULL
);

CREATE TABLE producer_state (
    topic_id    BLOB NOT NULL,
    partition   INTEGER NOT NULL,
    producer_id INTEGER NOT NULL,
    epoch       INTEGER NOT NULL,
    entries     BLOB NOT NULL,
    updated     INTEGER NOT NULL,
    PRIMARY KEY (topic_id, partition, producer_id)
) WITHOUT ROWID;

CREATE TABLE group_offsets (
    group_id         TEXT NOT NULL,
    topic            TEXT NOT NULL,
    partition        INTEGER NOT NULL,
    committed_offset INTEGER NOT NULL,
    leader_epoch     INTEGER NOT NULL,
    metadata         TEXT NOT NULL,
    commit_time      INTEGER NOT NULL,
    PRIMARY KEY (group_id, topic, partition)
) WITHOUT ROWID;

CREATE TABLE agents (
    node_id   INTEGER PRIMARY KEY AUTOINCREMENT,
    id        TEXT NOT NULL UNIQUE,
    addr      TEXT NOT NULL,
    zone      TEXT NOT NULL,
    started   INTEGER NOT NULL,
    heartbeat INTEGER NOT NULL
);

CREATE TABLE membership (
    singleton  INTEGER PRIMARY KEY CHECK (singleton = 1),
    generation INTEGER NOT NULL
);
INSERT INTO membership (singleton, generation) VALUES (1, 0);

CREATE TABLE leases (
    name    TEXT PRIMARY KEY,
    holder  TEXT NOT NULL,
    expires INTEGER NOT NULL
) WITHOUT ROWID;

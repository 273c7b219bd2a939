-- Consumer group coordinator state (catalog.Catalog's SaveGroupState): one
-- opaque blob per group, written by the group's coordinator when the group
-- reaches a new stable state and read by the next coordinator after a move.
-- Versions come from one sequence so a state deleted and written again never
-- reuses a version a stale coordinator may still expect.
CREATE SEQUENCE group_state_versions AS bigint START 1;

CREATE TABLE group_states (
    group_id text PRIMARY KEY,
    version  bigint NOT NULL,
    state    bytea NOT NULL,
    updated  timestamptz NOT NULL
);

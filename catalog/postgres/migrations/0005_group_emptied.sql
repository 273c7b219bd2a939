-- When each group last lost its coordinator state (DeleteGroupState: its
-- last member left). Offsets retention (ExpireOffsets) ages a group's
-- offsets from its latest commit or from then, whichever is later, as Kafka
-- ages them from when the group became empty (KIP-211): the members of a
-- group on a quiet topic commit nothing for days, and must find their
-- offsets when they come back from a restart. A row older than the
-- retention no longer matters and is deleted by the expiry.
CREATE TABLE group_emptied (
    group_id text PRIMARY KEY,
    since    timestamptz NOT NULL
);

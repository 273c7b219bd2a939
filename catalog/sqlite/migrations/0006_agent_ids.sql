-- The node id each agent id had when it last left the fleet, as in
-- catalog/postgres's 0008_agent_ids.sql: RegisterAgent gives an id found
-- here its node id again, and ExpireAgents deletes the rows of ids that
-- left more than catalog.AgentIDRetention (a week) ago. departed is in unix
-- microseconds.
CREATE TABLE agent_ids (
    id       TEXT PRIMARY KEY,
    node_id  INTEGER NOT NULL,
    departed INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX agent_ids_departed ON agent_ids (departed);
INSERT INTO agent_ids (id, node_id, departed)
SELECT id, node_id, CAST(unixepoch('subsec') * 1000000 AS INTEGER) FROM agents;

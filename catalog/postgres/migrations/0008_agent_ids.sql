-- The node id each agent id had when it last left the fleet (its
-- deregistration or expiry deletes its agents row). RegisterAgent gives an
-- id found here its node id again instead of a new one from the identity
-- column, so that a restart with a fixed --agent-id — every pod of a
-- StatefulSet's rolling upgrade — is the same Kafka node and clients'
-- cached metadata stays right. ExpireAgents deletes the rows of ids that
-- left more than catalog.AgentIDRetention (a week) ago, so that the random
-- ids of agents run without --agent-id do not pile up.
--
-- The agents table keeps its meaning, so agents of the previous version
-- still running during the roll are not affected. They delete their rows
-- without recording them here, which is why the agents registered now are
-- recorded: the roll that brings this version keeps their node ids.
CREATE TABLE agent_ids (
    id       text PRIMARY KEY,
    node_id  integer NOT NULL,
    departed timestamptz NOT NULL
);
CREATE INDEX agent_ids_departed ON agent_ids (departed);
INSERT INTO agent_ids (id, node_id, departed) SELECT id, node_id, now() FROM agents;

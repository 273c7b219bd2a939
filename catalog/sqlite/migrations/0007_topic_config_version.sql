-- Topic config changes are numbered, as in catalog/postgres's
-- 0009_topic_config_version.sql: AlterTopicConfigs and ReplaceTopicConfigs
-- take the next number from config_seq and store it as the topic's
-- config_version; TopicConfigsSince reads the topics whose config_version
-- is above the number an agent last saw.
ALTER TABLE topics ADD COLUMN config_version INTEGER NOT NULL DEFAULT 0;
CREATE INDEX topics_config_version ON topics (config_version);
CREATE TABLE config_seq (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    id        INTEGER NOT NULL
);
INSERT INTO config_seq (singleton, id) VALUES (1, 0);

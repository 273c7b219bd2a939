-- Topic config changes are numbered, so that agents apply a change made
-- through another agent at once instead of when their cached copy of the
-- topic expires: AlterTopicConfigs and ReplaceTopicConfigs take the next
-- number from config_seq (its row lock orders them, so a reader's snapshot
-- holds every change up to the number it reads, and none after), store it
-- as the topic's config_version and NOTIFY it; TopicConfigsSince reads the
-- topics whose config_version is above the number an agent last saw.
--
-- Agents of the previous version still running during the roll change
-- configs without a number: the others apply those changes when their
-- cached copy expires, as before.
ALTER TABLE topics ADD COLUMN config_version bigint NOT NULL DEFAULT 0;
CREATE INDEX topics_config_version ON topics (config_version);
CREATE TABLE config_seq (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    id        bigint NOT NULL
);
INSERT INTO config_seq (id) VALUES (0);

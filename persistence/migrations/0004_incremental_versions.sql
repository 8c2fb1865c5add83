-- Incremental versions: a version may keep only what changed since another (`base_id`); a
-- deleted version others are built on is hidden, not removed, until the last of them goes.

ALTER TABLE versions
    ADD COLUMN base_id bigint REFERENCES versions (id),
    ADD COLUMN hidden boolean NOT NULL DEFAULT false;

CREATE INDEX versions_on_base ON versions (base_id);

-- Saved versions of a room's document: the whole state as one Yjs update each, kept outside the
-- log (compaction never touches them) until deleted or their room is.

CREATE TABLE versions (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    room text NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    label text,
    automatic boolean NOT NULL,
    authors text[] NOT NULL,
    data bytea NOT NULL
);

CREATE INDEX versions_of_room ON versions (room, id);

-- Already compact binary, as the log's updates.
ALTER TABLE versions ALTER COLUMN data SET STORAGE EXTERNAL;

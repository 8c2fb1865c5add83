-- Rooms, their append-only update log, and the snapshot each log is compacted into.
-- Sequence numbers are per room: `rooms.last_seq` is the highest one given out, raised under the
-- room's row lock by the transaction that inserts the updates, so it never repeats.

CREATE TABLE rooms (
    id text PRIMARY KEY,
    name text NOT NULL,
    language text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    last_seq bigint NOT NULL DEFAULT 0,
    -- Kept by the same transactions that write the log, so that metadata reads scan nothing.
    log_rows bigint NOT NULL DEFAULT 0,
    log_bytes bigint NOT NULL DEFAULT 0,
    snapshot_bytes bigint NOT NULL DEFAULT 0
);

CREATE TABLE updates (
    room text NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    seq bigint NOT NULL,
    data bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room, seq)
);

CREATE TABLE snapshots (
    room text PRIMARY KEY REFERENCES rooms (id) ON DELETE CASCADE,
    data bytea NOT NULL,
    through_seq bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Yjs updates are already compact binary: do not spend CPU trying to compress them.
ALTER TABLE updates ALTER COLUMN data SET STORAGE EXTERNAL;

-- Who wrote a room's items: ranges of one Yjs client's clocks, stamped by the server as it
-- stored them, with the author's name (from their token, or self-declared in their presence).

CREATE TABLE authorship (
    room text NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    client bigint NOT NULL,
    clock bigint NOT NULL,
    length bigint NOT NULL,
    name text NOT NULL,
    user_id text,
    self_declared boolean NOT NULL,
    time timestamptz NOT NULL,
    PRIMARY KEY (room, client, clock)
);

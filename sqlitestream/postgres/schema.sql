-- The sqlitestream PostgreSQL schema, version 2: the single source of truth for a new store.
-- sqlitestream/_pg_schema.py runs this script in one transaction with search_path set to the
-- store's schema (default "sqlitestream"), then stamps schema_version.
--
-- Choices, mirroring the SQLite schema where PostgreSQL allows:
-- * Ids use COLLATE "C": byte order, the same order SQLite gives, and cheaper index compares.
-- * Timestamps are timestamptz (microsecond precision, the same as the records).
-- * JSON payloads are text holding the exact JSON that was appended, not jsonb: jsonb cannot
--   hold "\u0000" in a string and rewrites numbers such as 1e300 (which would come back as an
--   int), and the contract promises that what goes in comes back equal. Query them with
--   data::jsonb when needed.
-- schema-version: 3

-- Saved session records (the log itself does not need them).
CREATE TABLE sessions (
    id                text COLLATE "C" PRIMARY KEY,
    agent_id          text COLLATE "C" NOT NULL,
    status            text NOT NULL,
    parent_session_id text COLLATE "C",
    metadata          text NOT NULL,
    context           text NOT NULL,
    tags              text NOT NULL,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL
);
CREATE INDEX sessions_by_created ON sessions (created_at, id);

CREATE TABLE runs (
    id          text COLLATE "C" PRIMARY KEY,
    session_id  text COLLATE "C" NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    status      text NOT NULL,
    input       text,
    output      text,
    error       text,
    metadata    text NOT NULL,
    turn_count  bigint NOT NULL,
    token_usage text NOT NULL,
    started_at  timestamptz NOT NULL,
    ended_at    timestamptz
);
CREATE INDEX runs_by_session ON runs (session_id, started_at, id);
CREATE INDEX runs_running ON runs (session_id, started_at) WHERE status = 'running';

-- One row per session id that has ever had an event: its sequence counter. Every append
-- locks this row (INSERT ... ON CONFLICT DO UPDATE) for the rest of its transaction, which is
-- what makes sequences gap-free across any number of connections and hosts.
CREATE TABLE streams (
    session_id text COLLATE "C" PRIMARY KEY,
    latest_seq bigint NOT NULL CHECK (latest_seq >= 0)
);

-- The log. The primary key makes a cursor page one index range scan. position (added in
-- version 2) is the event's place in the store-wide feed, taken from the feed row below.
CREATE TABLE events (
    session_id text COLLATE "C" NOT NULL,
    seq        bigint NOT NULL CHECK (seq >= 1),
    id         text COLLATE "C" NOT NULL,
    type       text NOT NULL,
    run_id     text COLLATE "C",
    ts         timestamptz NOT NULL,
    data       text NOT NULL,
    metadata   text NOT NULL,
    position   bigint NOT NULL CHECK (position >= 1),
    PRIMARY KEY (session_id, seq)
);
-- Event ids are unique store-wide: the duplicate check is one index probe, and two
-- transactions racing to store the same id cannot both succeed.
CREATE UNIQUE INDEX events_by_id ON events (id);
CREATE UNIQUE INDEX events_by_position ON events (position);

-- Exactly one row: the last position handed out. An append takes the next by updating this
-- row, which holds the row's lock until it commits: positions are handed out one transaction
-- at a time, in commit order, so a feed reader never sees a position before a lower one that
-- is still to commit (a sequence would let 11 commit before 10 and the reader skip 10).
CREATE TABLE feed (
    only_row      boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    last_position bigint NOT NULL CHECK (last_position >= 0)
);
INSERT INTO feed (last_position) VALUES (0);

-- Consumers' saved cursors (a feed position, or a sequence for a consumer of one session).
CREATE TABLE cursors (
    name       text COLLATE "C" PRIMARY KEY,
    position   bigint NOT NULL CHECK (position >= 0),
    updated_at timestamptz NOT NULL
);

-- Exactly one row: the schema version of this store.
CREATE TABLE schema_version (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    version  integer NOT NULL
);

-- Added in version 3: the byte streams of the Durable Streams protocol (sqlitestream.bytestreams),
-- apart from the sessions, in the same tables as the SQLite store's. Ids are never reused (an
-- identity): a stream created again at a name is another generation. A deleted stream that
-- still has forks keeps its row (deleted). Every change locks its stream's row
-- (SELECT ... FOR UPDATE) for the rest of its transaction: that is what keeps producer state,
-- Stream-Seq, closing, expiry and fork bookkeeping atomic across nodes. closed_by is bytea:
-- the producer stamp that closed the stream has NUL separators, which text cannot hold.
CREATE TABLE ds_streams (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text COLLATE "C" NOT NULL UNIQUE,
    content_type    text NOT NULL,
    ttl_seconds     bigint,
    expires_at      bigint,
    closed          boolean NOT NULL,
    deleted         boolean NOT NULL,
    appends         bigint NOT NULL CHECK (appends >= 0),
    size            bigint NOT NULL CHECK (size >= 0),
    stream_seq      text COLLATE "C",
    forked_from     bigint,
    fork_offset     text,
    fork_sub_offset bigint NOT NULL,
    accessed_at     bigint NOT NULL,
    closed_by       bytea,
    version         bigint NOT NULL
);
CREATE INDEX ds_streams_by_source ON ds_streams (forked_from) WHERE forked_from IS NOT NULL;
-- One row per append: end_size is the stream's size after it (the second half of its offset).
CREATE TABLE ds_chunks (
    stream_id bigint NOT NULL,
    seq       bigint NOT NULL CHECK (seq >= 1),
    end_size  bigint NOT NULL,
    data      bytea NOT NULL,
    PRIMARY KEY (stream_id, seq)
);
-- Idempotent producers: the last (epoch, seq) stored per stream and producer id, committed with
-- the append it stamps.
CREATE TABLE ds_producers (
    stream_id   bigint NOT NULL,
    producer_id text COLLATE "C" NOT NULL,
    epoch       bigint NOT NULL,
    seq         bigint NOT NULL,
    PRIMARY KEY (stream_id, producer_id)
);

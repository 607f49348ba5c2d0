-- The sqlitestream SQLite schema: the single source of truth for a new store.
-- A new store runs this script in one transaction, then stamps PRAGMA application_id and
-- PRAGMA user_version (see sqlitestream/_schema.py, which also holds the upgrade steps from
-- older versions). Timestamps are INTEGER microseconds since the Unix epoch, UTC, so that
-- comparisons are exact across time zones. JSON payloads are TEXT.
-- schema-version: 5

-- Saved session records (the log itself does not need them).
CREATE TABLE sessions (
    id                TEXT PRIMARY KEY NOT NULL,
    agent_id          TEXT NOT NULL,
    status            TEXT NOT NULL,
    parent_session_id TEXT,
    metadata          TEXT NOT NULL,
    context           TEXT NOT NULL,
    tags              TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
) STRICT;
CREATE INDEX sessions_by_created ON sessions (created_at, id);

CREATE TABLE runs (
    id          TEXT PRIMARY KEY NOT NULL,
    session_id  TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    status      TEXT NOT NULL,
    input       TEXT,
    output      TEXT,
    error       TEXT,
    metadata    TEXT NOT NULL,
    turn_count  INTEGER NOT NULL,
    token_usage TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    ended_at    INTEGER
) STRICT;
CREATE INDEX runs_by_session ON runs (session_id, started_at, id);
-- Added in version 2: get_active_run reads only the running runs.
CREATE INDEX runs_running ON runs (session_id, started_at) WHERE status = 'running';

-- One row per session id that has ever had an event: its sequence counter. An append bumps
-- latest_seq and inserts the event in the same IMMEDIATE transaction.
CREATE TABLE streams (
    session_id TEXT PRIMARY KEY NOT NULL,
    latest_seq INTEGER NOT NULL CHECK (latest_seq >= 0)
) STRICT, WITHOUT ROWID;

-- The log, clustered by (session_id, seq) so a cursor page is one contiguous range read.
-- Added in version 4: position, the event's place in the store-wide feed (commit order; one
-- writer at a time makes the next position simply the highest so far plus one).
CREATE TABLE events (
    session_id TEXT NOT NULL,
    seq        INTEGER NOT NULL CHECK (seq >= 1),
    id         TEXT NOT NULL,
    type       TEXT NOT NULL,
    run_id     TEXT,
    ts         INTEGER NOT NULL,
    data       TEXT NOT NULL,
    metadata   TEXT NOT NULL,
    position   INTEGER NOT NULL CHECK (position >= 1),
    PRIMARY KEY (session_id, seq)
) STRICT, WITHOUT ROWID;
-- Event ids are unique store-wide: the duplicate check is one index probe.
CREATE UNIQUE INDEX events_by_id ON events (id);

-- Added in version 3: the byte streams of the Durable Streams protocol (sqlitestream.bytestreams),
-- apart from the sessions. ids are never reused (AUTOINCREMENT): a stream created again at a name
-- is another generation. A deleted stream that still has forks keeps its row (deleted = 1).
CREATE TABLE ds_streams (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT NOT NULL UNIQUE,
    content_type    TEXT NOT NULL,
    ttl_seconds     INTEGER,
    expires_at      INTEGER,
    closed          INTEGER NOT NULL,
    deleted         INTEGER NOT NULL,
    appends         INTEGER NOT NULL CHECK (appends >= 0),
    size            INTEGER NOT NULL CHECK (size >= 0),
    stream_seq      TEXT,
    forked_from     INTEGER,
    fork_offset     TEXT,
    fork_sub_offset INTEGER NOT NULL,
    accessed_at     INTEGER NOT NULL,
    closed_by       TEXT,
    version         INTEGER NOT NULL
) STRICT;
CREATE INDEX ds_streams_by_source ON ds_streams (forked_from) WHERE forked_from IS NOT NULL;
-- One row per append: end_size is the stream's size after it (the second half of its offset).
CREATE TABLE ds_chunks (
    stream_id INTEGER NOT NULL,
    seq       INTEGER NOT NULL CHECK (seq >= 1),
    end_size  INTEGER NOT NULL,
    data      BLOB NOT NULL,
    PRIMARY KEY (stream_id, seq)
) STRICT, WITHOUT ROWID;
-- Idempotent producers: the last (epoch, seq) stored per stream and producer id, committed with
-- the append it stamps.
CREATE TABLE ds_producers (
    stream_id   INTEGER NOT NULL,
    producer_id TEXT NOT NULL,
    epoch       INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    PRIMARY KEY (stream_id, producer_id)
) STRICT, WITHOUT ROWID;

-- Added in version 4: the store-wide feed and consumers' cursors (sqlitestream.feed).
-- A feed page is one range scan of this index.
CREATE UNIQUE INDEX events_by_position ON events (position);

-- Exactly one row: a floor under the next position, raised to the highest position before
-- events are deleted, so that positions are never handed out twice. Appends do not write it
-- (the next position is max(highest stored, this) + 1).
CREATE TABLE feed (
    only_row      INTEGER PRIMARY KEY CHECK (only_row = 1),
    last_position INTEGER NOT NULL CHECK (last_position >= 0)
) STRICT;
INSERT INTO feed (only_row, last_position) VALUES (1, 0);

-- Consumers' saved cursors (a feed position, or a sequence for a consumer of one session).
CREATE TABLE cursors (
    name       TEXT PRIMARY KEY NOT NULL,
    position   INTEGER NOT NULL CHECK (position >= 0),
    updated_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- Added in version 5: idempotent producers on sessions (sqlitestream.producers): the last
-- (epoch, seq) accepted per session and producer id, committed with the batch it stamps, and
-- deleted with the session.
CREATE TABLE session_producers (
    session_id  TEXT NOT NULL,
    producer_id TEXT NOT NULL,
    epoch       INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    PRIMARY KEY (session_id, producer_id)
) STRICT, WITHOUT ROWID;

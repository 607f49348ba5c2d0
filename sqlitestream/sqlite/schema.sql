-- The sqlitestream SQLite schema: the single source of truth for a new store.
-- A new store runs this script in one transaction, then stamps PRAGMA application_id and
-- PRAGMA user_version (see sqlitestream/_schema.py, which also holds the upgrade steps from
-- older versions). Timestamps are INTEGER microseconds since the Unix epoch, UTC, so that
-- comparisons are exact across time zones. JSON payloads are TEXT.
-- schema-version: 3

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
-- Added in version 3: position, the event's place in the store-wide feed (commit order; one
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

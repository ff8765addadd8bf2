-- The console overview's rollups (see omnirelay/domain/rollups.py): counts, cost sums and latency buckets by
-- account and minute / hour of acceptance, written in the transaction that stores what they count. `shard`
-- spreads concurrent writers over rows (always 0 on SQLite, which has one writer).
CREATE TABLE rollups (
    account_id INTEGER NOT NULL,
    span       INTEGER NOT NULL,
    at         INTEGER NOT NULL,
    shard      INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    channel    TEXT NOT NULL,
    step       INTEGER NOT NULL,
    grp        INTEGER NOT NULL,
    error      TEXT NOT NULL,
    bucket     INTEGER NOT NULL,
    n          INTEGER NOT NULL,
    cost       REAL NOT NULL,
    PRIMARY KEY (account_id, span, at, shard, kind, channel, step, grp, error, bucket)
) WITHOUT ROWID;
CREATE INDEX rollups_age ON rollups(span, at);

-- Messages stored before the rollups existed: each engine process adds them at start, in batches
-- (`done`: whether the message was final at the migration; a later end is counted when it happens).
CREATE TABLE rollup_backlog (
    message INTEGER PRIMARY KEY,
    done    INTEGER NOT NULL
);
INSERT INTO rollup_backlog(message, done) SELECT id, done_at IS NOT NULL FROM messages;

-- What each engine process's connectors report about themselves, rewritten every few seconds, so an API
-- process (the console) shows the health of connectors that run in another process.
CREATE TABLE connector_health (
    process   TEXT NOT NULL,
    connector TEXT NOT NULL,
    channel   TEXT NOT NULL,
    at        REAL NOT NULL,
    data      TEXT NOT NULL,
    PRIMARY KEY (process, connector)
);

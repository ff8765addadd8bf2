-- The console overview's rollups (see omnirelay/domain/rollups.py): counts, cost sums and latency buckets by
-- account and minute / hour of acceptance, written in the transaction that stores what they count. `shard`
-- spreads concurrent writers (API and worker processes) over rows, so they seldom wait for each other's locks.
CREATE TABLE rollups (
    account_id bigint NOT NULL,
    span       integer NOT NULL,
    at         bigint NOT NULL,
    shard      smallint NOT NULL,
    kind       text NOT NULL,
    channel    text NOT NULL,
    step       integer NOT NULL,
    grp        smallint NOT NULL,
    error      text NOT NULL,
    bucket     integer NOT NULL,
    n          bigint NOT NULL,
    cost       double precision NOT NULL,
    PRIMARY KEY (account_id, span, at, shard, kind, channel, step, grp, error, bucket)
);
CREATE INDEX rollups_age ON rollups(span, at);

-- Messages stored before the rollups existed: each engine process adds them at start, in batches
-- (`done`: whether the message was final at the migration; a later end is counted when it happens).
CREATE TABLE rollup_backlog (
    message bigint PRIMARY KEY,
    done    boolean NOT NULL
);
INSERT INTO rollup_backlog(message, done) SELECT id, done_at IS NOT NULL FROM messages;

-- What each engine process's connectors report about themselves, rewritten every few seconds, so an API
-- process (the console) shows the health of connectors that run in another process.
CREATE TABLE connector_health (
    process   text NOT NULL,
    connector text NOT NULL,
    channel   text NOT NULL,
    at        double precision NOT NULL,
    data      text NOT NULL,
    PRIMARY KEY (process, connector)
);

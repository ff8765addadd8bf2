-- The embedded store's schema. Times are UNIX seconds (REAL); JSON columns hold msgspec-encoded bytes.

CREATE TABLE accounts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,   -- never reused: a new account must not see an old one's rows
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT,
    webhook_secret TEXT NOT NULL,
    source        TEXT NOT NULL DEFAULT 'cli',      -- 'config' (declared in the config file), 'cli' or 'first-start'
    created_at    REAL NOT NULL
);

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,                     -- public key id, shown by `keys list` and used to revoke
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    key_hash   TEXT NOT NULL UNIQUE,                 -- SHA-256 of the key: keys are random, so a fast hash is enough
    source     TEXT NOT NULL DEFAULT 'cli',
    created_at REAL NOT NULL
);

CREATE TABLE scenarios (
    key        TEXT PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    flow       BLOB NOT NULL,
    is_default INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE INDEX scenarios_account ON scenarios(account_id, created_at);

-- What one send request shares among its destinations: steps, channel content, options.
CREATE TABLE requests (
    id         INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL,
    payload    BLOB NOT NULL
);

CREATE TABLE messages (
    id           INTEGER PRIMARY KEY,
    account_id   INTEGER NOT NULL,
    message_id   TEXT NOT NULL,
    request_id   INTEGER NOT NULL REFERENCES requests(id),
    bulk_id      TEXT,
    to_json      BLOB NOT NULL,
    content_hash BLOB NOT NULL,
    created_at   REAL NOT NULL,
    state        BLOB NOT NULL,
    address      TEXT,                              -- main address: the key of capability memory
    status_group INTEGER NOT NULL DEFAULT 1,
    channel      TEXT,
    done_at      REAL,
    UNIQUE (account_id, message_id)
);
CREATE INDEX messages_bulk ON messages(account_id, bulk_id) WHERE bulk_id IS NOT NULL;
CREATE INDEX messages_created ON messages(account_id, created_at);
-- retention: finished messages are removed after a while, with their request once none of its messages is left
CREATE INDEX messages_done ON messages(done_at) WHERE done_at IS NOT NULL;
CREATE INDEX messages_request ON messages(request_id);

-- Due work for the engine: start a message, submit a step, a step's validity running out, a channel event.
CREATE TABLE jobs (
    id          INTEGER PRIMARY KEY,
    message     INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    step        INTEGER NOT NULL DEFAULT 0,
    due_at      REAL NOT NULL,
    data        BLOB,
    lease_until REAL NOT NULL DEFAULT 0
);
-- new messages wait behind those under way: two partial indexes let the claim take them in that order
CREATE INDEX jobs_due_started ON jobs(due_at) WHERE kind <> 'start';
CREATE INDEX jobs_due_new ON jobs(due_at) WHERE kind = 'start';
CREATE INDEX jobs_message ON jobs(message);

-- Final reports waiting to be pulled once by GET /omni/1/reports.
CREATE TABLE reports (
    id         INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL,
    message    INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    bulk_id    TEXT,
    channel    TEXT NOT NULL,
    body       BLOB NOT NULL
);
CREATE INDEX reports_account ON reports(account_id, id);
CREATE INDEX reports_message ON reports(message);

-- Webhook deliveries not yet acknowledged by the receiver.
CREATE TABLE outbox (
    id          INTEGER PRIMARY KEY,
    account_id  INTEGER NOT NULL,
    report_id   TEXT NOT NULL UNIQUE,
    url         TEXT NOT NULL,
    content_type TEXT NOT NULL,
    body        BLOB NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    due_at      REAL NOT NULL,
    lease_until REAL NOT NULL DEFAULT 0,
    last_error  TEXT
);
CREATE INDEX outbox_due ON outbox(due_at);

-- Capability memory: addresses a channel said it cannot reach, per account, until a time.
CREATE TABLE capabilities (
    account_id INTEGER NOT NULL,
    channel    TEXT NOT NULL,
    address    TEXT NOT NULL,
    until      REAL NOT NULL,
    PRIMARY KEY (account_id, address, channel)
);

-- Every step a channel took, with the channel's id for it: how delivery receipts find their step, and an
-- audit of submissions (a step appears once per message).
CREATE TABLE submissions (
    message     INTEGER NOT NULL,
    step        INTEGER NOT NULL,
    channel     TEXT NOT NULL,
    provider_id TEXT,
    at          REAL NOT NULL
);
CREATE INDEX submissions_message ON submissions(message);
CREATE INDEX submissions_provider ON submissions(channel, provider_id);

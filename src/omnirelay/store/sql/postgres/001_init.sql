-- The PostgreSQL schema (scale-out). Times are UNIX seconds (double precision); JSON columns hold msgspec bytes.

CREATE TABLE accounts (
    id             bigserial PRIMARY KEY,
    username       text NOT NULL UNIQUE,
    password_hash  text,
    webhook_secret text NOT NULL,
    source         text NOT NULL DEFAULT 'cli',
    created_at     double precision NOT NULL
);

CREATE TABLE api_keys (
    id         text PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    key_hash   text NOT NULL UNIQUE,
    source     text NOT NULL DEFAULT 'cli',
    created_at double precision NOT NULL
);

CREATE TABLE scenarios (
    key        text PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name       text NOT NULL,
    flow       bytea NOT NULL,
    is_default boolean NOT NULL DEFAULT false,
    created_at double precision NOT NULL,
    seq        bigserial
);
CREATE INDEX scenarios_account ON scenarios(account_id, seq);
CREATE UNIQUE INDEX scenarios_one_default ON scenarios(account_id) WHERE is_default;

CREATE TABLE requests (
    id         bigint PRIMARY KEY,
    account_id bigint NOT NULL,
    payload    bytea NOT NULL
);
CREATE SEQUENCE requests_id_seq;

-- Ids come from a sequence in batches: increasing with time, so inserts append to the indexes.
CREATE TABLE messages (
    id           bigint PRIMARY KEY,
    account_id   bigint NOT NULL,
    message_id   text NOT NULL,
    request_id   bigint NOT NULL,
    bulk_id      text,
    to_json      bytea NOT NULL,
    content_hash bytea NOT NULL,
    created_at   double precision NOT NULL,
    state        bytea NOT NULL,
    address      text,
    status_group smallint NOT NULL DEFAULT 1,
    channel      text,
    done_at      double precision,
    UNIQUE (account_id, message_id)
);
CREATE SEQUENCE messages_id_seq;
CREATE INDEX messages_bulk ON messages(account_id, bulk_id) WHERE bulk_id IS NOT NULL;
CREATE INDEX messages_created ON messages(account_id, created_at);
-- retention: finished messages are removed after a while, with their request once none of its messages is left
CREATE INDEX messages_done ON messages(done_at) WHERE done_at IS NOT NULL;
CREATE INDEX messages_request ON messages(request_id);

CREATE TABLE jobs (
    id      bigserial PRIMARY KEY,
    message bigint NOT NULL,
    kind    text NOT NULL,
    step    integer NOT NULL DEFAULT 0,
    due_at  double precision NOT NULL,
    data    bytea
);
-- new messages wait behind those under way: two partial indexes let the claim take them in that order
CREATE INDEX jobs_due_started ON jobs(due_at) WHERE kind <> 'start';
CREATE INDEX jobs_due_new ON jobs(due_at) WHERE kind = 'start';
CREATE INDEX jobs_message ON jobs(message);

CREATE TABLE reports (
    id         bigserial PRIMARY KEY,
    account_id bigint NOT NULL,
    message    bigint NOT NULL,
    message_id text NOT NULL,
    bulk_id    text,
    channel    text NOT NULL,
    body       bytea NOT NULL
);
CREATE INDEX reports_account ON reports(account_id, id);
CREATE INDEX reports_message ON reports(message);

CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    account_id   bigint NOT NULL,
    report_id    text NOT NULL UNIQUE,
    url          text NOT NULL,
    content_type text NOT NULL,
    body         bytea NOT NULL,
    attempts     integer NOT NULL DEFAULT 0,
    due_at       double precision NOT NULL,
    lease_until  double precision NOT NULL DEFAULT 0,
    last_error   text
);
CREATE INDEX outbox_due ON outbox(due_at);

CREATE TABLE capabilities (
    account_id bigint NOT NULL,
    address    text NOT NULL,
    channel    text NOT NULL,
    until      double precision NOT NULL,
    PRIMARY KEY (account_id, address, channel)
);

-- Every step a channel took, with the channel's id for it: how delivery receipts find their step, and an
-- audit of submissions (a step appears once per message).
CREATE TABLE submissions (
    message     bigint NOT NULL,
    step        integer NOT NULL,
    channel     text NOT NULL,
    provider_id text,
    at          double precision NOT NULL
);
CREATE INDEX submissions_message ON submissions(message);
CREATE INDEX submissions_provider ON submissions(channel, provider_id);

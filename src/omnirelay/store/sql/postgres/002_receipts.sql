-- Receipts (SMPP delivery receipts, WhatsApp statuses) that arrived before the provider id of their
-- submission was stored; matched and turned into jobs as soon as it is.
CREATE TABLE held_receipts (
    id          bigserial PRIMARY KEY,
    channel     text NOT NULL,
    provider_id text NOT NULL,
    data        bytea NOT NULL,
    at          double precision NOT NULL
);
CREATE INDEX held_receipts_provider ON held_receipts(channel, provider_id);

-- Token buckets shared by every process on the database (connector rate caps).
CREATE TABLE rate_buckets (
    key     text PRIMARY KEY,
    tokens  double precision NOT NULL,
    updated double precision NOT NULL
);

-- Receipts (SMPP delivery receipts, WhatsApp statuses) that arrived before the provider id of their
-- submission was stored; matched and turned into jobs as soon as it is.
CREATE TABLE held_receipts (
    id          INTEGER PRIMARY KEY,
    channel     TEXT NOT NULL,
    provider_id TEXT NOT NULL,
    data        BLOB NOT NULL,
    at          REAL NOT NULL
);
CREATE INDEX held_receipts_provider ON held_receipts(channel, provider_id);

-- Token buckets shared by every process on the database (connector rate caps).
CREATE TABLE rate_buckets (
    key     TEXT PRIMARY KEY,
    tokens  REAL NOT NULL,
    updated REAL NOT NULL
);

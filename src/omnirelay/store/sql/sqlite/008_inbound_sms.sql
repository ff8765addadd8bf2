-- Inbound (mobile-originated) SMS. Every part received is remembered by its key (its message's group, its
-- number and its text) for the dedupe window: a key seen again within it is the SMSC sending it again.
CREATE TABLE inbound_seen (
    key TEXT PRIMARY KEY,
    at  REAL NOT NULL
);
CREATE INDEX inbound_seen_at ON inbound_seen(at);
-- Parts of long messages waiting for the rest; deleted when the message is complete (or its time ran out).
CREATE TABLE inbound_parts (
    grp         TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    total       INTEGER NOT NULL,
    account_id  INTEGER NOT NULL,
    url         TEXT,
    source      TEXT NOT NULL,
    destination TEXT NOT NULL,
    text        TEXT NOT NULL,
    at          REAL NOT NULL,
    PRIMARY KEY (grp, seq)
);
CREATE INDEX inbound_parts_at ON inbound_parts(at);
-- Complete messages waiting to be pulled once by GET /sms/1/inbox/reports (for 48 hours).
CREATE TABLE inbound_messages (
    id          INTEGER PRIMARY KEY,
    account_id  INTEGER NOT NULL,
    received_at REAL NOT NULL,
    body        BLOB NOT NULL
);
CREATE INDEX inbound_messages_account ON inbound_messages(account_id, id);
CREATE INDEX inbound_messages_received ON inbound_messages(received_at);

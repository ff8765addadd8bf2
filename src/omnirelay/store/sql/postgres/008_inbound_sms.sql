-- Inbound (mobile-originated) SMS. Every part received is remembered by its key (its message's group, its
-- number and its text) for the dedupe window: a key seen again within it is the SMSC sending it again.
CREATE TABLE inbound_seen (
    key text PRIMARY KEY,
    at  double precision NOT NULL
);
CREATE INDEX inbound_seen_at ON inbound_seen(at);
-- Parts of long messages waiting for the rest; deleted when the message is complete (or its time ran out).
CREATE TABLE inbound_parts (
    grp         text NOT NULL,
    seq         integer NOT NULL,
    total       integer NOT NULL,
    account_id  bigint NOT NULL,
    url         text,
    source      text NOT NULL,
    destination text NOT NULL,
    text        text NOT NULL,
    at          double precision NOT NULL,
    PRIMARY KEY (grp, seq)
);
CREATE INDEX inbound_parts_at ON inbound_parts(at);
-- Complete messages waiting to be pulled once by GET /sms/1/inbox/reports (for 48 hours).
CREATE TABLE inbound_messages (
    id          bigserial PRIMARY KEY,
    account_id  bigint NOT NULL,
    received_at double precision NOT NULL,
    body        bytea NOT NULL
);
CREATE INDEX inbound_messages_account ON inbound_messages(account_id, id);
CREATE INDEX inbound_messages_received ON inbound_messages(received_at);

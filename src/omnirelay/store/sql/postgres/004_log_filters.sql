-- What GET /omni/1/logs filters on besides ids, times, status and channel, as the message's entry shows it: the
-- sender of its step and the network of its address (MCC and MNC apart). Written with each change of the message.
ALTER TABLE messages ADD COLUMN sender text, ADD COLUMN mcc text, ADD COLUMN mnc text;
-- The network comes from the configured number prefixes, which SQL does not know: messages stored before this
-- version are marked, and the first engine process to start fills them in (store.unindexed_messages).
UPDATE messages SET mcc = '?';
CREATE INDEX messages_unindexed ON messages(id) WHERE mcc = '?';
-- Each filter reads its own index newest first, so a rare sender or network costs no scan of the others.
CREATE INDEX messages_sender ON messages(account_id, sender, created_at, id) WHERE sender IS NOT NULL;
CREATE INDEX messages_mcc ON messages(account_id, mcc, created_at, id) WHERE mcc IS NOT NULL;
CREATE INDEX messages_mnc ON messages(account_id, mnc, created_at, id) WHERE mnc IS NOT NULL;

-- Retention drops whole partitions instead of deleting rows one by one (see omnirelay/store/partitions.py).
--
-- messages, submissions and reports are partitioned by the message id, requests by its own id, in generations
-- of 2^32 ids: generation g holds the ids [g * 2^32, (g + 1) * 2^32) and is named <table>_g<g>. The tables as
-- they were become generation 0 (attached, not copied); the id sequences move on to the next generation.
--
-- A unique index of a partitioned table must include the partition key, so each generation of messages has
-- its own unique index of the client's message ids (made with the partition), and the id a
-- client sent is looked up in every generation before it is stored (omnirelay/store/partitions.py says why
-- that is enough, also between two API processes).

ALTER TABLE messages RENAME TO messages_g0;
ALTER INDEX messages_pkey RENAME TO messages_g0_pkey;
ALTER INDEX messages_bulk RENAME TO messages_g0_bulk;
ALTER INDEX messages_created RENAME TO messages_g0_created;
ALTER INDEX messages_done RENAME TO messages_g0_done;
ALTER INDEX messages_request RENAME TO messages_g0_request;
ALTER INDEX messages_unindexed RENAME TO messages_g0_unindexed;
ALTER INDEX messages_sender RENAME TO messages_g0_sender;
ALTER INDEX messages_mcc RENAME TO messages_g0_mcc;
ALTER INDEX messages_mnc RENAME TO messages_g0_mnc;
CREATE TABLE messages (LIKE messages_g0 INCLUDING DEFAULTS) PARTITION BY RANGE (id);
ALTER TABLE messages ADD PRIMARY KEY (id);
CREATE INDEX messages_bulk ON messages(account_id, bulk_id) WHERE bulk_id IS NOT NULL;
CREATE INDEX messages_created ON messages(account_id, created_at);
CREATE INDEX messages_done ON messages(done_at) WHERE done_at IS NOT NULL;
CREATE INDEX messages_request ON messages(request_id);
CREATE INDEX messages_unindexed ON messages(id) WHERE mcc = '?';
CREATE INDEX messages_sender ON messages(account_id, sender, created_at, id) WHERE sender IS NOT NULL;
CREATE INDEX messages_mcc ON messages(account_id, mcc, created_at, id) WHERE mcc IS NOT NULL;
CREATE INDEX messages_mnc ON messages(account_id, mnc, created_at, id) WHERE mnc IS NOT NULL;

ALTER TABLE submissions RENAME TO submissions_g0;
ALTER INDEX submissions_message RENAME TO submissions_g0_message;
ALTER INDEX submissions_provider RENAME TO submissions_g0_provider;
CREATE TABLE submissions (LIKE submissions_g0 INCLUDING DEFAULTS) PARTITION BY RANGE (message);
CREATE INDEX submissions_message ON submissions(message);
CREATE INDEX submissions_provider ON submissions(channel, provider_id);

-- reports keep their id from reports_id_seq, which must outlive generation 0
ALTER TABLE reports RENAME TO reports_g0;
ALTER TABLE reports_g0 DROP CONSTRAINT reports_pkey;
ALTER SEQUENCE reports_id_seq OWNED BY NONE;
ALTER INDEX reports_account RENAME TO reports_g0_account;
ALTER INDEX reports_message RENAME TO reports_g0_message;
CREATE TABLE reports (LIKE reports_g0 INCLUDING DEFAULTS) PARTITION BY RANGE (message);
CREATE INDEX reports_account ON reports(account_id, id);
CREATE INDEX reports_message ON reports(message);

ALTER TABLE requests RENAME TO requests_g0;
ALTER INDEX requests_pkey RENAME TO requests_g0_pkey;
CREATE TABLE requests (LIKE requests_g0 INCLUDING DEFAULTS) PARTITION BY RANGE (id);
ALTER TABLE requests ADD PRIMARY KEY (id);

DO $$
DECLARE
    span constant bigint := 4294967296;
    m bigint := (greatest((SELECT last_value FROM messages_id_seq), (SELECT max(id) FROM messages_g0), 0) / span + 1)
                * span;
    r bigint := (greatest((SELECT last_value FROM requests_id_seq), (SELECT max(id) FROM requests_g0), 0) / span + 1)
                * span;
    t text;
BEGIN
    -- the partitions the next ids fall in are made by omnirelay.store.partitions.prepare, which `migrate` calls
    FOREACH t IN ARRAY ARRAY['messages', 'submissions', 'reports'] LOOP
        EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (MINVALUE) TO (%s)', t, t || '_g0', m);
    END LOOP;
    EXECUTE format('ALTER TABLE requests ATTACH PARTITION requests_g0 FOR VALUES FROM (MINVALUE) TO (%s)', r);
    PERFORM setval('messages_id_seq', m, false);
    PERFORM setval('requests_id_seq', r, false);
END $$;

-- name: insert_jobs
-- Rows (message, kind, step, due_at, data).
INSERT INTO jobs(message, kind, step, due_at, data) VALUES (?, ?, ?, ?, ?);

-- name: claim_under_way
-- Due jobs of messages already under way (taken before new ones: a failover is not queued behind a burst):
-- ?1 now, ?2 how many; (id, message, data, due_at).
SELECT id, message, data, due_at FROM jobs WHERE kind <> 'start' AND due_at <= ?1 ORDER BY due_at, id LIMIT ?2;

-- name: claim_new
SELECT id, message, data, due_at FROM jobs WHERE kind = 'start' AND due_at <= ?1 ORDER BY due_at, id LIMIT ?2;

-- name: drop_claimed
-- Rows (job id): the claimed jobs, deleted in the transaction that stores their consequences.
DELETE FROM jobs WHERE id = ?;

-- name: work_of
-- The messages ?1 (JSON array of ids) with their request and the capability memory of their address at ?2.
SELECT m.id, m.account_id, m.message_id, m.bulk_id, m.to_json, m.created_at, m.state, m.request_id, r.payload,
 (SELECT json_group_object(c.channel, c.until) FROM capabilities c
  WHERE c.account_id = m.account_id AND c.address = m.address AND c.until > ?2)
FROM messages m JOIN requests r ON r.id = m.request_id
WHERE m.id IN (SELECT value FROM json_each(?1));

-- name: update_messages
-- Rows (state, status_group, channel, done_at, id) of changes that leave the logs' filter columns as they are
-- (setting an indexed column rewrites its index entries).
UPDATE messages SET state = ?, status_group = ?, channel = ?, done_at = ? WHERE id = ?;

-- name: update_messages_columns
-- Rows (state, status_group, channel, done_at, sender, mcc, mnc, id).
UPDATE messages SET state = ?, status_group = ?, channel = ?, done_at = ?, sender = ?, mcc = ?, mnc = ? WHERE id = ?;

-- name: cancel_expiry
-- Rows (message).
DELETE FROM jobs WHERE message = ? AND kind = 'expire';

-- name: insert_reports
-- Rows (account_id, message, message_id, bulk_id, channel, body).
INSERT INTO reports(account_id, message, message_id, bulk_id, channel, body) VALUES (?, ?, ?, ?, ?, ?);

-- name: queue_report_webhooks
-- Rows (account_id, report_id, url, content_type, body, due_at, message), inserted in their order: the order a
-- message's reports are posted in.
INSERT INTO outbox(account_id, report_id, url, content_type, body, due_at, message) VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(report_id) DO NOTHING;

-- name: remember_capabilities
-- Rows (account_id, address, channel, until).
INSERT INTO capabilities(account_id, address, channel, until) VALUES (?, ?, ?, ?)
ON CONFLICT(account_id, address, channel) DO UPDATE SET until = excluded.until;

-- name: upsert_rollups
-- Rows (account_id, span, at, shard, kind, channel, step, grp, error, bucket, n, cost), a row per key.
INSERT INTO rollups(account_id, span, at, shard, kind, channel, step, grp, error, bucket, n, cost)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET n = n + excluded.n, cost = cost + excluded.cost;

-- name: insert_submissions
-- Rows (message, step, channel, provider_id, at).
INSERT INTO submissions(message, step, channel, provider_id, at) VALUES (?, ?, ?, ?, ?);

-- name: share_receipts_lock
-- (nothing: one writer at a time, storing receipts and storing provider ids never overlap)

-- name: any_held_receipt
SELECT 1 FROM held_receipts LIMIT 1;

-- name: take_held_receipts
-- Receipts that came before their provider id was stored, now matched: (id, message, step, data).
SELECT h.id, s.message, s.step, h.data FROM held_receipts h
JOIN submissions s ON s.channel = h.channel AND s.provider_id = h.provider_id;

-- name: drop_held_receipts
-- Rows (id) of take_held_receipts.
DELETE FROM held_receipts WHERE id = ?;

-- name: purge_candidates
-- Up to ?2 messages finished before ?1 with an id below ?3: (id, request_id).
SELECT id, request_id FROM messages WHERE done_at IS NOT NULL AND done_at < ?1 AND id < ?3 LIMIT ?2;

-- name: purge_held_receipts
-- Receipts of ids never submitted here (another system on the same number) are not kept forever.
DELETE FROM held_receipts WHERE at < ?1;

-- name: purge_rollups
-- Rollup rows of span ?1 from before ?2.
DELETE FROM rollups WHERE span = ?1 AND at < ?2;

-- name: purge_submissions
-- Rows (message).
DELETE FROM submissions WHERE message = ?;

-- name: purge_jobs
DELETE FROM jobs WHERE message = ?;

-- name: purge_reports
DELETE FROM reports WHERE message = ?;

-- name: purge_messages
DELETE FROM messages WHERE id = ?;

-- name: purge_requests
-- Rows (request id): the request unless another of its messages is kept.
DELETE FROM requests WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM messages WHERE request_id = ?1);

-- name: insert_jobs
-- Rows (message, kind, step, due_at, data).
INSERT INTO jobs(message, kind, step, due_at, data)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::int[], $4::float8[], $5::bytea[]);

-- name: claim_under_way
-- Due jobs of messages already under way (taken before new ones: a failover is not queued behind a burst):
-- $1 now, $2 how many; (id, message, data, due_at). Deleted as they are claimed: the transaction that stores
-- their consequences commits the deletion, a worker killed meanwhile rolls it back. SKIP LOCKED: no two
-- workers take the same job.
DELETE FROM jobs WHERE id = ANY(ARRAY(SELECT id FROM jobs WHERE kind <> 'start' AND due_at <= $1
 ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED)) RETURNING id, message, data, due_at;

-- name: claim_new
DELETE FROM jobs WHERE id = ANY(ARRAY(SELECT id FROM jobs WHERE kind = 'start' AND due_at <= $1
 ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED)) RETURNING id, message, data, due_at;

-- name: drop_claimed
-- (nothing: claimed jobs were deleted as they were claimed)

-- name: work_of
-- The messages $1 with their request and the capability memory of their address at $2, locked (in id order)
-- so that two workers never decide on one message at once.
SELECT m.id, m.account_id, m.message_id, m.bulk_id, m.to_json, m.created_at, m.state, m.request_id, r.payload,
 (SELECT json_object_agg(c.channel, c.until)::text FROM capabilities c
  WHERE c.account_id = m.account_id AND c.address = m.address AND c.until > $2)
FROM messages m JOIN requests r ON r.id = m.request_id WHERE m.id = ANY($1::bigint[])
ORDER BY m.id FOR UPDATE OF m;

-- name: update_messages
-- Rows (id, state, status_group, channel, done_at, columns given, sender, mcc, mnc) of every change: one
-- statement, the logs' filter columns set only where given.
UPDATE messages AS m SET state = u.state, status_group = u.sg, channel = u.ch, done_at = u.done,
 sender = CASE WHEN u.cols THEN u.sender ELSE m.sender END, mcc = CASE WHEN u.cols THEN u.mcc ELSE m.mcc END,
 mnc = CASE WHEN u.cols THEN u.mnc ELSE m.mnc END
FROM unnest($1::bigint[], $2::bytea[], $3::smallint[], $4::text[], $5::float8[], $6::bool[], $7::text[],
 $8::text[], $9::text[]) AS u(id, state, sg, ch, done, cols, sender, mcc, mnc)
WHERE m.id = u.id;

-- name: update_messages_columns
-- (nothing: update_messages sets the columns where given)

-- name: cancel_expiry
-- Rows (message). SKIP LOCKED: a timer another worker has claimed is left to it (its decision will ignore it).
DELETE FROM jobs WHERE id = ANY(ARRAY(SELECT id FROM jobs WHERE message = ANY($1::bigint[])
 AND kind = 'expire' FOR UPDATE SKIP LOCKED));

-- name: insert_reports
-- Rows (account_id, message, message_id, bulk_id, channel, body).
INSERT INTO reports(account_id, message, message_id, bulk_id, channel, body)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::bytea[]);

-- name: queue_report_webhooks
-- Rows (account_id, report_id, url, content_type, body, due_at, message), inserted in their order (ids
-- ascending): the order a message's reports are posted in.
INSERT INTO outbox(account_id, report_id, url, content_type, body, due_at, message)
SELECT a, r, u, t, b, d, m FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[],
 $5::bytea[], $6::float8[], $7::bigint[]) WITH ORDINALITY AS x(a, r, u, t, b, d, m, n) ORDER BY n
ON CONFLICT (report_id) DO NOTHING;

-- name: remember_capabilities
-- Rows (account_id, address, channel, until), one per key.
INSERT INTO capabilities(account_id, address, channel, until)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::float8[])
ON CONFLICT (account_id, address, channel) DO UPDATE SET until = excluded.until;

-- name: upsert_rollups
-- Rows (account_id, span, at, shard, kind, channel, step, grp, error, bucket, n, cost), each key once, sorted:
-- the order its row locks are taken in. (postgres.upsert_rollups_sql numbers its parameters from elsewhere.)
INSERT INTO rollups(account_id, span, at, shard, kind, channel, step, grp, error, bucket, n, cost)
SELECT * FROM unnest($1::bigint[], $2::int[], $3::bigint[], $4::smallint[], $5::text[], $6::text[], $7::int[],
 $8::smallint[], $9::text[], $10::int[], $11::bigint[], $12::float8[])
ON CONFLICT (account_id, span, at, shard, kind, channel, step, grp, error, bucket)
DO UPDATE SET n = rollups.n + excluded.n, cost = rollups.cost + excluded.cost;

-- name: insert_submissions
-- Rows (message, step, channel, provider_id, at).
INSERT INTO submissions(message, step, channel, provider_id, at)
SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[], $5::float8[]);

-- name: share_receipts_lock
-- Storing provider ids takes RECEIPTS_LOCK (7302) shared, storing receipts takes it exclusively: without it, a
-- receipt and its submission committed at the same moment would each miss the other, and the receipt stay held.
SELECT pg_advisory_xact_lock_shared(7302);

-- name: any_held_receipt
SELECT EXISTS (SELECT 1 FROM held_receipts);

-- name: take_held_receipts
-- Receipts that came before their provider id was stored, now matched, deleted: (id, message, step, data).
DELETE FROM held_receipts h USING submissions s WHERE s.channel = h.channel AND s.provider_id = h.provider_id
RETURNING h.id, s.message, s.step, h.data;

-- name: drop_held_receipts
-- (nothing: take_held_receipts deleted them)

-- name: purge_candidates
-- Up to $2 messages finished before $1 with an id below $3: (id, request_id); another process purging takes
-- others. (Only generations kept for a message under way are purged row by row: see store/partitions.py.)
SELECT id, request_id FROM messages WHERE done_at IS NOT NULL AND done_at < $1 AND id < $3 LIMIT $2
FOR UPDATE SKIP LOCKED;

-- name: purge_held_receipts
-- Receipts of ids never submitted here (another system on the same number) are not kept forever.
DELETE FROM held_receipts WHERE at < $1;

-- name: purge_rollups
-- Rollup rows of span $1 from before $2.
DELETE FROM rollups WHERE span = $1 AND at < $2;

-- name: purge_submissions
-- Rows (message).
DELETE FROM submissions WHERE message = ANY($1::bigint[]);

-- name: purge_jobs
DELETE FROM jobs WHERE message = ANY($1::bigint[]);

-- name: purge_reports
DELETE FROM reports WHERE message = ANY($1::bigint[]);

-- name: purge_messages
DELETE FROM messages WHERE id = ANY($1::bigint[]);

-- name: purge_requests
-- Rows (request id): the request unless another of its messages is kept.
DELETE FROM requests r WHERE r.id = ANY($1::bigint[]) AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.request_id = r.id);

-- name: take_receipts_lock
-- RECEIPTS_LOCK (7302), exclusively: see share_receipts_lock.
SELECT pg_advisory_xact_lock(7302);

-- name: receipt_steps
-- The latest submission of each (channel $1[i], provider id $2[i]): (channel, provider_id, message, step).
SELECT DISTINCT ON (s.channel, s.provider_id) s.channel, s.provider_id, s.message, s.step
FROM submissions s JOIN unnest($1::text[], $2::text[]) AS k(channel, provider_id)
ON s.channel = k.channel AND s.provider_id = k.provider_id
ORDER BY s.channel, s.provider_id, s.at DESC;

-- name: notify_receipt_jobs
-- Wakes the workers (sent on commit).
NOTIFY omnirelay_jobs;

-- name: hold_receipts
-- Rows (channel, provider_id, data, at).
INSERT INTO held_receipts(channel, provider_id, data, at)
SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::float8[]);

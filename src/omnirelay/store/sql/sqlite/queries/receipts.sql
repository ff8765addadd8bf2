-- name: take_receipts_lock
-- (nothing: one writer at a time)

-- name: receipt_steps
-- The latest submission of each (channel ?1[i], provider id ?2[i]) (JSON arrays, pairwise): (channel,
-- provider_id, message, step); SQLite takes message and step from the row of max(at). Materialized, the pairs
-- are joined by an automatic index and the submissions found by their index.
WITH c AS MATERIALIZED (SELECT key, value FROM json_each(?1)), p AS MATERIALIZED (SELECT key, value FROM json_each(?2))
SELECT s.channel, s.provider_id, s.message, s.step, max(s.at) FROM c JOIN p ON p.key = c.key
CROSS JOIN submissions s WHERE s.channel = c.value AND s.provider_id = p.value GROUP BY s.channel, s.provider_id;

-- name: notify_receipt_jobs
-- (nothing: the store wakes the engine of its own process; another process watches data_version)

-- name: hold_receipts
-- Rows (channel, provider_id, data, at).
INSERT INTO held_receipts(channel, provider_id, data, at) VALUES (?, ?, ?, ?);

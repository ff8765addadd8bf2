-- name: accepted_ids
-- The stored messages of client-supplied message ids: ?1 accounts and ?2 message ids, pairwise (JSON arrays).
-- Materialized, the pairs are joined by an automatic index and the messages found by their unique index.
WITH a AS MATERIALIZED (SELECT key, value FROM json_each(?1)), i AS MATERIALIZED (SELECT key, value FROM json_each(?2))
SELECT m.account_id, m.message_id, m.content_hash, m.to_json, m.bulk_id FROM a JOIN i ON i.key = a.key
CROSS JOIN messages m WHERE m.account_id = a.value AND m.message_id = i.value;

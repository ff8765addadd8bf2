-- name: accepted_ids
-- The stored messages of client-supplied message ids: $1 accounts and $2 message ids, pairwise.
SELECT account_id, message_id, content_hash, to_json, bulk_id FROM messages
WHERE (account_id, message_id) IN (SELECT * FROM unnest($1::bigint[], $2::text[]));

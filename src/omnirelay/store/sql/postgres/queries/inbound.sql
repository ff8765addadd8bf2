-- name: lock_inbound_groups
-- The transaction's locks of inbound message groups, sorted: two transactions never wait on each other in a
-- circle.
SELECT pg_advisory_xact_lock(hashtextextended(g, 7303)) FROM unnest($1::text[]) AS g ORDER BY g;

-- name: see_inbound_keys
-- The keys not seen within the window ($3: its start), remembered from now on; in one order in every
-- transaction (two batches holding the same resends never wait in a circle).
INSERT INTO inbound_seen(key, at) SELECT k, $2 FROM unnest($1::text[]) AS k ORDER BY k
ON CONFLICT (key) DO UPDATE SET at = excluded.at WHERE inbound_seen.at < $3 RETURNING key;

-- name: put_inbound_parts
INSERT INTO inbound_parts(grp, seq, total, account_id, url, source, destination, text, at)
SELECT * FROM unnest($1::text[], $2::int[], $3::int[], $4::bigint[], $5::text[], $6::text[], $7::text[],
  $8::text[], $9::float8[])
ON CONFLICT (grp, seq) DO NOTHING;

-- name: inbound_group_parts
SELECT grp, seq, total, account_id, url, source, destination, text, at FROM inbound_parts
WHERE grp = ANY($1::text[]);

-- name: drop_inbound_groups
DELETE FROM inbound_parts WHERE grp = ANY($1::text[]);

-- name: stale_inbound_groups
-- Long messages whose parts stopped coming.
SELECT grp FROM inbound_parts GROUP BY grp HAVING MIN(at) < $1 ORDER BY grp;

-- name: take_inbound_groups
DELETE FROM inbound_parts WHERE grp = ANY($1::text[])
RETURNING grp, seq, total, account_id, url, source, destination, text, at;

-- name: drop_taken_inbound_groups
-- (nothing: take_inbound_groups deleted them)

-- name: forget_inbound_keys
DELETE FROM inbound_seen WHERE at < $1;

-- name: forget_inbound_messages
-- Not pulled within the retention.
DELETE FROM inbound_messages WHERE received_at < $1;

-- name: take_inbound
-- Concurrent pollers skip each other's rows.
DELETE FROM inbound_messages WHERE account_id = $1 AND id = ANY(ARRAY(SELECT id FROM inbound_messages
WHERE account_id = $1 AND received_at >= $2 ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED))
RETURNING id, body;

-- name: drop_taken_inbound
-- (nothing: take_inbound deleted them)

-- name: inbound_left
SELECT count(*) FROM inbound_messages WHERE account_id = $1 AND received_at >= $2;

-- name: keep_inbound
INSERT INTO inbound_messages(account_id, received_at, body)
SELECT * FROM unnest($1::bigint[], $2::float8[], $3::bytea[]);

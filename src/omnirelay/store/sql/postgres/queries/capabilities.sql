-- Provider ids by prefix, the capability memory and the shared rate buckets.

-- name: provider_ids_like
SELECT provider_id FROM submissions WHERE channel = $1 AND left(provider_id, $2) = $3
AND at >= $4 AND at <= $5 ORDER BY at DESC LIMIT $6;

-- name: put_capabilities
INSERT INTO capabilities(account_id, channel, address, until)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::float8[])
ON CONFLICT (account_id, address, channel) DO UPDATE SET until = excluded.until;

-- name: capabilities_of
SELECT address FROM capabilities WHERE account_id = $1 AND channel = $2 AND until > $3
AND address = ANY($4::text[]);

-- name: seed_bucket
-- A new bucket starts full; its row is then there to lock, for every process sharing it.
INSERT INTO rate_buckets(key, tokens, updated) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING;

-- name: bucket
SELECT tokens, updated FROM rate_buckets WHERE key = $1 FOR UPDATE;

-- name: put_bucket
UPDATE rate_buckets SET tokens = $2, updated = $3 WHERE key = $1;

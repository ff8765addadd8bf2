-- Provider ids by prefix, the capability memory and the shared rate buckets.

-- name: provider_ids_like
SELECT provider_id FROM submissions WHERE channel = ?1 AND substr(provider_id, 1, ?2) = ?3
AND at >= ?4 AND at <= ?5 ORDER BY at DESC LIMIT ?6;

-- name: put_capabilities
INSERT INTO capabilities(account_id, channel, address, until) VALUES (?, ?, ?, ?)
ON CONFLICT(account_id, address, channel) DO UPDATE SET until = excluded.until;

-- name: capabilities_of
SELECT address FROM capabilities WHERE account_id = ?1 AND channel = ?2 AND until > ?3
AND address IN (SELECT value FROM json_each(?4));

-- name: seed_bucket
-- (nothing: a missing bucket is read as a full one)

-- name: bucket
SELECT tokens, updated FROM rate_buckets WHERE key = ?1;

-- name: put_bucket
INSERT INTO rate_buckets(key, tokens, updated) VALUES (?1, ?2, ?3)
ON CONFLICT(key) DO UPDATE SET tokens = excluded.tokens, updated = excluded.updated;

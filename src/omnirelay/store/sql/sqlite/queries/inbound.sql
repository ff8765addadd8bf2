-- name: lock_inbound_groups
-- (nothing: one writer)

-- name: see_inbound_keys
-- The keys not seen within the window (?3: its start), remembered from now on. (WHERE true: so that ON CONFLICT
-- is not read as a join's ON.)
INSERT INTO inbound_seen(key, at) SELECT value, ?2 FROM json_each(?1) WHERE true
ON CONFLICT(key) DO UPDATE SET at = excluded.at WHERE inbound_seen.at < ?3 RETURNING key;

-- name: put_inbound_parts
INSERT INTO inbound_parts(grp, seq, total, account_id, url, source, destination, text, at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(grp, seq) DO NOTHING;

-- name: inbound_group_parts
SELECT grp, seq, total, account_id, url, source, destination, text, at FROM inbound_parts
WHERE grp IN (SELECT value FROM json_each(?1));

-- name: drop_inbound_groups
DELETE FROM inbound_parts WHERE grp IN (SELECT value FROM json_each(?1));

-- name: stale_inbound_groups
-- Long messages whose parts stopped coming.
SELECT grp FROM inbound_parts GROUP BY grp HAVING MIN(at) < ?1 ORDER BY grp;

-- name: take_inbound_groups
SELECT grp, seq, total, account_id, url, source, destination, text, at FROM inbound_parts
WHERE grp IN (SELECT value FROM json_each(?1));

-- name: drop_taken_inbound_groups
DELETE FROM inbound_parts WHERE grp IN (SELECT value FROM json_each(?1));

-- name: forget_inbound_keys
DELETE FROM inbound_seen WHERE at < ?1;

-- name: forget_inbound_messages
-- Not pulled within the retention.
DELETE FROM inbound_messages WHERE received_at < ?1;

-- name: take_inbound
SELECT id, body FROM inbound_messages WHERE account_id = ?1 AND received_at >= ?2 ORDER BY id LIMIT ?3;

-- name: drop_taken_inbound
DELETE FROM inbound_messages WHERE id = ?;

-- name: inbound_left
SELECT COUNT(*) FROM inbound_messages WHERE account_id = ?1 AND received_at >= ?2;

-- name: keep_inbound
INSERT INTO inbound_messages(account_id, received_at, body) VALUES (?, ?, ?);

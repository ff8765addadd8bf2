-- name: create_account
INSERT INTO accounts(username, password_hash, webhook_secret, source, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
ON CONFLICT(username) DO NOTHING
RETURNING id, username, password_hash, webhook_secret, source;

-- name: account_to_remove
SELECT id FROM accounts WHERE username = ?1;

-- name: remove_account
-- Everything an account owns, then the account.
DELETE FROM jobs WHERE message IN (SELECT id FROM messages WHERE account_id = ?1);
DELETE FROM submissions WHERE message IN (SELECT id FROM messages WHERE account_id = ?1);
DELETE FROM messages WHERE account_id = ?1;
DELETE FROM requests WHERE account_id = ?1;
DELETE FROM reports WHERE account_id = ?1;
DELETE FROM outbox WHERE account_id = ?1;
DELETE FROM capabilities WHERE account_id = ?1;
DELETE FROM scenarios WHERE account_id = ?1;
DELETE FROM api_keys WHERE account_id = ?1;
DELETE FROM inbound_parts WHERE account_id = ?1;
DELETE FROM inbound_messages WHERE account_id = ?1;
DELETE FROM rollups WHERE account_id = ?1;
DELETE FROM accounts WHERE id = ?1;

-- name: notify_scenarios
-- (nothing: one API process per file, its scenario cache is cleared after the commit)

-- name: drop_config_keys_but
DELETE FROM api_keys WHERE account_id = ?1 AND source = 'config' AND key_hash NOT IN (SELECT value FROM json_each(?2));

-- name: put_config_key
INSERT INTO api_keys(id, account_id, key_hash, source, created_at) VALUES (?, ?, ?, 'config', ?)
ON CONFLICT(key_hash) DO UPDATE SET account_id = excluded.account_id, source = 'config';

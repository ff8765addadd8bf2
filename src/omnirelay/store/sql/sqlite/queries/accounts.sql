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

-- name: set_password_hash
UPDATE accounts SET password_hash = ?2 WHERE id = ?1;

-- name: accounts
SELECT id, username, password_hash, webhook_secret, source FROM accounts ORDER BY id;

-- name: account_by_username
SELECT id, username, password_hash, webhook_secret, source FROM accounts WHERE username = ?1;

-- name: account_by_key_hash
SELECT a.id, a.username, a.password_hash, a.webhook_secret, a.source FROM api_keys k
JOIN accounts a ON a.id = k.account_id WHERE k.key_hash = ?1;

-- name: add_key
INSERT INTO api_keys(id, account_id, key_hash, source, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
ON CONFLICT(key_hash) DO NOTHING;

-- name: revoke_key
DELETE FROM api_keys WHERE id = ?1;

-- name: keys
SELECT k.id, k.account_id, a.username, k.source, k.created_at FROM api_keys k
JOIN accounts a ON a.id = k.account_id ORDER BY k.created_at;

-- name: drop_expired_console_sessions
DELETE FROM console_sessions WHERE expires_at <= ?1;

-- name: add_console_session
INSERT INTO console_sessions(token_hash, account_id, password_hash, expires_at) VALUES (?1, ?2, ?3, ?4);

-- name: console_session
-- A session ends when its account's password changes.
SELECT a.id, a.username, a.password_hash, a.webhook_secret, a.source FROM console_sessions s
JOIN accounts a ON a.id = s.account_id
WHERE s.token_hash = ?1 AND s.expires_at > ?2 AND a.password_hash = s.password_hash;

-- name: end_console_session
DELETE FROM console_sessions WHERE token_hash = ?1;

-- name: lock_account_tokens
-- (nothing: the single writer already runs one transaction at a time)

-- name: drop_expired_auth_tokens
DELETE FROM auth_tokens WHERE expires_at <= ?1;

-- name: has_auth_token
SELECT 1 FROM auth_tokens WHERE account_id = ?1 AND kind = ?2;

-- name: add_auth_token
INSERT INTO auth_tokens(token_hash, account_id, kind, created_at, expires_at, idle_seconds)
VALUES (?1, ?2, ?3, ?4, ?5, ?6);

-- name: auth_token
SELECT a.id, a.username, a.password_hash, a.webhook_secret, a.source, t.kind, t.expires_at, t.idle_seconds
FROM auth_tokens t JOIN accounts a ON a.id = t.account_id WHERE t.token_hash = ?1 AND t.expires_at > ?2;

-- name: extend_auth_token
UPDATE auth_tokens SET expires_at = ?2 WHERE token_hash = ?1 AND expires_at > ?3 AND expires_at < ?2;

-- name: remove_auth_tokens
DELETE FROM auth_tokens WHERE account_id = ?1 AND kind = ?2;

-- name: remove_auth_token
DELETE FROM auth_tokens WHERE account_id = ?1 AND kind = ?2 AND token_hash = ?3;

-- Session (IBSSO) and OAuth2 access tokens, by the SHA-256 of the token: the token itself is never stored.
-- A session's expires_at moves on with use (idle_seconds after its last use); an OAuth token's is fixed.
CREATE TABLE auth_tokens (
    token_hash   TEXT PRIMARY KEY,
    account_id   INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    kind         TEXT NOT NULL,
    created_at   REAL NOT NULL,
    expires_at   REAL NOT NULL,
    idle_seconds REAL
);
CREATE INDEX auth_tokens_account ON auth_tokens(account_id, kind);
CREATE INDEX auth_tokens_expiry ON auth_tokens(expires_at);

-- A new password (or none) ends the account's sessions and OAuth tokens.
CREATE TRIGGER accounts_password_ends_tokens AFTER UPDATE OF password_hash ON accounts
    WHEN OLD.password_hash IS NOT NEW.password_hash
BEGIN
    DELETE FROM auth_tokens WHERE account_id = NEW.id;
END;

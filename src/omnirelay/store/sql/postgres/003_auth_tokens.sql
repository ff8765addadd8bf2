-- Session (IBSSO) and OAuth2 access tokens, by the SHA-256 of the token: the token itself is never stored.
-- A session's expires_at moves on with use (idle_seconds after its last use); an OAuth token's is fixed.
CREATE TABLE auth_tokens (
    token_hash   text PRIMARY KEY,
    account_id   bigint NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    kind         text NOT NULL,
    created_at   double precision NOT NULL,
    expires_at   double precision NOT NULL,
    idle_seconds double precision
);
CREATE INDEX auth_tokens_account ON auth_tokens(account_id, kind);
CREATE INDEX auth_tokens_expiry ON auth_tokens(expires_at);

-- A new password (or none) ends the account's sessions and OAuth tokens.
CREATE FUNCTION omnirelay_end_auth_tokens() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM auth_tokens WHERE account_id = NEW.id;
    RETURN NEW;
END
$$;
CREATE TRIGGER accounts_password_ends_tokens AFTER UPDATE OF password_hash ON accounts
    FOR EACH ROW WHEN (OLD.password_hash IS DISTINCT FROM NEW.password_hash)
    EXECUTE FUNCTION omnirelay_end_auth_tokens();

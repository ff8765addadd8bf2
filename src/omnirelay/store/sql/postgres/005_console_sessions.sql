-- Console sessions: a login lives until it expires or logs out, in every process sharing the database.
CREATE TABLE console_sessions (
    token_hash    text PRIMARY KEY,                 -- SHA-256 of the cookie's random token (never the token)
    account_id    bigint NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    password_hash text NOT NULL,                    -- the account's at login: a new password ends the session
    expires_at    double precision NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions(expires_at);

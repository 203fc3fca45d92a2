-- Issue #16 (user administration).
--
-- When each account last logged in successfully (Unix seconds), written in
-- the login's own transaction; NULL: never, or not since this column was
-- added. Administrators see it with the account.
ALTER TABLE users ADD COLUMN last_login_at BIGINT;

-- An account's refresh tokens by owner: an administrator's view counts its
-- sessions, a logout revokes them all, and deleting the account (or the
-- unverified-account sweep) cascades to them, each of which otherwise
-- reads the whole table.
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);

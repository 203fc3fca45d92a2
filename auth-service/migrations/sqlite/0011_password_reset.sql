-- Password reset codes: the verification code rules (salted SHA-256 of a
-- 6-digit code, expiry, tries counted before checking), in a table of their
-- own so a reset and a verification never replace each other's code.
CREATE TABLE password_reset_codes (
    user_id     BIGINT  PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    code_hash   BLOB    NOT NULL,
    salt        BLOB    NOT NULL,
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL,
    tries       INTEGER NOT NULL DEFAULT 0
);

-- A password change revokes every session at `sessions_revoked_at` and
-- hands the caller a fresh pair issued in that same second: the fresh
-- access token's jti is kept here so introspection does not refuse it with
-- the ones it replaced (token `iat` has whole seconds only). NULL: none.
ALTER TABLE users ADD COLUMN sessions_kept_jti TEXT;

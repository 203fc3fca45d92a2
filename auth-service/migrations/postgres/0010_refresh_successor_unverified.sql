-- The refresh token a rotation issued in place of this one, written in the
-- statement that marks this one used: presenting this token again within
-- JWT_REFRESH_REUSE_GRACE answers with that same successor (two tabs, a
-- retried request) instead of revoking the family. NULL: never rotated.
ALTER TABLE refresh_tokens ADD COLUMN successor_jti TEXT;

-- Unverified accounts by age, for the sweeper that removes those older than
-- AUTH_UNVERIFIED_TTL and for registrations that take over a stale one.
CREATE INDEX users_unverified_created ON users (created_at) WHERE verified_at IS NULL;

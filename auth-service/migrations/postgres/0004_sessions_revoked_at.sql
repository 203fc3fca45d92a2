-- "Log out everywhere" must also end what access tokens are checked
-- against auth-service (introspection): tokens issued at or before this
-- instant (Unix seconds) no longer introspect as active. NULL: never.
ALTER TABLE users ADD COLUMN sessions_revoked_at BIGINT;

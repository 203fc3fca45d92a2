-- Key rollover: a key is published (JWKS) from `created_at` and signs only
-- from `not_before`, so verifiers that cache the key set learn it before it
-- signs anything. Keys that exist already have been signing: they start at
-- their creation time.
ALTER TABLE signing_keys ADD COLUMN not_before BIGINT NOT NULL DEFAULT 0;
UPDATE signing_keys SET not_before = created_at;

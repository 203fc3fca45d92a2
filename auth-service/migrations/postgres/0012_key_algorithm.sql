-- JWT_ALGORITHM: each signing key signs with one algorithm, named as in JWS
-- `alg` ('EdDSA', 'ES256', 'RS256'); the keys made before are Ed25519.
ALTER TABLE signing_keys ADD COLUMN alg TEXT NOT NULL DEFAULT 'EdDSA';

-- The `kid` of the key added last before this one ('' for a database's
-- first key; NULL for keys added before this column). Unique, so replicas
-- that read the same keys and each add one (a fresh database, a changed
-- JWT_ALGORITHM, `rotate-keys` at the same moment) cannot both succeed:
-- the loser re-reads and finds the winner's key.
ALTER TABLE signing_keys ADD COLUMN supersedes TEXT;
CREATE UNIQUE INDEX signing_keys_supersedes ON signing_keys (supersedes);

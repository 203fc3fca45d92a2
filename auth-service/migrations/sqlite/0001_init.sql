-- Accounts. Times are Unix seconds (UTC) on every backend.
CREATE TABLE users (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    username        TEXT    NOT NULL,
    username_lower  TEXT    NOT NULL UNIQUE,
    email           TEXT    NOT NULL,
    email_lower     TEXT    NOT NULL UNIQUE,
    password_hash   TEXT    NOT NULL,
    is_active       BOOLEAN NOT NULL DEFAULT FALSE,
    is_staff        BOOLEAN NOT NULL DEFAULT FALSE,
    created_at      BIGINT  NOT NULL,
    verified_at     BIGINT
);

-- At most one live code per account; stored as a salted digest only.
CREATE TABLE verification_codes (
    user_id     BIGINT  PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    code_hash   BLOB    NOT NULL,
    salt        BLOB    NOT NULL,
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL,
    tries       INTEGER NOT NULL DEFAULT 0
);

-- Every refresh token ever issued, so reuse of a rotated one is detected.
CREATE TABLE refresh_tokens (
    jti         TEXT    PRIMARY KEY,
    family_id   TEXT    NOT NULL,
    user_id     BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    issued_at   BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL,
    used_at     BIGINT,
    revoked_at  BIGINT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);

-- Ed25519 signing keys (32-byte seeds), newest signs, all verify.
CREATE TABLE signing_keys (
    kid         TEXT    PRIMARY KEY,
    secret      BLOB    NOT NULL,
    created_at  BIGINT  NOT NULL
);

-- Login attempts waiting to be streamed to audit-service (encoded audit.v1.Attempt).
CREATE TABLE attempt_outbox (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    TEXT    NOT NULL UNIQUE,
    payload     BLOB    NOT NULL,
    created_at  BIGINT  NOT NULL
);

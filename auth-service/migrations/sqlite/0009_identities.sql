-- Issue #14: one key space of claimed names. Every account claims the TR39
-- skeleton of its folded username, of its folded email and, for a username
-- shaped like an email, of that email, so an account can be neither a
-- lookalike of another's name nor take another's email as its username.
-- The primary key makes the claim atomic with the account's insert.
CREATE TABLE account_names (
    name_key  TEXT   PRIMARY KEY,
    user_id   BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind      TEXT   NOT NULL
);
CREATE INDEX account_names_user ON account_names (user_id);

-- Whether password_hash is a hash of the password's NFKC form. Rows from
-- before are hashes of the text as typed: login tries both, then rehashes.
ALTER TABLE users ADD COLUMN password_nfkc BOOLEAN NOT NULL DEFAULT FALSE;

-- Accounts whose new keys collided with an older account's when the
-- existing rows were migrated (start-up, in Rust: SQL cannot do NFKC).
-- They keep working by their old keys; `auth-service name-collisions`
-- lists them for an operator to resolve.
CREATE TABLE account_name_collisions (
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name_key   TEXT   NOT NULL,
    kind       TEXT   NOT NULL,
    holder_id  BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    found_at   BIGINT NOT NULL,
    PRIMARY KEY (user_id, name_key)
);

-- Data migrations run in Rust at start-up; a row is done once done_at is set.
CREATE TABLE data_migrations (
    name     TEXT   PRIMARY KEY,
    done_at  BIGINT
);
INSERT INTO data_migrations (name, done_at) VALUES ('0009_identity_keys', NULL);

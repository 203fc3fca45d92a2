-- `auth-service import-django` (issue #15): which account each Django
-- account became, so a second run adds nothing and the login log can name
-- the new ids. user_id is cleared, not the row, when the account is
-- deleted later (the unverified sweep, an operator): a run after that does
-- not bring the account back.
CREATE TABLE django_imported_users (
    django_id    BIGINT PRIMARY KEY,
    user_id      BIGINT UNIQUE REFERENCES users (id) ON DELETE SET NULL,
    imported_at  BIGINT NOT NULL
);

-- How far the Django login log (accounts_loginlog, imported in id order) is
-- queued into the attempt outbox: rows up to last_id are. Advanced in the
-- transaction that queues each batch, so a run that stops leaves a prefix
-- and the next one goes on from it.
CREATE TABLE django_import_progress (
    name        TEXT   PRIMARY KEY,
    last_id     BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
INSERT INTO django_import_progress (name, last_id, updated_at) VALUES ('accounts_loginlog', 0, 0);

-- What an attempt tried: 'login', 'password_change' or 'password_reset'
-- (audit.v1 AttemptKind's code). Every row from before is a login. A
-- constant default is stored in the catalogue (PostgreSQL 11+): the table
-- is not rewritten.
ALTER TABLE login_attempts ADD COLUMN kind TEXT NOT NULL DEFAULT 'login';
-- The listing's filters each lead an (x, occurred_at, id) index.
CREATE INDEX login_attempts_kind ON login_attempts (kind, occurred_at, id);

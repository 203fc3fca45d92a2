-- What an attempt tried: 'login', 'password_change' or 'password_reset'
-- (audit.v1 AttemptKind's code). Every row from before is a login.
-- ALGORITHM=INSTANT (MariaDB 10.3+, MySQL 8.0+) changes only metadata; an
-- engine that cannot do it refuses the statement instead of copying the
-- table behind the operator's back.
ALTER TABLE login_attempts
    ADD COLUMN kind VARCHAR(32) NOT NULL DEFAULT 'login',
    ALGORITHM = INSTANT;
-- The listing's filters each lead an (x, occurred_at, id) index (built
-- online, without blocking ingest).
CREATE INDEX login_attempts_kind ON login_attempts (kind, occurred_at, id);

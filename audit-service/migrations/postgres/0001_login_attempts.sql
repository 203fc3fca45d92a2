-- The login-attempt log. Times are unix microseconds (UTC) so ordering and
-- cursors are identical on every backend.
CREATE TABLE login_attempts (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id      UUID    NOT NULL UNIQUE,  -- producer's UUID, the idempotency key
    occurred_at   BIGINT  NOT NULL,
    identifier    TEXT    NOT NULL,
    user_id       BIGINT,                   -- no foreign key: deleting a user keeps its log
    username      TEXT,
    email         TEXT    NOT NULL,
    email_lower   TEXT    NOT NULL,
    successful    BOOLEAN NOT NULL,
    reject_reason TEXT    NOT NULL,
    ip            TEXT    NOT NULL,
    user_agent    TEXT,
    request_id    TEXT    NOT NULL,
    suspicious    BOOLEAN NOT NULL
);

-- Listing newest first, unfiltered or by time (B-trees scan backwards too).
CREATE INDEX login_attempts_recent ON login_attempts (occurred_at, id);
-- Filtering by IP / email and counting recent failures for the suspicious flag.
CREATE INDEX login_attempts_ip ON login_attempts (ip, occurred_at, id);
CREATE INDEX login_attempts_email ON login_attempts (email_lower, occurred_at, id);
-- Filtering by outcome.
CREATE INDEX login_attempts_outcome ON login_attempts (successful, occurred_at, id);

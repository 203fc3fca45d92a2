-- Readiness writes here (an upsert of the one row every 2 s per replica, and
-- once at start-up): a database that answers but cannot be written is not
-- ready. `written_at` is the last successful check, Unix seconds.
CREATE TABLE readiness_heartbeat (
    id          INTEGER NOT NULL PRIMARY KEY,
    written_at  BIGINT  NOT NULL
);

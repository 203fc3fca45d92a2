-- Administrators' actions on accounts (audit.v1 AdminEvent, Keycloak's
-- "admin events"): who did what to which account, when, from where. Kept
-- apart from login_attempts so no attempt listing, tail, count or
-- suspicious-activity rule ever sees one. Times are unix microseconds
-- (UTC), as for attempts. Retention (AUDIT_RETENTION_DAYS) deletes
-- attempts only: these are few and are the record of who changed what.
CREATE TABLE admin_events (
    id                    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id              UUID    NOT NULL UNIQUE,  -- producer's UUID, the idempotency key
    occurred_at           BIGINT  NOT NULL,
    action                TEXT    NOT NULL,         -- AdminAction's code: 'deactivate', ...
    actor_id              BIGINT,                   -- NULL for an operator
    actor_name            TEXT    NOT NULL,
    actor_name_lower      TEXT    NOT NULL,
    is_operator           BOOLEAN NOT NULL,
    target_id             BIGINT  NOT NULL,         -- no foreign key: accounts live elsewhere
    target_username       TEXT    NOT NULL,
    target_username_lower TEXT    NOT NULL,
    target_email          TEXT    NOT NULL,
    ip                    TEXT    NOT NULL,
    ip_key                TEXT    NOT NULL,         -- as login_attempts.ip_key ('' when none)
    user_agent            TEXT,
    request_id            TEXT    NOT NULL,
    sessions_revoked      BIGINT,
    counters_cleared      BIGINT,
    code_expires_at       BIGINT
);

-- Listing newest first, unfiltered or by time; each filter leads an
-- (x, occurred_at, id) index.
CREATE INDEX admin_events_recent ON admin_events (occurred_at, id);
CREATE INDEX admin_events_target ON admin_events (target_id, occurred_at, id);
CREATE INDEX admin_events_actor ON admin_events (actor_id, occurred_at, id);
CREATE INDEX admin_events_action ON admin_events (action, occurred_at, id);
CREATE INDEX admin_events_actor_name ON admin_events (actor_name_lower, occurred_at, id);
CREATE INDEX admin_events_target_name ON admin_events (target_username_lower, occurred_at, id);
CREATE INDEX admin_events_ip_key ON admin_events (ip_key, occurred_at, id);

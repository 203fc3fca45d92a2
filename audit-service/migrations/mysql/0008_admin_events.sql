-- Administrators' actions on accounts (audit.v1 AdminEvent, Keycloak's
-- "admin events"): who did what to which account, when, from where. Kept
-- apart from login_attempts so no attempt listing, tail, count or
-- suspicious-activity rule ever sees one. Times are unix microseconds
-- (UTC), as for attempts. Retention (AUDIT_RETENTION_DAYS) deletes
-- attempts only: these are few and are the record of who changed what.
-- utf8mb4_bin and lengths in characters (the service's caps), as for
-- login_attempts.
CREATE TABLE admin_events (
    id                    BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    event_id              CHAR(36)     NOT NULL,  -- producer's UUID, the idempotency key
    occurred_at           BIGINT       NOT NULL,
    action                VARCHAR(64)  NOT NULL,  -- AdminAction's code: 'deactivate', ...
    actor_id              BIGINT       NULL,      -- NULL for an operator
    actor_name            VARCHAR(150) NOT NULL,
    actor_name_lower      VARCHAR(150) NOT NULL,
    is_operator           BOOLEAN      NOT NULL,
    target_id             BIGINT       NOT NULL,  -- no foreign key: accounts live elsewhere
    target_username       VARCHAR(150) NOT NULL,
    target_username_lower VARCHAR(150) NOT NULL,
    target_email          VARCHAR(320) NOT NULL,
    ip                    VARCHAR(64)  NOT NULL,
    ip_key                CHAR(32)     NOT NULL,  -- as login_attempts.ip_key ('' when none)
    user_agent            VARCHAR(512) NULL,
    request_id            VARCHAR(128) NOT NULL,
    sessions_revoked      BIGINT       NULL,
    counters_cleared      BIGINT       NULL,
    code_expires_at       BIGINT       NULL,
    UNIQUE KEY admin_events_event (event_id),
    -- Listing newest first, unfiltered or by time; each filter leads an
    -- (x, occurred_at, id) index.
    KEY admin_events_recent (occurred_at, id),
    KEY admin_events_target (target_id, occurred_at, id),
    KEY admin_events_actor (actor_id, occurred_at, id),
    KEY admin_events_action (action, occurred_at, id),
    KEY admin_events_actor_name (actor_name_lower, occurred_at, id),
    KEY admin_events_target_name (target_username_lower, occurred_at, id),
    KEY admin_events_ip_key (ip_key, occurred_at, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

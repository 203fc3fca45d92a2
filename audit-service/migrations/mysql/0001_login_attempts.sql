-- The login-attempt log. Times are unix microseconds (UTC) so ordering and
-- cursors are identical on every backend. utf8mb4_bin: exact, case-
-- sensitive matching as on the other backends (email_lower is folded by the
-- service). Lengths are the service's caps, in characters.
CREATE TABLE login_attempts (
    id            BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    event_id      CHAR(36)     NOT NULL,  -- producer's UUID, the idempotency key
    occurred_at   BIGINT       NOT NULL,
    identifier    VARCHAR(320) NOT NULL,
    user_id       BIGINT       NULL,      -- no foreign key: deleting a user keeps its log
    username      VARCHAR(150) NULL,
    email         VARCHAR(320) NOT NULL,
    email_lower   VARCHAR(320) NOT NULL,
    successful    BOOLEAN      NOT NULL,
    reject_reason VARCHAR(64)  NOT NULL,
    ip            VARCHAR(64)  NOT NULL,
    user_agent    VARCHAR(512) NULL,
    request_id    VARCHAR(128) NOT NULL,
    suspicious    BOOLEAN      NOT NULL,
    -- 32 hex digits of the IPv6 form of ip ('' when not an address), so a
    -- CIDR filter is one index range.
    ip_key        CHAR(32)     NULL,
    UNIQUE KEY login_attempts_event (event_id),
    -- Listing newest first, unfiltered or by time.
    KEY login_attempts_recent (occurred_at, id),
    -- Filters, and the recent-failure counts of the suspicious flag.
    KEY login_attempts_ip (ip, occurred_at, id),
    KEY login_attempts_email (email_lower, occurred_at, id),
    KEY login_attempts_outcome (successful, occurred_at, id),
    KEY login_attempts_ip_key (ip_key, occurred_at, id),
    KEY login_attempts_identifier (identifier, occurred_at, id),
    KEY login_attempts_user (user_id, occurred_at, id),
    KEY login_attempts_reason (reject_reason, occurred_at, id),
    KEY login_attempts_suspicious (suspicious, occurred_at, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

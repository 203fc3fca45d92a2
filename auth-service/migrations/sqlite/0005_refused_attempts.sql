-- Attempts audit-service refused as invalid (an unknown reason, a time
-- outside its window, ...): no resend can ever be accepted, so the
-- forwarder moves them here instead of holding up the outbox, and nothing
-- is lost. An operator fixes the cause and re-queues them with
--   INSERT INTO attempt_outbox (event_id, payload, created_at)
--     SELECT event_id, payload, created_at FROM refused_attempts;
--   DELETE FROM refused_attempts;
CREATE TABLE refused_attempts (
    event_id    TEXT    PRIMARY KEY,
    payload     BLOB    NOT NULL,
    created_at  BIGINT  NOT NULL,
    -- Unix seconds when audit-service refused it, and its reason.
    refused_at  BIGINT  NOT NULL,
    refusal     TEXT    NOT NULL
);

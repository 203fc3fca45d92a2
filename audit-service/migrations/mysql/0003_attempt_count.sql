-- A record may stand for several attempts: producers tally the attempts
-- they refuse before any password work (per client, reason and window) so
-- a flood of refusals costs bounded storage. attempt_count is how many;
-- last_occurred_at (unix microseconds) is when the last of them was
-- decided, NULL for a single attempt.
ALTER TABLE login_attempts
    ADD COLUMN attempt_count BIGINT NOT NULL DEFAULT 1,
    ADD COLUMN last_occurred_at BIGINT NULL;

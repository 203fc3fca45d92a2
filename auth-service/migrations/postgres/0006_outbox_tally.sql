-- Attempts refused before any password work (rate_limited, locked_out,
-- malformed_request) are tallied: those sharing a client, a reason (and,
-- when locked out, the account) within one window are one outbox row whose
-- tally_count grows, so a flood of refusals costs one row per key and
-- window instead of one per request, and each is still counted.
--   tally_key  the key and window while the row is open; NULL for a single
--              attempt and once the forwarder has closed the tally
--   due_at     unix seconds when the window ends and the row may be sent
--   last_at    unix microseconds of the last attempt counted
-- Re-queueing refused rows (see 0005) keeps their counts with
--   INSERT INTO attempt_outbox (event_id, payload, created_at, tally_count, last_at)
--     SELECT event_id, payload, created_at, tally_count, last_at FROM refused_attempts;
ALTER TABLE attempt_outbox ADD COLUMN tally_key TEXT;
ALTER TABLE attempt_outbox ADD COLUMN tally_count BIGINT NOT NULL DEFAULT 1;
ALTER TABLE attempt_outbox ADD COLUMN due_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE attempt_outbox ADD COLUMN last_at BIGINT;
CREATE UNIQUE INDEX attempt_outbox_tally ON attempt_outbox (tally_key);
ALTER TABLE refused_attempts ADD COLUMN tally_count BIGINT NOT NULL DEFAULT 1;
ALTER TABLE refused_attempts ADD COLUMN last_at BIGINT;
-- The forwarder's look for tallies whose window has ended.
CREATE INDEX attempt_outbox_due ON attempt_outbox (due_at) WHERE tally_key IS NOT NULL;

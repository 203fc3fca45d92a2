-- The outbox carries administrators' actions (encoded audit.v1.AdminEvent,
-- written in the transaction of the change each records) beside login
-- attempts; `kind` says which a row's payload is. Every row from before is
-- an attempt, and so is a row written without a kind. Refused rows keep
-- their kind, so re-queueing them (see 0005 and 0006) takes it along:
--   INSERT INTO attempt_outbox (event_id, payload, created_at, tally_count, last_at, kind)
--     SELECT event_id, payload, created_at, tally_count, last_at, kind FROM refused_attempts;
ALTER TABLE attempt_outbox ADD COLUMN kind TEXT NOT NULL DEFAULT 'attempt';
ALTER TABLE refused_attempts ADD COLUMN kind TEXT NOT NULL DEFAULT 'attempt';

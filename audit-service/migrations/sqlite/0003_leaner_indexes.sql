-- Fewer indexes, so each ingested row costs fewer B-tree writes:
-- * the suspicious rule counts failures by ip_key (one key per address,
--   however spelled), so the index on the raw ip text has no reader left;
-- * `successful` has two values: a page of either reads the recent index;
-- * flagged rows are few: a partial index of them alone serves
--   `suspicious=true`, and `suspicious=false` reads the recent index.
DROP INDEX login_attempts_ip;
DROP INDEX login_attempts_outcome;
DROP INDEX login_attempts_suspicious;
CREATE INDEX login_attempts_flagged ON login_attempts (occurred_at, id) WHERE suspicious;

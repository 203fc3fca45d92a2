-- Fewer indexes, so each ingested row costs fewer B-tree writes: the
-- suspicious rule counts failures by ip_key (one key per address, however
-- spelled), so the index on the raw ip text has no reader left, and
-- `successful` has two values: a page of either reads the recent index.
-- (MySQL has no partial indexes, so the suspicious index stays.)
ALTER TABLE login_attempts
    DROP INDEX login_attempts_ip,
    DROP INDEX login_attempts_outcome;

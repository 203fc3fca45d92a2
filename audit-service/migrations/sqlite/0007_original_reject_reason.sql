-- The producer's own words for an attempt's outcome (audit.v1 Attempt's
-- original_reject_reason): set on attempts imported from the Django
-- service's log ("Wrong password", '' on a success), NULL on every other.
ALTER TABLE login_attempts ADD COLUMN original_reject_reason TEXT;

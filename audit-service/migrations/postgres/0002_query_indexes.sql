-- Filters of the query API: IP or CIDR, identifier, user id, reason, flag.
-- ip_key is the client IP as 32 hex digits of its IPv6 form (IPv4 mapped to
-- ::ffff:a.b.c.d), so a CIDR is a range of one index; '' when the IP is
-- empty or not an address, NULL until the service has computed it (rows
-- older than this migration are filled in at start-up).
ALTER TABLE login_attempts ADD COLUMN ip_key TEXT;

CREATE INDEX login_attempts_ip_key ON login_attempts (ip_key, occurred_at, id);
CREATE INDEX login_attempts_identifier ON login_attempts (identifier, occurred_at, id);
CREATE INDEX login_attempts_user ON login_attempts (user_id, occurred_at, id);
CREATE INDEX login_attempts_reason ON login_attempts (reject_reason, occurred_at, id);
CREATE INDEX login_attempts_suspicious ON login_attempts (suspicious, occurred_at, id);

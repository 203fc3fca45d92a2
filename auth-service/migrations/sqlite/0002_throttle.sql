-- Brute-force and rate-limit state, shared by every replica. One row per
-- key: `acct:<user id or lower-cased identifier>`, `acctip:<acct>|<ip>`,
-- `ip:<ip>`, `rl:<action>:<ip>`, `rf:<refresh family>`. Times are Unix seconds.
CREATE TABLE throttle (
    key           TEXT    PRIMARY KEY,
    -- Events counted in the current window.
    hits          BIGINT  NOT NULL,
    -- When the current counting window began.
    window_start  BIGINT  NOT NULL,
    -- Refused until this time (0: not blocked).
    blocked_until BIGINT  NOT NULL DEFAULT 0,
    -- Locks so far (the lock tier); reset with the window.
    strikes       BIGINT  NOT NULL DEFAULT 0
);
CREATE INDEX throttle_window ON throttle (window_start);

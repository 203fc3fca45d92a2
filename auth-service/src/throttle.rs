//! Brute-force protection and rate limits: the policy (pure functions of
//! counters and the current time) and the keys it counts under.
//!
//! The counters live in the auth database (`throttle` table) so every
//! replica sees the same state. A login try is a reservation: before any
//! password is checked, the store counts the try under all three keys as
//! if it had failed and applies [`BruteForcePolicy`], in one transaction
//! that refuses the try if any key is blocked. Requests released at the
//! same instant are serialised on the counter rows, so a burst gets exactly
//! as many password checks as the thresholds allow; a success then gives
//! its counts back (see `AuthStore::reserve_login`).
//!
//! Three counters see every failed login:
//! - account + IP: after `pair_free_failures` failures each further one
//!   blocks that pair for an exponentially growing delay (capped);
//! - account from any IP: `account_lock_failures` failures lock the
//!   account for a tiered wait (short first, longer on repeat), so an
//!   attacker can slow a victim down but not lock them out for long;
//! - IP across accounts (credential stuffing): `ip_failures` failures in
//!   `ip_window` block the IP for `ip_block`.
//!
//! A client that has logged in to the account before (a *known client*,
//! OWASP's "device cookie" idea keyed on the client's address or IPv6
//! network) skips the account counter: the lock an attacker elsewhere keeps
//! up does not stop the owner, whose own guesses the account+IP delays
//! still bound.

use crate::domain::LoginIdentifier;
use std::{
    net::{IpAddr, Ipv6Addr},
    time::Duration,
};

/// "At most `max` events per `window` seconds."
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Events allowed in one window.
    pub max: i64,
    /// Window length, seconds.
    pub window: i64,
}

impl Limit {
    /// Parses `N/DURATION`, e.g. `20/1h`.
    pub fn parse(raw: &str) -> Option<Self> {
        let (max, window) = raw.trim().split_once('/')?;
        let max: i64 = max.trim().parse().ok().filter(|m| *m > 0)?;
        let window = common::config::parse_duration(window)?;
        Some(Self {
            max,
            window: i64::try_from(window.as_secs()).ok()?,
        })
    }

    /// Seconds to wait when `hits` events were counted in the window that
    /// began at `window_start`, or `None` when the event is allowed.
    pub fn retry_after(&self, hits: i64, window_start: i64, now: i64) -> Option<u64> {
        (hits > self.max).then(|| wait(window_start + self.window, now))
    }
}

/// Whole seconds from `now` until `until`, at least 1 (a `Retry-After: 0`
/// would invite an immediate retry that is still refused).
pub fn wait(until: i64, now: i64) -> u64 {
    u64::try_from((until - now).max(1)).unwrap_or(1)
}

/// Login brute-force thresholds (defaults: the numbers in the issue).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BruteForcePolicy {
    /// Failures per account + IP before delays start (5).
    pub pair_free_failures: i64,
    /// First delay, seconds; doubles with each further failure (1).
    pub pair_base_delay: i64,
    /// Longest delay, seconds (900).
    pub pair_max_delay: i64,
    /// Failures per account, from any IP, that lock it (20).
    pub account_lock_failures: i64,
    /// Lock durations, seconds, by how many locks came before (5m, 15m, 1h).
    pub account_lock_tiers: Vec<i64>,
    /// Seconds after the first counted failure when per-account counts
    /// (and lock tiers) start over (12h, Keycloak's default).
    pub failure_reset: i64,
    /// Failures per IP, across accounts, that block it (50).
    pub ip_failures: i64,
    /// The window those are counted in, seconds (600).
    pub ip_window: i64,
    /// How long an IP stays blocked, seconds (600).
    pub ip_block: i64,
    /// How long after its last successful login a client (address or IPv6
    /// network) stays known to the account, seconds (90 days). A known
    /// client is not held back by the account lock, only by its own
    /// account+client delays, so an attacker elsewhere who keeps the
    /// account locked does not keep its owner out.
    pub known_client_ttl: i64,
}

impl Default for BruteForcePolicy {
    fn default() -> Self {
        Self {
            pair_free_failures: 5,
            pair_base_delay: 1,
            pair_max_delay: 900,
            account_lock_failures: 20,
            account_lock_tiers: vec![300, 900, 3600],
            failure_reset: 43_200,
            ip_failures: 50,
            ip_window: 600,
            ip_block: 600,
            known_client_ttl: 90 * 86_400,
        }
    }
}

/// One counter row as the store returns it after counting a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    /// Failures in the current window, this one included.
    pub hits: i64,
    /// Refused until (0 when never blocked).
    pub blocked_until: i64,
    /// Locks so far in this window.
    pub strikes: i64,
}

/// What to write back after counting a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Update {
    /// New `hits`.
    pub hits: i64,
    /// New `blocked_until`.
    pub blocked_until: i64,
    /// New `strikes`.
    pub strikes: i64,
    /// A lock (or block) started with this failure.
    pub started: bool,
}

impl BruteForcePolicy {
    /// Account + IP: delay `base * 2^(n - free)` after the `n`-th failure
    /// (`n >= free`), capped.
    pub fn pair(&self, c: Counter, now: i64) -> Update {
        let mut u = unchanged(c);
        if c.hits >= self.pair_free_failures {
            let exp = u32::try_from(c.hits - self.pair_free_failures)
                .unwrap_or(u32::MAX)
                .min(40);
            let delay = self
                .pair_base_delay
                .saturating_mul(1_i64 << exp)
                .min(self.pair_max_delay);
            u.blocked_until = now + delay;
            u.started = true;
        }
        u
    }

    /// Account: lock after `account_lock_failures`, for the tier of this
    /// lock; the count starts again so the next lock needs as many failures.
    pub fn account(&self, c: Counter, now: i64) -> Update {
        let mut u = unchanged(c);
        if c.hits >= self.account_lock_failures {
            let tier = usize::try_from(c.strikes).unwrap_or(usize::MAX);
            let wait = self
                .account_lock_tiers
                .get(tier)
                .or(self.account_lock_tiers.last())
                .copied()
                .unwrap_or(300);
            u = Update {
                hits: 0,
                blocked_until: now + wait,
                strikes: c.strikes + 1,
                started: true,
            };
        }
        u
    }

    /// IP: block after `ip_failures` in the window.
    pub fn ip(&self, c: Counter, now: i64) -> Update {
        let mut u = unchanged(c);
        if c.hits >= self.ip_failures {
            u = Update {
                hits: 0,
                blocked_until: now + self.ip_block,
                strikes: c.strikes + 1,
                started: true,
            };
        }
        u
    }
}

fn unchanged(c: Counter) -> Update {
    Update {
        hits: c.hits,
        blocked_until: c.blocked_until,
        strikes: c.strikes,
        started: false,
    }
}

/// The three counters one login attempt is checked and counted against,
/// and who is trying from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginKeys {
    /// The account, when it exists.
    pub user_id: Option<i64>,
    /// The client as [`client_key`] makes it.
    pub client: String,
    /// `acctip:<account>|<ip>`.
    pub pair: String,
    /// `acct:<account>`.
    pub account: String,
    /// `ip:<ip>`.
    pub ip: String,
}

impl LoginKeys {
    /// Keys for an attempt on `user_id` (when the account exists) or else
    /// on the lower-cased identifier, so the username and the email of one
    /// account count together and unknown names are throttled alike. `ip`
    /// is the client's key as [`client_key`] makes it.
    pub fn new(user_id: Option<i64>, identifier: &LoginIdentifier, client: String) -> Self {
        let account = match user_id {
            Some(id) => account_key(id),
            None => format!("acct:n{}", identifier.counter_name()),
        };
        Self {
            user_id,
            pair: format!("acctip:{}|{client}", &account["acct:".len()..]),
            account,
            ip: format!("ip:{client}"),
            client,
        }
    }
}

/// Default IPv6 prefix a client is counted by: one /64 is one subscriber
/// (RFC 6177 hands out /48 to /64 per site; a /64 is what one LAN gets, and
/// an attacker who holds one can use 2^64 addresses of it).
pub const DEFAULT_IPV6_PREFIX: u8 = 64;

/// The client as every per-IP counter sees it: an IPv4 address as itself
/// (IPv4-mapped IPv6 included), an IPv6 address as its `/prefix` network,
/// and a caller without a valid address as the one client `unknown`, so
/// leaving the address out never escapes a limit. The log keeps the full
/// address; only the counters use this.
pub fn client_key(ip: &str, ipv6_prefix: u8) -> String {
    match ip.trim().parse::<IpAddr>().map(|ip| ip.to_canonical()) {
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Ok(IpAddr::V6(v6)) => {
            let prefix = ipv6_prefix.min(128);
            let mask = u128::MAX.checked_shl(u32::from(128 - prefix)).unwrap_or(0);
            format!("{}/{prefix}", Ipv6Addr::from(u128::from(v6) & mask))
        }
        Err(_) => "unknown".to_owned(),
    }
}

/// The per-account key of an existing account.
pub fn account_key(user_id: i64) -> String {
    format!("acct:u{user_id}")
}

/// The prefix of every account + IP key of an existing account.
pub fn pair_prefix(user_id: i64) -> String {
    format!("acctip:u{user_id}|")
}

/// Per-IP rate limits and the refresh family limit (issue defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Registrations per IP.
    pub register: Limit,
    /// Verification code requests per IP.
    pub code_request: Limit,
    /// Verification code checks per IP.
    pub code_verify: Limit,
    /// Refreshes per token family (60 a minute).
    pub refresh_family: Limit,
    /// Password reset requests per IP (10 in 10 minutes).
    pub reset_request: Limit,
    /// Password reset requests per email address, from any IP (5 an hour),
    /// so one inbox cannot be flooded from many addresses.
    pub reset_request_email: Limit,
    /// Password reset confirmations (code checks) per IP (30 in 10 minutes).
    pub reset_confirm: Limit,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            register: Limit {
                max: 20,
                window: 3600,
            },
            code_request: Limit {
                max: 10,
                window: 600,
            },
            code_verify: Limit {
                max: 30,
                window: 600,
            },
            refresh_family: Limit {
                max: 60,
                window: 60,
            },
            reset_request: Limit {
                max: 10,
                window: 600,
            },
            reset_request_email: Limit {
                max: 5,
                window: 3600,
            },
            reset_confirm: Limit {
                max: 30,
                window: 600,
            },
        }
    }
}

/// Seconds in `d`, saturating.
pub fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(hits: i64, strikes: i64) -> Counter {
        Counter {
            hits,
            blocked_until: 0,
            strikes,
        }
    }

    /// [`LoginKeys::new`] from plain text.
    fn keys(user_id: Option<i64>, identifier: &str, client: &str) -> LoginKeys {
        LoginKeys::new(
            user_id,
            &LoginIdentifier::new(identifier),
            client.to_owned(),
        )
    }

    #[test]
    fn pair_delays_start_at_the_fifth_failure_double_and_cap_at_15_minutes() {
        let p = BruteForcePolicy::default();
        assert!(!p.pair(c(4, 0), 100).started);
        assert_eq!(p.pair(c(5, 0), 100).blocked_until, 101);
        assert_eq!(p.pair(c(6, 0), 100).blocked_until, 102);
        assert_eq!(p.pair(c(9, 0), 100).blocked_until, 116);
        assert_eq!(p.pair(c(40, 0), 100).blocked_until, 1000);
        assert_eq!(p.pair(c(i64::MAX, 0), 100).blocked_until, 1000);
    }

    #[test]
    fn account_locks_at_twenty_with_growing_tiers_that_stop_growing() {
        let p = BruteForcePolicy::default();
        assert!(!p.account(c(19, 0), 0).started);
        let first = p.account(c(20, 0), 0);
        assert_eq!(
            (first.blocked_until, first.strikes, first.hits),
            (300, 1, 0)
        );
        assert_eq!(p.account(c(20, 1), 0).blocked_until, 900);
        assert_eq!(p.account(c(20, 2), 0).blocked_until, 3600);
        assert_eq!(p.account(c(20, 9), 0).blocked_until, 3600);
    }

    #[test]
    fn ip_blocks_at_fifty() {
        let p = BruteForcePolicy::default();
        assert!(!p.ip(c(49, 0), 0).started);
        assert_eq!(p.ip(c(50, 0), 0).blocked_until, 600);
    }

    #[test]
    fn username_and_email_of_one_account_share_keys_and_unknown_names_are_lowercased() {
        let a = keys(Some(7), "Bob", "1.2.3.4");
        let b = keys(Some(7), "bob@example.com", "1.2.3.4");
        assert_eq!(a, b);
        assert_eq!(a.pair, "acctip:u7|1.2.3.4");
        assert!(a.pair.starts_with(&pair_prefix(7)));
        let x = keys(None, "Ghost@Example.com", &client_key("", 64));
        assert_eq!(x.account, "acct:nghost@example.com");
        assert_eq!(x.ip, "ip:unknown");
    }

    #[test]
    fn identifiers_no_account_can_have_are_counted_by_digest() {
        let nul = keys(None, "ad\0min", "192.0.2.1");
        assert!(!nul.account.contains('\0'), "{}", nul.account);
        assert_eq!(nul.account.len(), "acct:n#".len() + 64);
        let long = "x".repeat(60_000);
        let a = keys(None, &long, "192.0.2.1");
        assert_eq!(a, keys(None, &long.to_uppercase(), "192.0.2.1"));
        assert_eq!(a.account.len(), "acct:n#".len() + 64);
        assert_ne!(a.account, nul.account);
        let edge = "y".repeat(LoginIdentifier::MAX_CHARS);
        assert_eq!(
            keys(None, &edge, "192.0.2.1").account,
            format!("acct:n{edge}")
        );
    }

    #[test]
    fn ipv6_clients_are_counted_by_network_and_mapped_ipv4_as_ipv4() {
        assert_eq!(client_key("2001:db8:1:2::1", 64), "2001:db8:1:2::/64");
        assert_eq!(
            client_key("2001:db8:1:2:ffff:1:2:3", 64),
            "2001:db8:1:2::/64"
        );
        assert_ne!(client_key("2001:db8:1:3::1", 64), "2001:db8:1:2::/64");
        assert_eq!(client_key("2001:db8:1:2::1", 48), "2001:db8:1::/48");
        assert_eq!(client_key("2001:db8::1", 128), "2001:db8::1/128");
        assert_eq!(client_key("2001:db8::1", 0), "::/0");
        assert_eq!(client_key("::ffff:192.0.2.7", 64), "192.0.2.7");
        assert_eq!(client_key("192.0.2.7", 64), "192.0.2.7");
        assert_eq!(client_key("", 64), "unknown");
        assert_eq!(client_key("not-an-ip", 64), "unknown");
    }

    #[test]
    fn limits_parse_and_say_how_long_to_wait() {
        let l = Limit::parse("20/1h").unwrap();
        assert_eq!(
            l,
            Limit {
                max: 20,
                window: 3600
            }
        );
        assert_eq!(l.retry_after(20, 0, 10), None);
        assert_eq!(l.retry_after(21, 0, 10), Some(3590));
        assert!(Limit::parse("0/1h").is_none());
        assert!(Limit::parse("20").is_none());
    }
}

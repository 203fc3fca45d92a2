//! Domain types of the log and their conversion from and to the wire.
//!
//! Raw protobuf messages enter the core only through the `TryFrom`/parse
//! functions here, so the stores can trust every value they are given.

use std::net::{IpAddr, Ipv6Addr};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ipnet::IpNet;
use prost_types::Timestamp;
use proto::audit::v1 as pb;
use uuid::Uuid;

use crate::error::Error;

/// Longest stored User-Agent and request id: the limits the edge applies.
pub use common::metadata::{MAX_REQUEST_ID_CHARS, MAX_USER_AGENT_CHARS};
/// Longest stored identifier or email: an email address can be 254 octets,
/// and the identifier is whatever the client typed, so a little headroom.
pub const MAX_EMAIL_CHARS: usize = 320;
/// Longest stored username (Django's limit, which the old accounts keep).
pub const MAX_USERNAME_CHARS: usize = 150;
/// Longest stored IP text (an IPv6 address with a zone fits easily).
pub const MAX_IP_CHARS: usize = 64;

/// Microseconds since the Unix epoch (UTC): the stored time, identical on
/// every backend so ordering and cursors behave the same everywhere.
pub type Micros = i64;

/// Earliest accepted time, 0001-01-01T00:00:00Z, so every stored time can be
/// written as RFC 3339 by readers.
const MIN_SECONDS: i64 = -62_135_596_800;
/// Latest accepted time, 9999-12-31T23:59:59Z.
const MAX_SECONDS: i64 = 253_402_300_799;

/// An attempt as validated for storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAttempt {
    /// Canonical (lowercase, hyphenated) UUID, so the same id sent in another
    /// spelling is still recognised as a duplicate.
    pub event_id: String,
    /// When the attempt was decided.
    pub occurred_at: Micros,
    /// What the client submitted as username or email.
    pub identifier: String,
    /// The account's id when known; deliberately not a foreign key.
    pub user_id: Option<i64>,
    /// The account's username when known.
    pub username: Option<String>,
    /// The account's email, else the identifier.
    pub email: String,
    /// `email` folded for case-insensitive filtering and counting.
    pub email_lower: String,
    /// Whether tokens were issued.
    pub successful: bool,
    /// Failure reason, empty on success.
    pub reject_reason: String,
    /// Client IP as text (may be empty when unknown).
    pub ip: String,
    /// `ip` as an [`ip_key`]: one key per address however it is spelled,
    /// what the suspicious rule counts by; empty when not an address.
    pub ip_key: String,
    /// Client User-Agent; `None` when the client sent none.
    pub user_agent: Option<String>,
    /// Request id carried from the edge.
    pub request_id: String,
    /// How many attempts this record stands for (at least 1; more only for
    /// a producer's tally of refused failures).
    pub count: i64,
    /// When the last of `count` attempts was decided; `None` when `count`
    /// is 1.
    pub last_occurred_at: Option<Micros>,
}

/// An attempt as stored, with what the log added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAttempt {
    /// Storage id, increasing with insertion.
    pub id: i64,
    /// Whether the suspicious-activity rule flagged it at ingest.
    pub suspicious: bool,
    /// The attempt itself.
    pub attempt: NewAttempt,
}

/// Which attempts a listing or a tail returns; `None` fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only successes (`true`) or only failures (`false`).
    pub successful: Option<bool>,
    /// Client IP or CIDR, as a range of [`ip_key`]s.
    pub ip: Option<IpRange>,
    /// Email, already folded like [`NewAttempt::email_lower`].
    pub email_lower: Option<String>,
    /// `occurred_at >= since`.
    pub since: Option<Micros>,
    /// `occurred_at < until`.
    pub until: Option<Micros>,
    /// Exact identifier.
    pub identifier: Option<String>,
    /// The account's id.
    pub user_id: Option<i64>,
    /// A failure reason's code (`bad_password`).
    pub reason: Option<String>,
    /// Only flagged (`true`) or only unflagged (`false`) attempts.
    pub suspicious: Option<bool>,
}

/// An inclusive range of [`ip_key`]s: one address, or a CIDR block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpRange {
    /// Key of the first address.
    pub lo: String,
    /// Key of the last address (equal to `lo` for one address).
    pub hi: String,
}

/// The stored, indexable form of an IP: 32 hex digits of its IPv6 form
/// (IPv4 as `::ffff:a.b.c.d`), so every spelling of one address has one key
/// and a CIDR block is a contiguous range. `""` when `ip` is no address.
pub fn ip_key(ip: &str) -> String {
    ip.trim()
        .parse::<IpAddr>()
        .map(|addr| hex_key(to_v6(addr)))
        .unwrap_or_default()
}

fn to_v6(addr: IpAddr) -> Ipv6Addr {
    match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

fn hex_key(addr: Ipv6Addr) -> String {
    format!("{:032x}", u128::from(addr))
}

impl IpRange {
    /// An address (`10.0.0.1`, `::1`) or a CIDR block (`10.0.0.0/8`).
    pub fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        if let Ok(addr) = raw.parse::<IpAddr>() {
            let key = hex_key(to_v6(addr));
            return Some(Self {
                lo: key.clone(),
                hi: key,
            });
        }
        let net: IpNet = raw.parse().ok()?;
        Some(Self {
            lo: hex_key(to_v6(net.network())),
            hi: hex_key(to_v6(net.broadcast())),
        })
    }

    /// Whether `key` (an [`ip_key`]) falls in the range.
    pub fn contains(&self, key: &str) -> bool {
        !key.is_empty() && self.lo.as_str() <= key && key <= self.hi.as_str()
    }
}

/// Position after the last row of a page, in listing order. Opaque to
/// clients: they only hand back what `encode` produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// `occurred_at` of the last row returned.
    pub occurred_at: Micros,
    /// `id` of the last row returned, breaking ties between equal times.
    pub id: i64,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Newest first.
    pub attempts: Vec<StoredAttempt>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

/// Page size when the request leaves it at 0.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest page size, keeping one response (and one query) bounded.
pub const MAX_LIMIT: u32 = 500;

/// The page size a request asks for, with 0 meaning the default.
pub fn parse_limit(limit: u32) -> Result<u32, Error> {
    match limit {
        0 => Ok(DEFAULT_LIMIT),
        1..=MAX_LIMIT => Ok(limit),
        _ => Err(Error::invalid("limit", "must be between 1 and 500")),
    }
}

impl Cursor {
    /// Base64url of `occurred_at:id`: opaque enough that clients do not build
    /// their own, plain enough to debug.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}:{}", self.occurred_at, self.id))
    }

    /// Reads a cursor produced by [`Cursor::encode`].
    pub fn decode(raw: &str) -> Result<Self, Error> {
        let invalid = || Error::invalid("cursor", "is not a cursor returned by this service");
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| invalid())?;
        let text = std::str::from_utf8(&bytes).map_err(|_| invalid())?;
        let (at, id) = text.split_once(':').ok_or_else(invalid)?;
        Ok(Self {
            occurred_at: at.parse().map_err(|_| invalid())?,
            id: id.parse().map_err(|_| invalid())?,
        })
    }
}

/// Converts a protobuf time to stored microseconds, refusing times that
/// cannot be written as RFC 3339 and sub-second parts out of range.
pub fn timestamp_to_micros(ts: &Timestamp) -> Option<Micros> {
    if !(MIN_SECONDS..=MAX_SECONDS).contains(&ts.seconds) || !(0..1_000_000_000).contains(&ts.nanos)
    {
        return None;
    }
    ts.seconds
        .checked_mul(1_000_000)?
        .checked_add(i64::from(ts.nanos / 1_000))
}

/// Converts stored microseconds back to a protobuf time.
pub fn micros_to_timestamp(micros: Micros) -> Timestamp {
    Timestamp {
        seconds: micros.div_euclid(1_000_000),
        // rem_euclid is in 0..1_000_000, so the product fits an i32.
        nanos: i32::try_from(micros.rem_euclid(1_000_000) * 1_000).unwrap_or(0),
    }
}

/// Folds an email the same way at ingest and in filters.
pub fn fold_email(email: &str) -> String {
    email.to_lowercase()
}

/// Makes producer text storable instead of rejecting it, so no attempt is
/// ever lost to formatting: NUL (which PostgreSQL text refuses) is dropped,
/// and overlong text is cut at a character boundary.
fn clean(text: String, max_chars: usize) -> String {
    if !text.contains('\0') && text.len() <= max_chars {
        return text;
    }
    text.chars()
        .filter(|&c| c != '\0')
        .take(max_chars)
        .collect()
}

/// How far ahead of this host's clock an attempt may be dated: producers
/// stamp attempts with their own clock, and NTP keeps hosts within far
/// less than this, so more means a broken clock or a forged time that
/// would otherwise sit at the top of every listing.
pub const MAX_FUTURE_MICROS: Micros = 5 * 60 * 1_000_000;

/// How far behind this host's clock an attempt may be dated: 366 days.
///
/// auth-service keeps every attempt in its outbox until audit-service acks
/// it, with no expiry, so an attempt arrives as late as the longest outage
/// of audit-service (or of the network to it) lasts. An age bound shorter
/// than any outage someone could fail to notice would turn that outage into
/// refused, and so lost, attempts; a year is far beyond that, yet still
/// refuses the times of a broken clock (the epoch, year 1, a default date).
/// Retention later removes what is older than it keeps, as for any row.
pub const MAX_AGE_MICROS: Micros = 366 * 24 * 3_600 * 1_000_000;

impl NewAttempt {
    /// Validates one attempt of a batch received at `now`; `index` names it
    /// in the error so the producer can find the bad row, and every error
    /// after the event id also names the event.
    ///
    /// Free text is cleaned rather than refused (see `clean`); the fields
    /// the log filters and counts by must mean what they say: `ip` is empty
    /// or an address, `reject_reason` is empty on success and one of
    /// `pb::RejectReason::FAILURES` on failure, and `occurred_at` lies between
    /// [`MAX_AGE_MICROS`] before and [`MAX_FUTURE_MICROS`] after `now`.
    pub fn parse(index: usize, raw: pb::Attempt, now: Micros) -> Result<Self, Error> {
        let field = |name: &str| format!("attempts[{index}].{name}");
        let event_id = Uuid::parse_str(&raw.event_id)
            .map_err(|_| Error::invalid(field("event_id"), "must be a UUID"))?
            .hyphenated()
            .to_string();
        let invalid = |name: &str, reason| Error::InvalidAttempt {
            field: field(name),
            reason,
            event_id: event_id.clone(),
        };
        let occurred_at = raw
            .occurred_at
            .as_ref()
            .ok_or_else(|| invalid("occurred_at", "is required"))
            .and_then(|ts| {
                timestamp_to_micros(ts).ok_or_else(|| {
                    invalid(
                        "occurred_at",
                        "must be a valid time between years 1 and 9999",
                    )
                })
            })?;
        if occurred_at > now.saturating_add(MAX_FUTURE_MICROS) {
            return Err(invalid(
                "occurred_at",
                "is more than 5 minutes ahead of the log's clock",
            ));
        }
        if occurred_at < now.saturating_sub(MAX_AGE_MICROS) {
            return Err(invalid("occurred_at", "is more than 366 days old"));
        }
        let (count, last_occurred_at) = tally(&raw, occurred_at, now, &invalid)?;
        let reason =
            reason_of(&raw).ok_or_else(|| invalid("reason", "must be one of the known reasons"))?;
        if raw.successful && reason != pb::RejectReason::Unspecified {
            return Err(invalid("reason", "must be unspecified on a success"));
        }
        if !raw.successful && reason == pb::RejectReason::Unspecified {
            return Err(invalid("reason", "is required on a failure"));
        }
        let reject_reason = reason.code().to_owned();
        let ip = clean(raw.ip, MAX_IP_CHARS);
        if !ip.is_empty() && ip.parse::<IpAddr>().is_err() {
            return Err(invalid("ip", "must be empty or an IP address"));
        }
        let email = clean(raw.email, MAX_EMAIL_CHARS);
        Ok(Self {
            event_id,
            occurred_at,
            identifier: clean(raw.identifier, MAX_EMAIL_CHARS),
            user_id: raw.user_id,
            username: raw.username.map(|u| clean(u, MAX_USERNAME_CHARS)),
            email_lower: fold_email(&email),
            email,
            successful: raw.successful,
            reject_reason,
            ip_key: ip_key(&ip),
            ip,
            user_agent: raw.user_agent.map(|ua| clean(ua, MAX_USER_AGENT_CHARS)),
            request_id: clean(raw.request_id, MAX_REQUEST_ID_CHARS),
            count,
            last_occurred_at,
        })
    }

    /// Validates a whole batch received at `now` before anything is
    /// written, so a bad batch leaves no partial trace.
    pub fn parse_batch(raw: Vec<pb::Attempt>, now: Micros) -> Result<Vec<Self>, Error> {
        raw.into_iter()
            .enumerate()
            .map(|(i, a)| Self::parse(i, a, now))
            .collect()
    }
}

/// The reason `raw` gives: its `reason`, or from a producer that predates
/// it, its text; `None` when it names none the log knows.
#[allow(deprecated)]
fn reason_of(raw: &pb::Attempt) -> Option<pb::RejectReason> {
    if raw.reason != 0 {
        return pb::RejectReason::try_from(raw.reason).ok();
    }
    let legacy = raw.legacy_reject_reason.replace('\0', "");
    if legacy.is_empty() {
        return Some(pb::RejectReason::Unspecified);
    }
    pb::RejectReason::from_code(&legacy)
}

/// The count and last time of `raw`, whose first attempt is at
/// `occurred_at`: a count above 1 is a tally of failures, so a success
/// cannot have one, and its last time lies between its first and the
/// future bound; a count of 0 or 1 ignores the last time.
fn tally(
    raw: &pb::Attempt,
    occurred_at: Micros,
    now: Micros,
    invalid: &dyn Fn(&str, &'static str) -> Error,
) -> Result<(i64, Option<Micros>), Error> {
    if raw.count <= 1 {
        return Ok((1, None));
    }
    if raw.successful {
        return Err(invalid("count", "must be 0 or 1 on a success"));
    }
    let last = raw
        .last_occurred_at
        .as_ref()
        .ok_or_else(|| invalid("last_occurred_at", "is required when count > 1"))?;
    let last = timestamp_to_micros(last)
        .filter(|&t| t >= occurred_at && t <= now.saturating_add(MAX_FUTURE_MICROS))
        .ok_or_else(|| {
            invalid(
                "last_occurred_at",
                "must lie between occurred_at and 5 minutes ahead of the log's clock",
            )
        })?;
    Ok((i64::from(raw.count), Some(last)))
}

/// This host's clock as [`Micros`], read once per batch at the ingest
/// boundary so [`NewAttempt::parse`] itself stays clock-free and testable.
pub fn now_micros() -> Micros {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    // u128 microseconds fit an i64 until the year 294,247.
    i64::try_from(since_epoch.as_micros()).unwrap_or(Micros::MAX)
}

impl From<NewAttempt> for pb::Attempt {
    fn from(a: NewAttempt) -> Self {
        Self {
            event_id: a.event_id,
            occurred_at: Some(micros_to_timestamp(a.occurred_at)),
            identifier: a.identifier,
            user_id: a.user_id,
            username: a.username,
            email: a.email,
            successful: a.successful,
            reason: pb::RejectReason::from_code(&a.reject_reason).unwrap_or_default() as i32,
            ip: a.ip,
            user_agent: a.user_agent,
            request_id: a.request_id,
            // A trace ends where the attempt is recorded; the log keeps none.
            trace_parent: None,
            count: u32::try_from(a.count).unwrap_or(u32::MAX),
            last_occurred_at: a.last_occurred_at.map(micros_to_timestamp),
            ..Default::default()
        }
    }
}

impl From<StoredAttempt> for pb::AttemptRecord {
    fn from(s: StoredAttempt) -> Self {
        Self {
            id: s.id,
            suspicious: s.suspicious,
            attempt: Some(s.attempt.into()),
        }
    }
}

impl Filter {
    /// The filters of a listing or tail request (none when absent).
    pub fn parse(req: Option<&pb::AttemptFilter>) -> Result<Self, Error> {
        let Some(req) = req else {
            return Ok(Self::default());
        };
        let time = |name: &str, ts: Option<&Timestamp>| {
            ts.map(|ts| {
                timestamp_to_micros(ts).ok_or_else(|| {
                    Error::invalid(name, "must be a valid time between years 1 and 9999")
                })
            })
            .transpose()
        };
        let ip = req
            .ip
            .as_deref()
            .map(|raw| {
                IpRange::parse(raw)
                    .ok_or_else(|| Error::invalid("ip", "must be an IP address or a CIDR block"))
            })
            .transpose()?;
        let reason = req
            .reason
            .map(|r| {
                pb::RejectReason::try_from(r)
                    .ok()
                    .filter(|r| *r != pb::RejectReason::Unspecified)
                    .map(|r| r.code().to_owned())
                    .ok_or_else(|| Error::invalid("reason", "must be one of the known reasons"))
            })
            .transpose()?;
        Ok(Self {
            successful: req.successful,
            ip,
            email_lower: req.email.as_deref().map(fold_email),
            since: time("since", req.since.as_ref())?,
            until: time("until", req.until.as_ref())?,
            identifier: req.identifier.clone(),
            user_id: req.user_id,
            reason,
            suspicious: req.suspicious,
        })
    }

    /// Whether a stored attempt passes the filter: the tail's in-memory
    /// equivalent of the listing's `WHERE` clause.
    pub fn matches(&self, s: &StoredAttempt) -> bool {
        let a = &s.attempt;
        self.successful.is_none_or(|v| a.successful == v)
            && self.ip.as_ref().is_none_or(|r| r.contains(&a.ip_key))
            && self
                .email_lower
                .as_ref()
                .is_none_or(|e| *e == a.email_lower)
            && self.since.is_none_or(|t| a.occurred_at >= t)
            && self.until.is_none_or(|t| a.occurred_at < t)
            && self.identifier.as_ref().is_none_or(|i| *i == a.identifier)
            && self.user_id.is_none_or(|u| a.user_id == Some(u))
            && self.reason.as_ref().is_none_or(|r| *r == a.reject_reason)
            && self.suspicious.is_none_or(|v| s.suspicious == v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The receiving clock in these tests: one minute after the attempt.
    const NOW: Micros = 1_700_000_060_000_000;

    fn raw_attempt() -> pb::Attempt {
        pb::Attempt {
            event_id: "0190F8A2-7C3B-7D4E-8F00-123456789ABC".into(),
            occurred_at: Some(Timestamp {
                seconds: 1_700_000_000,
                nanos: 123_456_789,
            }),
            email: "Alice@Example.COM".into(),
            reason: pb::RejectReason::BadPassword as i32,
            ..Default::default()
        }
    }

    #[test]
    fn event_ids_are_stored_in_canonical_form() {
        let a = NewAttempt::parse(0, raw_attempt(), NOW).unwrap();
        assert_eq!(a.event_id, "0190f8a2-7c3b-7d4e-8f00-123456789abc");
        assert_eq!(a.email, "Alice@Example.COM");
        assert_eq!(a.email_lower, "alice@example.com");
        assert_eq!(a.occurred_at, 1_700_000_000_123_456);
    }

    #[test]
    fn a_bad_event_id_names_the_row_and_field() {
        let mut raw = raw_attempt();
        raw.event_id = "nope".into();
        let err = NewAttempt::parse_batch(vec![raw_attempt(), raw], NOW).unwrap_err();
        assert!(err.to_string().contains("attempts[1].event_id"), "{err}");
    }

    /// The refusal of `raw` (row 2 of its batch) at `now`, as sent.
    fn refusal(raw: pb::Attempt, now: Micros) -> String {
        let fine = pb::Attempt {
            occurred_at: Some(micros_to_timestamp(now)),
            ..raw_attempt()
        };
        let batch = vec![fine.clone(), fine, raw];
        NewAttempt::parse_batch(batch, now).unwrap_err().to_string()
    }

    const EVENT: &str = "(event_id 0190f8a2-7c3b-7d4e-8f00-123456789abc)";

    #[test]
    fn an_ip_must_be_empty_or_an_address() {
        for ok in ["", "10.0.0.1", "2001:db8::1", "::ffff:10.0.0.1"] {
            let raw = pb::Attempt {
                ip: ok.into(),
                ..raw_attempt()
            };
            assert!(NewAttempt::parse(0, raw, NOW).is_ok(), "{ok}");
        }
        for bad in [
            "garbage",
            "1.2.3",
            " 10.0.0.1",
            "10.0.0.0/8",
            "fe80::1%eth0",
        ] {
            let raw = pb::Attempt {
                ip: bad.into(),
                ..raw_attempt()
            };
            let err = refusal(raw, NOW);
            assert!(err.starts_with("attempts[2].ip "), "{bad}: {err}");
            assert!(err.ends_with(EVENT), "{err}");
        }
    }

    /// `raw_attempt` failing with `reason`, spelled the current way.
    fn failing(reason: i32) -> pb::Attempt {
        pb::Attempt {
            reason,
            ..raw_attempt()
        }
    }

    /// `raw_attempt` failing with `reason`, spelled as producers did
    /// before `reason` existed (outbox rows of that time still do).
    #[allow(deprecated)]
    fn failing_legacy(reason: &str) -> pb::Attempt {
        pb::Attempt {
            reason: 0,
            legacy_reject_reason: reason.into(),
            ..raw_attempt()
        }
    }

    #[test]
    fn a_reason_is_unspecified_on_success_and_known_on_failure() {
        for reason in pb::RejectReason::FAILURES {
            for raw in [failing(reason as i32), failing_legacy(reason.code())] {
                let a = NewAttempt::parse(0, raw, NOW).unwrap();
                assert_eq!(a.reject_reason, reason.code());
            }
        }
        let success = pb::Attempt {
            successful: true,
            reason: 0,
            ..raw_attempt()
        };
        assert!(NewAttempt::parse(0, success.clone(), NOW).is_ok());
        for bad in [
            pb::Attempt {
                reason: pb::RejectReason::BadPassword as i32,
                ..success.clone()
            },
            pb::Attempt {
                successful: true,
                ..failing_legacy("bad_password")
            },
            failing(0),
            failing(99),
            failing_legacy("Bad_Password"),
            failing_legacy("bored"),
        ] {
            let err = refusal(bad, NOW);
            assert!(err.starts_with("attempts[2].reason "), "{err}");
            assert!(err.ends_with(EVENT), "{err}");
        }
    }

    #[test]
    fn a_time_must_lie_within_a_year_back_and_five_minutes_ahead() {
        let at = raw_attempt().occurred_at.unwrap();
        let at = timestamp_to_micros(&at).unwrap();
        // Exactly at each bound is accepted.
        for now in [at - MAX_FUTURE_MICROS, at + MAX_AGE_MICROS] {
            assert!(NewAttempt::parse(0, raw_attempt(), now).is_ok(), "{now}");
        }
        for now in [at - MAX_FUTURE_MICROS - 1, at + MAX_AGE_MICROS + 1] {
            let err = refusal(raw_attempt(), now);
            assert!(err.starts_with("attempts[2].occurred_at "), "{err}");
            assert!(err.ends_with(EVENT), "{err}");
        }
    }

    #[test]
    fn long_text_is_truncated_on_a_char_boundary_and_nul_dropped() {
        let mut raw = raw_attempt();
        raw.user_agent = Some("é".repeat(600));
        raw.ip = "1.2.3.4\0".into();
        let a = NewAttempt::parse(0, raw, NOW).unwrap();
        assert_eq!(a.user_agent.unwrap().chars().count(), MAX_USER_AGENT_CHARS);
        assert_eq!(a.ip, "1.2.3.4");
    }

    #[test]
    fn timestamps_round_trip_including_before_1970() {
        for micros in [0, 1, -1, 1_700_000_000_123_456, -86_400_000_001] {
            let ts = micros_to_timestamp(micros);
            assert_eq!(timestamp_to_micros(&ts), Some(micros));
        }
        let bad = Timestamp {
            seconds: 1,
            nanos: -1,
        };
        assert_eq!(timestamp_to_micros(&bad), None);
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = Cursor {
            occurred_at: -5,
            id: 42,
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        // Not base64, base64 of "abc", of "1:x", and empty.
        for bad in ["!!!", "YWJj", "MTp4", ""] {
            let err = Cursor::decode(bad).unwrap_err();
            assert!(err.to_string().contains("cursor"), "{err}");
        }
    }

    #[test]
    fn ip_keys_unify_spellings_and_cidrs_are_ranges() {
        assert_eq!(ip_key("10.0.0.1"), ip_key("::ffff:10.0.0.1"));
        assert_eq!(ip_key("10.0.0.1"), "00000000000000000000ffff0a000001");
        assert_eq!(ip_key("garbage"), "");
        let net = IpRange::parse("10.0.0.0/8").unwrap();
        assert!(net.contains(&ip_key("10.255.255.255")));
        assert!(!net.contains(&ip_key("11.0.0.0")));
        assert!(!net.contains(""));
        let v6 = IpRange::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(&ip_key("2001:db8:ffff::1")));
        assert!(!v6.contains(&ip_key("2001:db9::")));
        assert!(IpRange::parse("10.0.0.0/33").is_none());
    }

    #[test]
    fn bad_filters_name_the_field() {
        for reason in [0, 99] {
            let req = pb::AttemptFilter {
                reason: Some(reason),
                ..Default::default()
            };
            assert!(
                Filter::parse(Some(&req))
                    .unwrap_err()
                    .to_string()
                    .starts_with("reason")
            );
        }
        assert_eq!(Filter::parse(None).unwrap(), Filter::default());
        let req = pb::AttemptFilter {
            ip: Some("1.2.3".into()),
            ..Default::default()
        };
        assert!(
            Filter::parse(Some(&req))
                .unwrap_err()
                .to_string()
                .starts_with("ip")
        );
    }

    #[test]
    fn limits_default_and_are_bounded() {
        assert_eq!(parse_limit(0).unwrap(), 50);
        assert_eq!(parse_limit(500).unwrap(), 500);
        assert_eq!(
            parse_limit(501).unwrap_err().to_string(),
            "limit must be between 1 and 500"
        );
    }
}

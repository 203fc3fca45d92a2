//! Domain types of the log and their conversion from and to the wire.
//!
//! Raw protobuf messages enter the core only through the parse functions
//! here, so the stores can trust every value they are given:
//! - `ingest`: validating an ingested attempt ([`NewAttempt::parse`]);
//! - `filter`: the filters of a listing or tail, and IP keys and ranges;
//! - `page`: page sizes and keyset cursors;
//! - `count`: a count's range and buckets, and the answer's buckets.

mod count;
mod filter;
mod ingest;
mod page;

pub use count::{BucketCounts, CountQuery};
pub(crate) use filter::filter_time;
pub use filter::{Filter, IpRange, ip_key};
#[cfg(test)]
pub use ingest::{MAX_AGE_MICROS, MAX_FUTURE_MICROS};
pub(crate) use ingest::{clean, event_id, occurred_at};
pub use page::{Cursor, Order, Page, PageRequest};

use prost_types::Timestamp;
use proto::audit::v1 as pb;

/// Longest stored User-Agent and request id: the limits the edge applies.
pub use common::metadata::{MAX_REQUEST_ID_CHARS, MAX_USER_AGENT_CHARS};
/// Longest stored identifier or email: an email address can be 254 octets,
/// and the identifier is whatever the client typed, so a little headroom.
pub const MAX_EMAIL_CHARS: usize = 320;
/// Longest stored username (Django's limit, which the old accounts keep).
pub const MAX_USERNAME_CHARS: usize = 150;
/// Longest stored IP text (an IPv6 address with a zone fits easily).
pub const MAX_IP_CHARS: usize = 64;
/// Longest stored original reason text (the Django service's longest is 33
/// characters).
pub const MAX_ORIGINAL_REASON_CHARS: usize = 128;

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
    /// What was attempted, as its code (`login`, `password_change`,
    /// `password_reset`).
    pub kind: String,
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
    /// The producer's own words for the outcome (an imported row's
    /// original reason text); `None` for attempts this system decided.
    pub original_reject_reason: Option<String>,
    /// The producer's own suspicious flag, stored instead of the rule's
    /// verdict when set; not a column of its own.
    pub producer_suspicious: Option<bool>,
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
            kind: pb::AttemptKind::from_code(&a.kind).unwrap_or(pb::AttemptKind::Login) as i32,
            ip: a.ip,
            user_agent: a.user_agent,
            request_id: a.request_id,
            // A trace ends where the attempt is recorded; the log keeps none.
            trace_parent: None,
            count: u32::try_from(a.count).unwrap_or(u32::MAX),
            last_occurred_at: a.last_occurred_at.map(micros_to_timestamp),
            original_reject_reason: a.original_reject_reason,
            // The record's own flag says it; see `AttemptRecord.suspicious`.
            suspicious: None,
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

#[cfg(test)]
mod tests {
    use super::*;

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
}

//! One login attempt as REST clients see it, and its conversion from
//! audit-service's record: the listing, the exports and the live tail all
//! show this one shape.

use proto::audit::v1::AttemptRecord;
use serde::Serialize;

use crate::compat::ReasonText;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// One row as clients see it: the old fields first, then the new ones.
#[derive(Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct AttemptItem {
    /// Storage id.
    pub id: i64,
    /// The account's email when known, else what was submitted.
    pub email: String,
    /// Client IP; `null` when unknown.
    pub ip: Option<String>,
    /// When the attempt was decided, RFC 3339 UTC.
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    /// Client User-Agent; `null` when none was sent.
    pub user_agent: Option<String>,
    /// Why it failed: `unknown_user`, `bad_password`, `inactive`,
    /// `malformed_request`, `locked_out`, `rate_limited`, `code_wrong`,
    /// `code_expired` or `too_many_attempts`; `null` on success. A server
    /// run with `LOG_REASON_TEXT=django` writes the old service's texts
    /// instead where it had one (`User Not Exists`, `Wrong password`,
    /// `User blocked for too many attempt`) and `""` on success.
    pub reject_reason: Option<String>,
    /// Whether tokens were issued.
    pub successful: bool,
    /// Whether the suspicious-activity rule flagged it.
    pub suspicious: bool,
    /// The account's id, when the identifier matched one.
    pub user: Option<i64>,
    /// The attempt's idempotency key.
    pub event_id: String,
    /// The account's username when known.
    pub username: Option<String>,
    /// What the client submitted as username or email.
    pub identifier: String,
    /// The request id from the edge, for finding related log lines.
    pub request_id: String,
    /// How many attempts this record stands for: attempts refused before
    /// any password work (`rate_limited`, `locked_out`,
    /// `malformed_request`) from one client within one window are stored
    /// as one record whose other fields are the first attempt's.
    #[schema(minimum = 1)]
    pub count: u32,
    /// When the last of `count` attempts was decided, RFC 3339 UTC; `null`
    /// when `count` is 1.
    #[schema(format = DateTime)]
    pub last_created_at: Option<String>,
    /// What was attempted: `login`, `password_change` or `password_reset`
    /// (records from before kinds existed are logins).
    #[schema(pattern = "^(login|password_change|password_reset)$")]
    pub kind: &'static str,
    /// For a record imported from the Django service's log, its own
    /// `reject_reason` text as it was (`"Wrong password"`, `""` on a
    /// success; `reject_reason` holds the mapped reason); `null` for every
    /// attempt this system decided.
    pub original_reject_reason: Option<String>,
}

impl From<AttemptRecord> for AttemptItem {
    /// The item with reasons as codes.
    fn from(record: AttemptRecord) -> Self {
        Self::new(record, ReasonText::Codes)
    }
}

impl AttemptItem {
    /// The item of `record`, its reason written as `reasons` says.
    pub fn new(record: AttemptRecord, reasons: ReasonText) -> Self {
        let attempt = record.attempt.unwrap_or_default();
        let non_empty = |s: String| (!s.is_empty()).then_some(s);
        let reject_reason = reasons.show(attempt.reason());
        let kind = attempt.kind().code();
        Self {
            id: record.id,
            email: attempt.email,
            ip: non_empty(attempt.ip),
            created_at: attempt.occurred_at.and_then(rfc3339),
            user_agent: attempt.user_agent,
            reject_reason,
            successful: attempt.successful,
            suspicious: record.suspicious,
            user: attempt.user_id,
            event_id: attempt.event_id,
            username: attempt.username,
            identifier: attempt.identifier,
            request_id: attempt.request_id,
            count: attempt.count.max(1),
            last_created_at: attempt
                .last_occurred_at
                .filter(|_| attempt.count > 1)
                .and_then(rfc3339),
            kind,
            original_reject_reason: attempt.original_reject_reason,
        }
    }
}

/// A protobuf timestamp as RFC 3339 in UTC (`...Z`), or `None` when out of
/// range.
pub fn rfc3339(ts: prost_types::Timestamp) -> Option<String> {
    let nanos = i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos);
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()?
        .format(&Rfc3339)
        .ok()
}

#[cfg(test)]
mod tests {
    use proto::audit::v1::{Attempt, RejectReason};

    use super::*;

    #[test]
    fn records_map_to_the_old_item_shape() {
        let record = AttemptRecord {
            id: 7,
            suspicious: true,
            attempt: Some(Attempt {
                event_id: "e1".into(),
                occurred_at: Some(prost_types::Timestamp {
                    seconds: 1_704_067_200,
                    nanos: 123_000_000,
                }),
                identifier: "alice".into(),
                user_id: Some(3),
                username: Some("alice".into()),
                email: "alice@example.com".into(),
                successful: false,
                reason: RejectReason::BadPassword as i32,
                ip: "198.51.100.7".into(),
                user_agent: None,
                request_id: "r1".into(),
                trace_parent: None,
                count: 0,
                last_occurred_at: None,
                ..Default::default()
            }),
        };
        let item = serde_json::to_value(AttemptItem::from(record)).unwrap();
        assert_eq!(
            item,
            serde_json::json!({
                "id": 7, "email": "alice@example.com", "ip": "198.51.100.7",
                "created_at": "2024-01-01T00:00:00.123Z", "user_agent": null,
                "reject_reason": "bad_password", "successful": false, "suspicious": true,
                "user": 3, "event_id": "e1", "username": "alice", "identifier": "alice",
                "request_id": "r1", "count": 1, "last_created_at": null, "kind": "login",
                "original_reject_reason": null,
            })
        );
    }

    #[test]
    fn a_tally_shows_its_count_and_last_time() {
        let at = |seconds| prost_types::Timestamp { seconds, nanos: 0 };
        let record = AttemptRecord {
            id: 2,
            suspicious: false,
            attempt: Some(Attempt {
                reason: RejectReason::RateLimited as i32,
                occurred_at: Some(at(1_704_067_200)),
                count: 41,
                last_occurred_at: Some(at(1_704_067_259)),
                ..Default::default()
            }),
        };
        let item = AttemptItem::from(record);
        assert_eq!(item.count, 41);
        assert_eq!(
            item.last_created_at.as_deref(),
            Some("2024-01-01T00:00:59Z")
        );
    }

    #[test]
    fn django_reason_texts_replace_the_codes_when_asked() {
        let record = |reason: RejectReason| AttemptRecord {
            id: 1,
            suspicious: false,
            attempt: Some(Attempt {
                successful: reason == RejectReason::Unspecified,
                reason: reason as i32,
                ..Default::default()
            }),
        };
        let shown = |reason| AttemptItem::new(record(reason), ReasonText::Django).reject_reason;
        assert_eq!(shown(RejectReason::Unspecified).as_deref(), Some(""));
        assert_eq!(
            shown(RejectReason::UnknownUser).as_deref(),
            Some("User Not Exists")
        );
        let item = serde_json::to_value(AttemptItem::new(
            record(RejectReason::Unspecified),
            ReasonText::Django,
        ))
        .unwrap();
        assert_eq!(item["reject_reason"], "", "not null on success");
    }

    #[test]
    fn an_imported_record_shows_the_original_reason_text_beside_the_mapped_one() {
        let record = AttemptRecord {
            id: 9,
            suspicious: true,
            attempt: Some(Attempt {
                reason: RejectReason::LockedOut as i32,
                original_reject_reason: Some("User blocked for too many attempt".into()),
                ..Default::default()
            }),
        };
        let item = serde_json::to_value(AttemptItem::from(record)).unwrap();
        assert_eq!(item["reject_reason"], "locked_out");
        assert_eq!(
            item["original_reject_reason"],
            "User blocked for too many attempt"
        );
        assert_eq!(item["suspicious"], true);
    }

    #[test]
    fn successes_have_no_reject_reason_and_unknowns_are_null() {
        let record = AttemptRecord {
            id: 1,
            suspicious: false,
            attempt: Some(Attempt {
                successful: true,
                user_agent: Some("curl/8".into()),
                ..Default::default()
            }),
        };
        let item = AttemptItem::from(record);
        assert_eq!(item.reject_reason, None);
        assert_eq!(item.ip, None);
        assert_eq!(item.user, None);
        assert_eq!(item.created_at, None);
        assert_eq!(item.user_agent.as_deref(), Some("curl/8"));
    }
}

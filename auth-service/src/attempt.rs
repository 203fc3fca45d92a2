//! Login attempts as audit events, ready for the outbox.

use prost::Message;
use proto::audit::v1::Attempt;

use crate::{
    context::ClientContext,
    store::{OutboxEntry, User},
};

/// Why a login failed, as stored in the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// No account has this username or email.
    UnknownUser,
    /// The password did not match.
    BadPassword,
    /// Right password, but the account is not verified or is disabled.
    Inactive,
    /// The request could not be read or lacked a field.
    MalformedRequest,
    /// The account is locked after too many failures (from any IP).
    LockedOut,
    /// This IP, or this account from this IP, is throttled.
    RateLimited,
}

impl RejectReason {
    /// Every reason, for registering each series at zero.
    pub const ALL: [Self; 6] = [
        Self::UnknownUser,
        Self::BadPassword,
        Self::Inactive,
        Self::MalformedRequest,
        Self::LockedOut,
        Self::RateLimited,
    ];

    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownUser => "unknown_user",
            Self::BadPassword => "bad_password",
            Self::Inactive => "inactive",
            Self::MalformedRequest => "malformed_request",
            Self::LockedOut => "locked_out",
            Self::RateLimited => "rate_limited",
        }
    }
}

/// Describes `login_attempts_total` and registers each of its series at
/// zero, so an alert on, say, `locked_out` has a series before the first
/// lock. Called once the recorder is installed.
pub fn describe() {
    metrics::describe_counter!(
        "login_attempts_total",
        metrics::Unit::Count,
        "Logins decided by auth-service (count), by outcome (success, failure) and \
         reason (none for a success, else the log's reason: unknown_user, bad_password, \
         inactive, malformed_request, locked_out, rate_limited)."
    );
    metrics::counter!("login_attempts_total", "outcome" => "success", "reason" => "none")
        .increment(0);
    for reason in RejectReason::ALL {
        metrics::counter!("login_attempts_total", "outcome" => "failure", "reason" => reason.as_str())
            .increment(0);
    }
}

/// Counts one decided attempt in `login_attempts_total{outcome,reason}`;
/// both labels come from fixed sets, never from the request.
pub fn count(outcome: Result<(), RejectReason>) {
    let (outcome, reason) = match outcome {
        Ok(()) => ("success", "none"),
        Err(reason) => ("failure", reason.as_str()),
    };
    metrics::counter!("login_attempts_total", "outcome" => outcome, "reason" => reason)
        .increment(1);
}

/// Longest identifier kept in the log; longer input is cut, not dropped.
const MAX_IDENTIFIER: usize = 254;

/// Builds the outbox entry for one attempt decided at `now`.
pub fn outbox_entry(
    ctx: &ClientContext,
    identifier: &str,
    user: Option<&User>,
    outcome: Result<(), RejectReason>,
    now: time::OffsetDateTime,
) -> OutboxEntry {
    let event_id = uuid::Uuid::now_v7().to_string();
    let identifier: String = identifier.chars().take(MAX_IDENTIFIER).collect();
    let attempt = Attempt {
        event_id: event_id.clone(),
        occurred_at: Some(prost_types::Timestamp {
            seconds: now.unix_timestamp(),
            nanos: i32::try_from(now.nanosecond()).unwrap_or(0),
        }),
        email: user.map_or_else(|| identifier.clone(), |u| u.email.clone()),
        identifier,
        user_id: user.map(|u| u.id),
        username: user.map(|u| u.username.clone()),
        successful: outcome.is_ok(),
        reject_reason: outcome.err().map_or("", RejectReason::as_str).to_owned(),
        ip: ctx.ip.clone(),
        user_agent: ctx.user_agent.clone(),
        request_id: ctx.request_id.clone(),
        trace_parent: common::trace_context::current_traceparent(),
    };
    OutboxEntry {
        event_id,
        payload: attempt.encode_to_vec(),
        created_at: now.unix_timestamp(),
    }
}

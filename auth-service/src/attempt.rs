//! Login attempts (and password changes and resets, attempts of their own
//! kinds) as audit events, ready for the outbox.

use prost::Message;
use proto::audit::v1::Attempt;

/// What an attempt tried: the log's own enum (stored as its `code()`).
pub use proto::audit::v1::AttemptKind;

use std::time::Duration;

use crate::{
    context::ClientContext,
    domain::LoginIdentifier,
    store::{OutboxEntry, Tally, User},
};

/// How long refused attempts of one key gather into one record by default:
/// a flooding client costs at most a record a minute per reason.
pub const DEFAULT_REFUSED_TALLY_WINDOW: Duration = Duration::from_secs(60);

/// Why a login failed: the log's own enum, so producer and log share one
/// list (stored as its `code()`).
pub use proto::audit::v1::RejectReason;

/// Whether `reason` is about a reset code, which no login fails for (so
/// `login_attempts_total` has no series of it).
fn is_code_reason(reason: RejectReason) -> bool {
    matches!(
        reason,
        RejectReason::CodeWrong | RejectReason::CodeExpired | RejectReason::TooManyAttempts
    )
}

/// Whether the attempt was refused before any password work: such
/// attempts cost an attacker nothing, so they are tallied, not stored one
/// by one.
fn is_refusal(reason: RejectReason) -> bool {
    matches!(
        reason,
        RejectReason::MalformedRequest | RejectReason::LockedOut | RejectReason::RateLimited
    )
}

/// Where a refused attempt of `kind` decided at `now` (unix seconds) is
/// counted: per kind, reason and client key (`client`, IPv6 by network) and
/// window of `window` seconds, and for a locked account per account too, so
/// the refusals an account's lock causes stay findable by its id. Refusals
/// of different kinds never share a record (a record shows its first
/// attempt's kind). `None` for any other outcome (each gets its own
/// record). `window` is at least 1.
pub fn tally(
    kind: AttemptKind,
    outcome: Result<(), RejectReason>,
    client: &str,
    user: Option<&User>,
    now: i64,
    window: i64,
) -> Option<Tally> {
    let reason = outcome.err().filter(|r| is_refusal(*r))?;
    let start = now - now.rem_euclid(window);
    let account = match (reason, user) {
        (RejectReason::LockedOut, Some(user)) => user.id.to_string(),
        _ => String::new(),
    };
    let key = format!("{}|{client}|{account}|{start}", reason.code());
    Some(Tally {
        key: match kind.stored() {
            AttemptKind::Login => key,
            other => format!("{}|{key}", other.code()),
        },
        due_at: start.saturating_add(window),
    })
}

/// One attempt as it is recorded: who sent what, from which counted
/// client, when, of which kind; the same for every record of it.
pub struct Try<'a> {
    /// What was attempted.
    pub kind: AttemptKind,
    /// The caller's address, agent and request id.
    pub ctx: &'a ClientContext,
    /// What the caller named the account by.
    pub identifier: LoginIdentifier,
    /// The client key every per-IP counter and tally uses (see
    /// [`crate::throttle::client_key`]).
    pub client: String,
    /// The one instant of the attempt.
    pub at: time::OffsetDateTime,
}

impl Try<'_> {
    /// The outbox entry of this attempt with `outcome`; a refusal is
    /// counted into its [`tally`] of `window` seconds.
    pub fn entry(
        &self,
        user: Option<&User>,
        outcome: Result<(), RejectReason>,
        window: i64,
    ) -> OutboxEntry {
        let now = self.at.unix_timestamp();
        let tally = tally(self.kind, outcome, &self.client, user, now, window);
        outbox_entry(self, user, outcome, tally)
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
    for reason in RejectReason::FAILURES
        .into_iter()
        .filter(|r| !is_code_reason(*r))
    {
        metrics::counter!("login_attempts_total", "outcome" => "failure", "reason" => reason.code())
            .increment(0);
    }
}

/// Counts one decided attempt in `login_attempts_total{outcome,reason}`;
/// both labels come from fixed sets, never from the request.
pub fn count(outcome: Result<(), RejectReason>) {
    let (outcome, reason) = match outcome {
        Ok(()) => ("success", "none"),
        Err(reason) => ("failure", reason.code()),
    };
    metrics::counter!("login_attempts_total", "outcome" => outcome, "reason" => reason)
        .increment(1);
}

/// The outbox entry of `attempt` with `outcome`, counted into `tally` when
/// given.
fn outbox_entry(
    attempt: &Try<'_>,
    user: Option<&User>,
    outcome: Result<(), RejectReason>,
    tally: Option<Tally>,
) -> OutboxEntry {
    let (kind, ctx, now) = (attempt.kind, attempt.ctx, attempt.at);
    let event_id = uuid::Uuid::now_v7().to_string();
    // Longer input is cut, not dropped.
    let identifier = attempt.identifier.for_log();
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
        reason: outcome.err().map_or(0, |r| r as i32),
        ip: ctx.ip.clone(),
        user_agent: ctx.user_agent.clone(),
        request_id: ctx.request_id.clone(),
        trace_parent: common::trace_context::current_traceparent(),
        // A tally's count and last time are added when it is sent.
        count: 0,
        last_occurred_at: None,
        kind: kind as i32,
        ..Default::default()
    };
    OutboxEntry {
        event_id,
        payload: attempt.encode_to_vec(),
        created_at: now.unix_timestamp(),
        occurred_micros: i64::try_from(now.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX),
        tally,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: i64) -> User {
        User {
            id,
            username: "u".into(),
            email: "u@example.com".into(),
            password_hash: String::new(),
            is_active: true,
            is_staff: false,
            sessions_revoked_at: None,
            password_nfkc: true,
            created_at: 0,
            verified_at: Some(0),
        }
    }

    const MINUTE: i64 = 60;
    const LOGIN: AttemptKind = AttemptKind::Login;

    #[test]
    fn only_refusals_are_tallied() {
        for reason in [
            RejectReason::UnknownUser,
            RejectReason::BadPassword,
            RejectReason::Inactive,
        ] {
            assert_eq!(tally(LOGIN, Err(reason), "ip", None, 100, MINUTE), None);
        }
        assert_eq!(
            tally(LOGIN, Ok(()), "ip", Some(&user(1)), 100, MINUTE),
            None
        );
    }

    #[test]
    fn a_tally_is_per_reason_client_and_window() {
        let key =
            |reason, client, now| tally(LOGIN, Err(reason), client, Some(&user(7)), now, MINUTE);
        let first = key(RejectReason::RateLimited, "a", 120).unwrap();
        assert_eq!(first.due_at, 180);
        assert_eq!(
            Some(&first),
            key(RejectReason::RateLimited, "a", 179).as_ref()
        );
        // Throttled clients are one key whatever account they name.
        assert_eq!(
            Some(first.clone()),
            tally(
                LOGIN,
                Err(RejectReason::RateLimited),
                "a",
                None,
                150,
                MINUTE
            )
        );
        assert_ne!(
            Some(&first),
            key(RejectReason::RateLimited, "a", 180).as_ref()
        );
        assert_ne!(
            Some(&first),
            key(RejectReason::RateLimited, "b", 120).as_ref()
        );
        assert_ne!(
            Some(&first),
            key(RejectReason::MalformedRequest, "a", 120).as_ref()
        );
    }

    #[test]
    fn lock_refusals_stay_per_account() {
        let locked = |id| {
            tally(
                LOGIN,
                Err(RejectReason::LockedOut),
                "a",
                Some(&user(id)),
                0,
                MINUTE,
            )
        };
        assert_ne!(locked(1), locked(2));
        assert_eq!(locked(1), locked(1));
    }
}

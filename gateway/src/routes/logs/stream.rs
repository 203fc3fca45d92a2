//! The live tail as Server-Sent Events
//! (`GET /api/accounts/logs/login/attemps/stream/`).
//!
//! The tail forwards `audit.v1.AuditService/Tail`; when the HTTP client
//! goes away the body stream is dropped, which cancels the gRPC stream and
//! frees the subscription in audit-service.
//!
//! A tail outlives the request that authorised it, so it watches its
//! session: it ends at the access token's `exp`, and asks auth-service
//! (`IntrospectToken`) at once and every `GATEWAY_STREAM_RECHECK` whether
//! the token is still active and its user still staff — which catches a
//! demotion, a disabled account and a logout everywhere. It then ends with
//! an `end` event naming the reason.

use std::{convert::Infallible, time::Duration};

use axum::{
    extract::{RawQuery, State},
    response::{
        IntoResponse,
        sse::{Event, KeepAlive, Sse},
    },
};
use common::config::Secret;
use futures::{StreamExt as _, stream};
use proto::auth::v1::IntrospectTokenRequest;
use time::OffsetDateTime;

use super::{item::AttemptItem, query::LogsQuery};
use crate::{
    auth::{AdminSession, Claims},
    context::RequestContext,
    error::{ApiError, Rpc},
    grpc::{AuthClient, call},
    openapi::AdminErrors,
    state::AppState,
};

/// The live tail's path.
pub const STREAM_PATH: &str = "/api/accounts/logs/login/attemps/stream/";
/// How often an idle SSE connection gets a comment line, so proxies keep
/// it open and a vanished client is noticed.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Why the gateway ended a live tail (the `end` event's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndReason {
    /// The access token reached its `exp`.
    TokenExpired,
    /// auth-service no longer accepts the token: the account was disabled
    /// or logged out everywhere (or the token names another user).
    TokenInactive,
    /// The account is no longer an administrator.
    NotStaff,
}

impl EndReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::TokenExpired => "token_expired",
            Self::TokenInactive => "token_inactive",
            Self::NotStaff => "not_staff",
        }
    }
}

/// How long until `exp` (Unix seconds), as seen at `now`; zero when past.
fn until_expiry(exp: i64, now: OffsetDateTime) -> Duration {
    let exp_nanos = i128::from(exp) * 1_000_000_000;
    let left = exp_nanos.saturating_sub(now.unix_timestamp_nanos());
    u64::try_from(left).map_or(Duration::ZERO, Duration::from_nanos)
}

/// Resolves when the tail's session must end: at the token's expiry, or
/// when a check with auth-service (one at once, then one every `every`)
/// finds the token inactive or its user no longer staff. A failed check is
/// logged and the tail goes on: the expiry still bounds it, as it bounds
/// every locally verified admin request, and an auth-service restart
/// should not cut every admin's tail.
async fn session_end(
    mut auth: AuthClient,
    ctx: RequestContext,
    claims: Claims,
    token: Secret,
    every: Duration,
) -> EndReason {
    let deadline =
        tokio::time::Instant::now() + until_expiry(claims.exp, OffsetDateTime::now_utc());
    let checks = async {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let request = ctx.grpc_request(IntrospectTokenRequest {
                token: token.expose().to_owned(),
            });
            match auth.introspect_token(request).await {
                Ok(reply) => {
                    let reply = reply.into_inner();
                    if !reply.active || reply.user_id != claims.user_id {
                        return EndReason::TokenInactive;
                    }
                    if !reply.is_staff {
                        return EndReason::NotStaff;
                    }
                }
                Err(status) => {
                    tracing::warn!(code = ?status.code(), message = status.message(), "live tail: session re-check failed; keeping the tail until the next check or expiry");
                }
            }
        }
    };
    tokio::time::timeout_at(deadline, checks)
        .await
        .unwrap_or(EndReason::TokenExpired)
}

/// What the merged tail yields.
enum Step {
    /// An event to send.
    Event(Event),
    /// Nothing more to send: audit-service ended the tail, or the
    /// session's `end` event went out.
    Stop,
    /// The session ended.
    End(EndReason),
}

/// `GET /api/accounts/logs/login/attemps/stream/`: attempts as they are
/// committed, filtered like the listing, as Server-Sent Events. Each
/// attempt is an `attempt` event whose data is the listing's item; a
/// `skipped` event (`{"skipped": n}`) says the client fell behind and
/// missed `n` attempts, which the listing still has. When the session
/// ends (see the module docs) an `end` event (`{"reason": ...}`) is the
/// last one.
#[utoipa::path(
    get,
    path = STREAM_PATH,
    operation_id = "streamLoginAttempts",
    tag = "logs",
    summary = "Follow new login attempts live (Server-Sent Events)",
    description = "Each attempt is an `attempt` event whose data is a listing item (JSON); \
                   a `skipped` event (`{\"skipped\": n}`) says `n` attempts were missed. \
                   The stream ends with an `end` event (`{\"reason\": r}`, r one of \
                   `token_expired`, `token_inactive`, `not_staff`) when the access token \
                   expires or auth-service no longer accepts it as an administrator's; \
                   open a new stream with a fresh token. \
                   Takes the listing's filters except `limit`, `cursor` and `format`.",
    params(
        ("successful" = Option<bool>, Query, description = "Only successes, or only failures."),
        ("ip" = Option<String>, Query, description = "A client IP or CIDR block."),
        ("email" = Option<String>, Query, description = "The account's email, any case."),
        ("identifier" = Option<String>, Query, description = "What was submitted as username, exact."),
        ("user_id" = Option<i64>, Query, description = "The account's id."),
        ("reason" = Option<String>, Query, description = "Failure reason, as for the listing."),
        ("suspicious" = Option<bool>, Query, description = "Only flagged, or only unflagged, attempts."),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "An event stream, until the token expires or is revoked.", content_type = "text/event-stream", body = String),
        AdminErrors,
    )
)]
pub async fn stream(
    State(state): State<AppState>,
    session: AdminSession,
    ctx: RequestContext,
    RawQuery(query): RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    let query = LogsQuery::parse(query.as_deref()).map_err(ApiError::Validation)?;
    let admin = session.claims.user_id;
    tracing::info!(admin, "tailing login attempts");
    let reasons = state.shapes.reasons;
    let tail = call(
        Rpc::ListAttempts,
        state
            .audit
            .clone()
            .tail(ctx.grpc_request(query.to_tail_request())),
    )
    .await?;
    let events = tail
        .take_while(|event| {
            if let Err(status) = event {
                tracing::info!(%status, "live tail ended by audit-service");
            }
            futures::future::ready(event.is_ok())
        })
        .filter_map(move |event| async move {
            let event = event.ok()?;
            let sse = match event.attempt {
                Some(record) => {
                    let item = AttemptItem::new(record, reasons);
                    Event::default()
                        .event("attempt")
                        .id(item.id.to_string())
                        .json_data(&item)
                        .ok()?
                }
                None => Event::default()
                    .event("skipped")
                    .data(format!("{{\"skipped\":{}}}", event.skipped)),
            };
            Some(Step::Event(sse))
        })
        .chain(stream::once(futures::future::ready(Step::Stop)));
    let end = stream::once(session_end(
        state.auth.clone(),
        ctx,
        session.claims,
        session.token,
        state.stream_recheck,
    ))
    .flat_map(|reason| stream::iter([Step::End(reason), Step::Stop]));
    // Whichever comes first ends the response; dropping the rest cancels
    // the gRPC tail (freeing audit-service's subscription) and the checks.
    let events = stream::select(events, end).scan(false, move |ended, step| {
        let out = match step {
            // Whatever follows the `end` event (its `Stop`, or an attempt
            // that raced it) closes the response.
            _ if *ended => None,
            Step::Event(sse) => Some(sse),
            Step::Stop => None,
            Step::End(reason) => {
                *ended = true;
                tracing::info!(admin, reason = reason.as_str(), "live tail ended");
                Some(
                    Event::default()
                        .event("end")
                        .data(format!("{{\"reason\":\"{}\"}}", reason.as_str())),
                )
            }
        };
        futures::future::ready(out.map(Ok::<_, Infallible>))
    });
    // `no-store` replaces axum's `no-cache`: the events are personal data.
    Ok((
        crate::headers::no_store(),
        Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_measured_from_now_and_never_negative() {
        let now = OffsetDateTime::from_unix_timestamp(1_000).unwrap();
        assert_eq!(until_expiry(1_010, now), Duration::from_secs(10));
        assert_eq!(
            until_expiry(1_001, now + time::Duration::milliseconds(250)),
            Duration::from_millis(750)
        );
        assert_eq!(until_expiry(999, now), Duration::ZERO);
        assert_eq!(until_expiry(i64::MIN, now), Duration::ZERO);
    }
}

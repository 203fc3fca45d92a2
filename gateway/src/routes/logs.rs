//! `GET /api/accounts/logs/login/attemps/` (the old spelling is the
//! contract): the login-attempt log for administrators, newest first, one
//! page at a time — the old service returned every row at once.

use std::net::IpAddr;

use axum::{
    Json,
    extract::{RawQuery, State},
    response::{IntoResponse, Response},
};
use ipnet::IpNet;
use proto::audit::v1::{
    AttemptFilter, AttemptRecord, ListAttemptsRequest, RejectReason, TailRequest,
};
use serde::Serialize;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use super::export::{self, Format};
use crate::{
    AppState,
    auth::AdminUser,
    config::PublicUrl,
    context::RequestContext,
    error::{ApiError, FieldErrors, Rpc},
    grpc::call,
    openapi::AdminErrors,
};

/// The path, for building `next` links.
pub const PATH: &str = "/api/accounts/logs/login/attemps/";
/// Page size when the client names none.
const DEFAULT_LIMIT: u32 = 50;
/// Largest page audit-service serves.
const MAX_LIMIT: u32 = 500;
/// Longest filter value accepted; nothing legitimate comes close.
const MAX_VALUE_LEN: usize = 1024;
/// Parameters this endpoint reads; others are ignored.
const PARAMS: [&str; 12] = [
    "limit",
    "cursor",
    "successful",
    "ip",
    "email",
    "since",
    "until",
    "identifier",
    "user_id",
    "reason",
    "suspicious",
    "format",
];

/// The query of one page request, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogsQuery {
    /// Page size, 1..=500.
    pub limit: u32,
    /// Opaque position from a previous page.
    pub cursor: Option<String>,
    /// Only successes or only failures.
    pub successful: Option<bool>,
    /// Client IP, or a CIDR block, in canonical form.
    pub ip: Option<String>,
    /// Email, matched case-insensitively by audit-service.
    pub email: Option<String>,
    /// What the client submitted as username or email, exact.
    pub identifier: Option<String>,
    /// The account's id.
    pub user_id: Option<i64>,
    /// One failure reason.
    pub reason: Option<RejectReason>,
    /// Only flagged or only unflagged attempts.
    pub suspicious: Option<bool>,
    /// Attempts at or after this instant.
    pub since: Option<OffsetDateTime>,
    /// Attempts before this instant.
    pub until: Option<OffsetDateTime>,
    /// `?format=`: an export instead of a JSON page.
    pub format: Option<Format>,
    /// The filters as the client wrote them, for the `next` link.
    filters: Vec<(&'static str, String)>,
}

impl LogsQuery {
    /// Validates a raw query string. Unknown parameters are ignored, empty
    /// values count as absent, and a repeated parameter keeps its last
    /// value. Every bad parameter is reported, DRF style.
    pub fn parse(query: Option<&str>) -> Result<Self, FieldErrors> {
        let mut raw: Vec<(&'static str, String)> = Vec::new();
        for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            let Some(name) = PARAMS.into_iter().find(|known| *known == name) else {
                continue;
            };
            raw.retain(|(n, _)| *n != name);
            if !value.is_empty() {
                raw.push((name, value.into_owned()));
            }
        }
        let get = |name: &str| {
            raw.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };

        let mut errors = FieldErrors::default();
        for (name, value) in &raw {
            if value.len() > MAX_VALUE_LEN {
                errors.add(
                    *name,
                    format!("Ensure this field has no more than {MAX_VALUE_LEN} characters."),
                );
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }

        let limit = match get("limit") {
            None => DEFAULT_LIMIT,
            Some(v) => match v.trim().parse::<i64>() {
                Ok(n) if (1..=i64::from(MAX_LIMIT)).contains(&n) => n as u32,
                Ok(_) => {
                    errors.add(
                        "limit",
                        format!("Ensure this value is between 1 and {MAX_LIMIT}."),
                    );
                    DEFAULT_LIMIT
                }
                Err(_) => {
                    errors.add("limit", "A valid integer is required.");
                    DEFAULT_LIMIT
                }
            },
        };
        let mut boolean = |name: &'static str| {
            get(name).and_then(|v| {
                let parsed = parse_bool(v);
                if parsed.is_none() {
                    errors.add(name, "Must be a valid boolean.");
                }
                parsed
            })
        };
        let successful = boolean("successful");
        let suspicious = boolean("suspicious");
        let ip = get("ip").and_then(|v| {
            let parsed = parse_ip_or_cidr(v);
            if parsed.is_none() {
                errors.add(
                    "ip",
                    "Enter a valid IPv4 or IPv6 address or CIDR block (e.g. 10.0.0.0/8).",
                );
            }
            parsed
        });
        let user_id = get("user_id").and_then(|v| {
            let parsed = v.trim().parse::<i64>().ok();
            if parsed.is_none() {
                errors.add("user_id", "A valid integer is required.");
            }
            parsed
        });
        // Anything but a known reason is a typo the client should hear
        // about, not an empty result.
        let reason = get("reason").and_then(|v| {
            let v = v.trim();
            let reason = RejectReason::from_code(v);
            if reason.is_none() {
                let choices: Vec<&str> = RejectReason::FAILURES.map(RejectReason::code).into();
                errors.add(
                    "reason",
                    format!(
                        "\"{v}\" is not a valid choice. Choose one of: {}.",
                        choices.join(", ")
                    ),
                );
            }
            reason
        });
        let format = get("format").and_then(|v| {
            if v.trim().eq_ignore_ascii_case("json") {
                return None;
            }
            let parsed = Format::parse(v);
            if parsed.is_none() {
                errors.add(
                    "format",
                    format!("\"{v}\" is not a valid choice. Choose one of: json, csv, ndjson."),
                );
            }
            parsed
        });
        let mut datetime = |name: &'static str| {
            get(name).and_then(|v| {
                // An unencoded `+01:00` arrives as ` 01:00`; no valid
                // RFC 3339 value has a space there, so take it back.
                let parsed = OffsetDateTime::parse(&v.trim().replace(' ', "+"), &Rfc3339).ok();
                if parsed.is_none() {
                    errors.add(
                        name,
                        "Datetime has wrong format. Use RFC 3339, e.g. 2024-01-31T12:00:00Z.",
                    );
                }
                parsed
            })
        };
        let since = datetime("since");
        let until = datetime("until");
        if let (Some(since), Some(until)) = (since, until)
            && until <= since
        {
            errors.add("until", "Must be later than since.");
        }
        if !errors.is_empty() {
            return Err(errors);
        }

        let filters = raw
            .iter()
            .filter(|(name, _)| !matches!(*name, "limit" | "cursor" | "format"))
            .cloned()
            .collect();
        Ok(Self {
            limit,
            cursor: get("cursor").map(str::to_owned),
            successful,
            ip,
            email: get("email").map(str::to_owned),
            identifier: get("identifier").map(str::to_owned),
            user_id,
            reason,
            suspicious,
            since,
            until,
            format,
            filters,
        })
    }

    /// The audit-service request for this page.
    pub fn to_request(&self) -> ListAttemptsRequest {
        ListAttemptsRequest {
            limit: self.limit,
            cursor: self.cursor.clone().unwrap_or_default(),
            filter: Some(self.filter()),
        }
    }

    /// The audit-service tail request with this query's filters.
    pub fn to_tail_request(&self) -> TailRequest {
        TailRequest {
            filter: Some(self.filter()),
        }
    }

    /// The filters, as audit.v1 takes them for a listing and a tail alike.
    fn filter(&self) -> AttemptFilter {
        AttemptFilter {
            successful: self.successful,
            ip: self.ip.clone(),
            email: self.email.clone(),
            since: self.since.map(timestamp),
            until: self.until.map(timestamp),
            identifier: self.identifier.clone(),
            user_id: self.user_id,
            reason: self.reason.map(|r| r as i32),
            suspicious: self.suspicious,
        }
    }

    /// The query string of the page after this one: same limit and filters,
    /// the given cursor.
    pub fn next_query(&self, cursor: &str) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("limit", &self.limit.to_string());
        for (name, value) in &self.filters {
            query.append_pair(name, value);
        }
        query.append_pair("cursor", cursor);
        query.finish()
    }
}

/// An address (IPv4-mapped IPv6 folded to IPv4) or a CIDR block, in
/// canonical text.
fn parse_ip_or_cidr(raw: &str) -> Option<String> {
    let raw = raw.trim();
    if let Ok(ip) = raw.parse::<IpAddr>() {
        return Some(ip.to_canonical().to_string());
    }
    raw.parse::<IpNet>().ok().map(|net| net.trunc().to_string())
}

/// DRF's boolean spellings we accept: true/false/1/0, any case.
fn parse_bool(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

fn timestamp(at: OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.unix_timestamp(),
        // Always 0..1e9, so it fits.
        nanos: at.nanosecond() as i32,
    }
}

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
    /// Why it failed; `null` on success.
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
}

impl From<AttemptRecord> for AttemptItem {
    fn from(record: AttemptRecord) -> Self {
        let attempt = record.attempt.unwrap_or_default();
        let non_empty = |s: String| (!s.is_empty()).then_some(s);
        let reason = attempt.reason().code();
        Self {
            id: record.id,
            email: attempt.email,
            ip: non_empty(attempt.ip),
            created_at: attempt.occurred_at.and_then(rfc3339),
            user_agent: attempt.user_agent,
            reject_reason: non_empty(reason.to_owned()),
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
        }
    }
}

/// A protobuf timestamp as RFC 3339 in UTC (`...Z`), or `None` when out of
/// range.
fn rfc3339(ts: prost_types::Timestamp) -> Option<String> {
    let nanos = i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos);
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()?
        .format(&Rfc3339)
        .ok()
}

/// One page of results.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page {
    /// The attempts, newest first.
    pub results: Vec<AttemptItem>,
    /// Link to the next page; `null` on the last. Absolute when the server
    /// has `GATEWAY_PUBLIC_URL`, else a path (a URI reference, resolve it
    /// against the request URL).
    #[schema(format = "uri-reference")]
    pub next: Option<String>,
}

/// The handler.
#[utoipa::path(
    get,
    path = PATH,
    operation_id = "listLoginAttempts",
    tag = "logs",
    summary = "List login attempts, newest first",
    description = "One page at a time; follow `next` for the rest. With `format=csv` or \
                   `format=ndjson` the whole filtered log is streamed as a download instead. \
                   Empty parameters count as absent; unknown ones are ignored.",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Page size (default 50)."),
        ("cursor" = Option<String>, Query, description = "Position from a previous page's `next`."),
        ("successful" = Option<bool>, Query, description = "Only successes, or only failures."),
        ("ip" = Option<String>, Query, description = "A client IP or CIDR block."),
        ("email" = Option<String>, Query, description = "The account's email, any case."),
        ("identifier" = Option<String>, Query, description = "What was submitted as username, exact."),
        ("user_id" = Option<i64>, Query, description = "The account's id."),
        ("reason" = Option<String>, Query, description = "Failure reason: unknown_user, bad_password, inactive, malformed_request, locked_out or rate_limited."),
        ("suspicious" = Option<bool>, Query, description = "Only flagged, or only unflagged, attempts."),
        ("since" = Option<String>, Query, format = DateTime, description = "Attempts at or after this instant (RFC 3339)."),
        ("until" = Option<String>, Query, format = DateTime, description = "Attempts before this instant (RFC 3339); later than `since`."),
        ("format" = Option<String>, Query, description = "`json` (default), `csv` or `ndjson`."),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page, or the whole log as a CSV or NDJSON download.",
            headers(("Content-Disposition" = String, description = "Set on downloads: `attachment; filename=...`.")),
            content(
                (Page = "application/json"),
                (String = "text/csv"),
                (String = "application/x-ndjson"),
            )
        ),
        AdminErrors,
    )
)]
pub async fn list(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    ctx: RequestContext,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let query = LogsQuery::parse(query.as_deref()).map_err(ApiError::Validation)?;
    if let Some(format) = query.format {
        tracing::info!(admin = admin.user_id, ?format, "exporting login attempts");
        return export::export(&state, ctx, query, format).await;
    }
    tracing::info!(admin = admin.user_id, "listing login attempts");
    let reply = call(
        Rpc::ListAttempts,
        state
            .audit
            .clone()
            .list_attempts(ctx.grpc_request(query.to_request())),
    )
    .await?;
    let next = (!reply.next_cursor.is_empty()).then(|| {
        next_url(
            state.public_url.as_ref(),
            &query.next_query(&reply.next_cursor),
        )
    });
    Ok((
        crate::headers::no_store(),
        Json(Page {
            results: reply.attempts.into_iter().map(AttemptItem::from).collect(),
            next,
        }),
    )
        .into_response())
}

/// The next page's link: under `GATEWAY_PUBLIC_URL` when configured,
/// else a path relative to this server (RFC 3986 relative reference). Never
/// from the request's `Host`: a client (or a cache keyed without it) could
/// point an admin's next click anywhere.
fn next_url(public_url: Option<&PublicUrl>, query: &str) -> String {
    let path = format!("{PATH}?{query}");
    match public_url {
        Some(base) => base.join(&path),
        None => path,
    }
}

#[cfg(test)]
mod tests {
    use proto::audit::v1::Attempt;

    use super::*;

    fn parse(q: &str) -> Result<LogsQuery, FieldErrors> {
        LogsQuery::parse(Some(q))
    }

    fn error_fields(q: &str) -> Vec<String> {
        parse(q).unwrap_err().fields().map(str::to_owned).collect()
    }

    #[test]
    fn no_query_means_the_first_page_of_50_unfiltered() {
        let q = LogsQuery::parse(None).unwrap();
        assert_eq!(q.limit, 50);
        assert_eq!(
            q.to_request(),
            ListAttemptsRequest {
                limit: 50,
                cursor: String::new(),
                filter: Some(AttemptFilter::default()),
            }
        );
    }

    #[test]
    fn every_filter_is_passed_on() {
        let q = parse(
            "limit=10&cursor=abc&successful=FALSE&ip=::ffff:10.0.0.1&email=A%40b.c\
             &since=2024-01-01T00:00:00Z&until=2024-02-01T00:00:00.5%2B01:00",
        )
        .unwrap();
        let r = q.to_request();
        assert_eq!(r.limit, 10);
        assert_eq!(r.cursor, "abc");
        let r = r.filter.unwrap();
        assert_eq!(
            q.to_tail_request().filter.unwrap(),
            r,
            "one filter for both"
        );
        assert_eq!(r.successful, Some(false));
        assert_eq!(r.ip.as_deref(), Some("10.0.0.1"));
        assert_eq!(r.email.as_deref(), Some("A@b.c"));
        assert_eq!(r.since.unwrap().seconds, 1_704_067_200);
        let until = r.until.unwrap();
        assert_eq!(until.seconds, 1_706_742_000);
        assert_eq!(until.nanos, 500_000_000);
    }

    #[test]
    fn booleans_accept_drf_spellings() {
        for (raw, want) in [
            ("true", true),
            ("True", true),
            ("1", true),
            ("false", false),
            ("FALSE", false),
            ("0", false),
        ] {
            assert_eq!(
                parse(&format!("successful={raw}")).unwrap().successful,
                Some(want)
            );
        }
        assert_eq!(error_fields("successful=yes"), ["successful"]);
    }

    #[test]
    fn limits_outside_1_to_500_are_refused() {
        assert_eq!(parse("limit=1").unwrap().limit, 1);
        assert_eq!(parse("limit=500").unwrap().limit, 500);
        for bad in ["0", "501", "-1", "abc", "1.5", "99999999999999999999"] {
            let errors = parse(&format!("limit={bad}")).unwrap_err();
            assert_eq!(errors.fields().collect::<Vec<_>>(), ["limit"], "{bad}");
        }
        assert_eq!(
            parse("limit=0").unwrap_err().messages("limit").unwrap(),
            ["Ensure this value is between 1 and 500."]
        );
        assert_eq!(
            parse("limit=x").unwrap_err().messages("limit").unwrap(),
            ["A valid integer is required."]
        );
    }

    #[test]
    fn bad_ips_and_datetimes_are_refused_naming_the_parameter() {
        assert_eq!(error_fields("ip=1.2.3"), ["ip"]);
        assert_eq!(error_fields("ip=1.2.3.4/33"), ["ip"]);
        assert_eq!(error_fields("reason=bored"), ["reason"]);
        assert_eq!(error_fields("user_id=abc"), ["user_id"]);
        assert_eq!(error_fields("suspicious=perhaps"), ["suspicious"]);
        assert_eq!(error_fields("since=yesterday"), ["since"]);
        assert_eq!(error_fields("until=2024-01-01"), ["until"]);
        assert_eq!(error_fields("since=2024-01-01T00:00:00"), ["since"]);
    }

    #[test]
    fn the_new_filters_are_passed_on() {
        let r =
            parse("ip=10.1.2.3/8&identifier=Al%20ice&user_id=42&reason=locked_out&suspicious=1")
                .unwrap()
                .to_request()
                .filter
                .unwrap();
        assert_eq!(r.ip.as_deref(), Some("10.0.0.0/8"));
        assert_eq!(r.identifier.as_deref(), Some("Al ice"));
        assert_eq!(r.user_id, Some(42));
        assert_eq!(r.reason, Some(RejectReason::LockedOut as i32));
        assert_eq!(r.suspicious, Some(true));
    }

    #[test]
    fn an_unencoded_plus_in_an_offset_is_understood() {
        let q = parse("since=2024-01-01T01:00:00+01:00").unwrap();
        let filter = q.to_request().filter.unwrap();
        assert_eq!(filter.since.unwrap().seconds, 1_704_067_200);
    }

    #[test]
    fn all_problems_are_reported_together() {
        assert_eq!(
            error_fields("limit=0&successful=maybe&ip=x&since=x&until=x"),
            ["limit", "successful", "ip", "since", "until"]
        );
    }

    #[test]
    fn until_must_come_after_since() {
        assert_eq!(
            error_fields("since=2024-02-01T00:00:00Z&until=2024-01-01T00:00:00Z"),
            ["until"]
        );
    }

    #[test]
    fn empty_and_unknown_parameters_are_ignored() {
        let q = parse("ip=&successful=&foo=bar&limit=").unwrap();
        assert_eq!(q.limit, 50);
        assert_eq!(q.ip, None);
        assert_eq!(q.successful, None);
    }

    #[test]
    fn a_repeated_parameter_keeps_its_last_value() {
        assert_eq!(parse("limit=5&limit=7").unwrap().limit, 7);
    }

    #[test]
    fn absurdly_long_values_are_refused() {
        let long = "a".repeat(2000);
        assert_eq!(error_fields(&format!("email={long}")), ["email"]);
    }

    #[test]
    fn the_next_query_keeps_limit_and_filters_and_adds_the_cursor() {
        let q = parse("email=a%2Bb%40c.d&cursor=old&successful=true&junk=1").unwrap();
        assert_eq!(
            q.next_query("n/x=1"),
            "limit=50&email=a%2Bb%40c.d&successful=true&cursor=n%2Fx%3D1"
        );
    }

    #[test]
    fn next_links_are_relative_unless_a_public_url_is_configured() {
        assert_eq!(
            next_url(None, "cursor=c"),
            "/api/accounts/logs/login/attemps/?cursor=c"
        );
        let base = PublicUrl::parse("https://api.example.com:8585/").unwrap();
        assert_eq!(
            next_url(Some(&base), "limit=5&cursor=c"),
            "https://api.example.com:8585/api/accounts/logs/login/attemps/?limit=5&cursor=c"
        );
    }

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
                "request_id": "r1", "count": 1, "last_created_at": null,
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

//! `GET /api/admin/events/`: administrators' actions on accounts (admin
//! events: who did what to which account, when, from where), newest first,
//! one page at a time, filtered like the login-attempt listing. Read from
//! `audit.v1.AuditService/ListAdminEvents`, with the attempt listing's
//! authorisation (an administrator's access token).

use axum::{
    extract::{RawQuery, State},
    response::Response,
};
use proto::audit::v1::{AdminAction, AdminEventFilter, AdminEventRecord, ListAdminEventsRequest};
use serde::Serialize;

use crate::{
    auth::AdminUser,
    context::RequestContext,
    error::{ApiError, FieldErrors, Rpc},
    grpc::call,
    openapi::AdminErrors,
    routes::{
        logs::{
            item::rfc3339,
            query::{parse_ip_or_cidr, timestamp},
        },
        params::{Params, next_link, next_query},
    },
    state::AppState,
};

/// The path, for building `next` links.
pub const PATH: &str = "/api/admin/events/";

/// Longest name filter: names are stored at most this long.
const MAX_NAME_CHARS: usize = 150;
/// Parameters this endpoint reads; others are ignored.
const PARAMS: [&str; 11] = [
    "limit",
    "cursor",
    "action",
    "actor_id",
    "actor",
    "operator",
    "target_id",
    "target",
    "ip",
    "since",
    "until",
];

/// One admin event as clients see it.
#[derive(Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct AdminEventItem {
    /// Storage id.
    pub id: i64,
    /// The event's idempotency key.
    pub event_id: String,
    /// When the change was made, RFC 3339 UTC.
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    /// What was done: `activate`, `deactivate`, `grant_admin`,
    /// `revoke_admin`, `unlock`, `logout`, `resend_verification` or
    /// `delete`.
    pub action: &'static str,
    /// The acting administrator's account id; `null` for an operator.
    pub actor_id: Option<i64>,
    /// The administrator's username, or the operator's login (`""` when
    /// unknown).
    pub actor: String,
    /// Done at auth-service's command line (`auth-service user …`), not
    /// through the API.
    pub operator: bool,
    /// The account acted on.
    pub target_id: i64,
    /// Its username at the time.
    pub target: String,
    /// Its email at the time.
    pub target_email: String,
    /// The actor's client IP; `null` for an operator or when unknown.
    pub ip: Option<String>,
    /// The actor's User-Agent; `null` when none was sent.
    pub user_agent: Option<String>,
    /// The request id from the edge, for finding related log lines.
    pub request_id: String,
    /// Sessions the action ended (`deactivate`, `logout`, `delete`);
    /// `null` for the others.
    pub sessions_revoked: Option<u64>,
    /// Brute-force counters the action cleared (`unlock`); `null` for the
    /// others.
    pub counters_cleared: Option<u64>,
    /// When the mailed code expires (`resend_verification`), RFC 3339 UTC;
    /// `null` for the others.
    #[schema(format = DateTime)]
    pub code_expires_at: Option<String>,
}

impl From<AdminEventRecord> for AdminEventItem {
    fn from(record: AdminEventRecord) -> Self {
        let event = record.event.unwrap_or_default();
        Self {
            id: record.id,
            action: event.action().code(),
            event_id: event.event_id,
            created_at: event.occurred_at.and_then(rfc3339),
            actor_id: event.actor_id,
            actor: event.actor_name,
            operator: event.operator,
            target_id: event.target_id,
            target: event.target_username,
            target_email: event.target_email,
            ip: (!event.ip.is_empty()).then_some(event.ip),
            user_agent: event.user_agent,
            request_id: event.request_id,
            sessions_revoked: event.sessions_revoked,
            counters_cleared: event.counters_cleared,
            code_expires_at: event.code_expires_at.and_then(rfc3339),
        }
    }
}

/// One page of admin events.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdminEventsPage {
    /// The events, newest first.
    pub results: Vec<AdminEventItem>,
    /// Link to the next page; `null` on the last. Absolute when the server
    /// has `GATEWAY_PUBLIC_URL`, else a path (a URI reference, resolve it
    /// against the request URL).
    #[schema(format = "uri-reference")]
    pub next: Option<String>,
}

/// The query of one page request, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct EventsQuery {
    /// What audit-service is asked.
    request: ListAdminEventsRequest,
    /// The filters as the client wrote them, for the `next` link.
    filters: Vec<(&'static str, String)>,
}

impl EventsQuery {
    /// Validates a raw query string, as the attempt listing's: unknown
    /// parameters are ignored, empty values count as absent, a repeated
    /// parameter keeps its last value, and every problem is reported.
    pub fn parse(query: Option<&str>) -> Result<Self, FieldErrors> {
        let params = Params::read(query, &PARAMS, &[])?;
        let get = |name: &str| params.get(name);
        let mut errors = FieldErrors::default();
        let limit = params.limit(&mut errors);
        let action = get("action").and_then(|v| {
            let v = v.trim();
            let action = AdminAction::from_code(v);
            if action.is_none() {
                let choices: Vec<&str> = AdminAction::ALL.map(AdminAction::code).into();
                errors.add(
                    "action",
                    format!(
                        "\"{v}\" is not a valid choice. Choose one of: {}.",
                        choices.join(", ")
                    ),
                );
            }
            action
        });
        let actor_id = params.integer("actor_id", &mut errors);
        let target_id = params.integer("target_id", &mut errors);
        let mut name = |field: &'static str| {
            get(field).and_then(|v| {
                if v.chars().any(char::is_control) {
                    errors.add(field, "Must not contain control characters.");
                    None
                } else if v.chars().count() > MAX_NAME_CHARS {
                    errors.add(
                        field,
                        format!("Ensure this field has no more than {MAX_NAME_CHARS} characters."),
                    );
                    None
                } else {
                    Some(v.to_owned())
                }
            })
        };
        let actor = name("actor");
        let target = name("target");
        let operator = params.boolean("operator", &mut errors);
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
        let (since, until) = params.time_range(&mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }

        let filters = params.filters(&["limit", "cursor"]);
        Ok(Self {
            request: ListAdminEventsRequest {
                limit,
                cursor: get("cursor").unwrap_or_default().to_owned(),
                filter: Some(AdminEventFilter {
                    action: action.map(|a| a as i32),
                    actor_id,
                    actor_name: actor,
                    operator,
                    target_id,
                    target_username: target,
                    ip,
                    since: since.map(timestamp),
                    until: until.map(timestamp),
                }),
                oldest_first: false,
            },
            filters,
        })
    }

    /// The audit-service request for this page.
    pub fn to_request(&self) -> ListAdminEventsRequest {
        self.request.clone()
    }

    /// The query string of the page after this one: same limit and
    /// filters, the given cursor.
    pub fn next_query(&self, cursor: &str) -> String {
        next_query(self.request.limit, &self.filters, cursor)
    }
}

/// The handler.
#[utoipa::path(
    get,
    path = PATH,
    operation_id = "listAdminEvents",
    tag = "admin",
    summary = "List admin events (administrators' actions on accounts), newest first",
    description = "Every administrator's action (and every operator's `auth-service user …` \
                   command): who did what to which account, when and from where, as recorded \
                   in the transaction that made the change. One page at a time; follow `next` \
                   for the rest. Empty parameters count as absent; unknown ones are ignored.",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Page size (default 50)."),
        ("cursor" = Option<String>, Query, description = "Position from a previous page's `next`."),
        ("action" = Option<String>, Query, description = "One action: activate, deactivate, grant_admin, revoke_admin, unlock, logout, resend_verification or delete."),
        ("actor_id" = Option<i64>, Query, description = "The acting administrator's account id."),
        ("actor" = Option<String>, Query, max_length = 150, description = "The actor's username (or operator login), any case, exact."),
        ("operator" = Option<bool>, Query, description = "Only operators' command-line actions, or only administrators'."),
        ("target_id" = Option<i64>, Query, description = "The account acted on."),
        ("target" = Option<String>, Query, max_length = 150, description = "The account's username at the time, any case, exact."),
        ("ip" = Option<String>, Query, description = "The actor's client IP or a CIDR block."),
        ("since" = Option<String>, Query, format = DateTime, description = "Events at or after this instant (RFC 3339)."),
        ("until" = Option<String>, Query, format = DateTime, description = "Events before this instant (RFC 3339); later than `since`."),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of admin events.", body = AdminEventsPage),
        AdminErrors,
    )
)]
pub async fn list(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    ctx: RequestContext,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let query = EventsQuery::parse(query.as_deref()).map_err(ApiError::Validation)?;
    tracing::info!(admin = admin.user_id, "listing admin events");
    let reply = call(
        Rpc::ListAdminEvents,
        state
            .audit
            .clone()
            .list_admin_events(ctx.grpc_request(query.to_request())),
    )
    .await?;
    let next = next_link(
        state.public_url.as_ref(),
        PATH,
        &reply.next_cursor,
        |cursor| query.next_query(cursor),
    );
    Ok(crate::headers::private_json(AdminEventsPage {
        results: reply.events.into_iter().map(Into::into).collect(),
        next,
    }))
}

#[cfg(test)]
mod tests {
    use proto::audit::v1::AdminEvent;

    use super::*;

    fn parse(q: &str) -> Result<EventsQuery, FieldErrors> {
        EventsQuery::parse(Some(q))
    }

    fn error_fields(q: &str) -> Vec<String> {
        parse(q).unwrap_err().fields().map(str::to_owned).collect()
    }

    #[test]
    fn no_query_means_the_first_page_of_50_unfiltered() {
        let r = EventsQuery::parse(None).unwrap().to_request();
        assert_eq!(r.limit, 50);
        assert_eq!(r.cursor, "");
        assert_eq!(r.filter, Some(AdminEventFilter::default()));
        assert!(!r.oldest_first);
    }

    #[test]
    fn every_filter_is_passed_on() {
        let q = parse(
            "limit=7&cursor=abc&action=grant_admin&actor_id=1&actor=Root&operator=false\
             &target_id=42&target=Al%20ice&ip=::ffff:10.1.2.3&since=2024-01-01T00:00:00Z\
             &until=2024-02-01T00:00:00%2B01:00",
        )
        .unwrap();
        let r = q.to_request();
        assert_eq!((r.limit, r.cursor.as_str()), (7, "abc"));
        let f = r.filter.unwrap();
        assert_eq!(f.action, Some(AdminAction::GrantAdmin as i32));
        assert_eq!(f.actor_id, Some(1));
        assert_eq!(f.actor_name.as_deref(), Some("Root"));
        assert_eq!(f.operator, Some(false));
        assert_eq!(f.target_id, Some(42));
        assert_eq!(f.target_username.as_deref(), Some("Al ice"));
        assert_eq!(f.ip.as_deref(), Some("10.1.2.3"));
        assert_eq!(f.since.unwrap().seconds, 1_704_067_200);
        assert_eq!(f.until.unwrap().seconds, 1_706_742_000);
        assert_eq!(
            q.next_query("n/x"),
            "limit=7&action=grant_admin&actor_id=1&actor=Root&operator=false&target_id=42\
             &target=Al+ice&ip=%3A%3Affff%3A10.1.2.3&since=2024-01-01T00%3A00%3A00Z\
             &until=2024-02-01T00%3A00%3A00%2B01%3A00&cursor=n%2Fx"
        );
    }

    #[test]
    fn bad_values_are_refused_together_naming_each_parameter() {
        assert_eq!(
            error_fields(
                "limit=0&action=promote&actor_id=x&operator=maybe&target_id=1.5&ip=1.2.3\
                 &since=yesterday&until=2024"
            ),
            [
                "limit",
                "action",
                "actor_id",
                "target_id",
                "operator",
                "ip",
                "since",
                "until"
            ]
        );
        assert_eq!(error_fields("actor=a%00b"), ["actor"]);
        assert_eq!(
            error_fields(&format!("target={}", "é".repeat(151))),
            ["target"]
        );
        assert_eq!(
            error_fields(&format!("actor={}", "a".repeat(2000))),
            ["actor"]
        );
        assert_eq!(
            error_fields("since=2024-02-01T00:00:00Z&until=2024-01-01T00:00:00Z"),
            ["until"]
        );
        // A lookalike name is a name like any other: it matches only
        // itself, so it is passed on.
        assert!(parse("target=%D0%B0lice").is_ok());
    }

    #[test]
    fn an_item_shows_every_field_and_nulls_what_is_absent() {
        let record = AdminEventRecord {
            id: 3,
            event: Some(AdminEvent {
                event_id: "e".into(),
                occurred_at: Some(prost_types::Timestamp {
                    seconds: 1_704_067_200,
                    nanos: 0,
                }),
                action: AdminAction::Logout as i32,
                actor_id: None,
                actor_name: "ops".into(),
                operator: true,
                target_id: 9,
                target_username: "bob".into(),
                target_email: "bob@example.com".into(),
                ip: String::new(),
                user_agent: None,
                request_id: "r".into(),
                sessions_revoked: Some(2),
                counters_cleared: None,
                code_expires_at: None,
            }),
        };
        let item = AdminEventItem::from(record);
        assert_eq!(
            serde_json::to_value(&item).unwrap(),
            serde_json::json!({
                "id": 3, "event_id": "e", "created_at": "2024-01-01T00:00:00Z",
                "action": "logout", "actor_id": null, "actor": "ops", "operator": true,
                "target_id": 9, "target": "bob", "target_email": "bob@example.com",
                "ip": null, "user_agent": null, "request_id": "r", "sessions_revoked": 2,
                "counters_cleared": null, "code_expires_at": null
            })
        );
    }
}

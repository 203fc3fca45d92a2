//! `GET /api/accounts/logs/login/attemps/` (the old spelling is the
//! contract): the login-attempt log for administrators, newest first, one
//! page at a time — the old service returned every row at once, oldest
//! first, which `LOG_LISTING_FORMAT=django` brings back (streamed).

use axum::{
    extract::{RawQuery, State},
    response::Response,
};
use serde::Serialize;

use super::{
    export,
    item::AttemptItem,
    query::{Format, LogsQuery},
};
use crate::{
    auth::AdminUser,
    compat::ListingFormat,
    context::RequestContext,
    error::{ApiError, Rpc},
    grpc::call,
    openapi::AdminErrors,
    routes::params::next_link,
    state::AppState,
};

/// The path, for building `next` links.
pub const PATH: &str = "/api/accounts/logs/login/attemps/";

/// The listing's JSON answer: a [`Page`], or, on a server run with
/// `LOG_LISTING_FORMAT=django`, every matching item in one array, oldest
/// first. Only documents the choice; each shape is written by its own code.
pub struct Listing;

impl utoipa::PartialSchema for Listing {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::{
            ToSchema as _,
            openapi::{
                Ref,
                schema::{ArrayBuilder, OneOfBuilder},
            },
        };
        OneOfBuilder::new()
            .item(Ref::from_schema_name(Page::name()))
            .item(
                ArrayBuilder::new()
                    .items(Ref::from_schema_name(AttemptItem::name()))
                    .description(Some(
                        "LOG_LISTING_FORMAT=django: every matching attempt, oldest first.",
                    )),
            )
            .into()
    }
}

impl utoipa::ToSchema for Listing {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        use utoipa::PartialSchema as _;
        // Page brings its items' schema.
        schemas.push((Page::name().into_owned(), Page::schema()));
        <Page as utoipa::ToSchema>::schemas(schemas);
    }
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
                   Empty parameters count as absent; unknown ones are ignored. \
                   A server run with `LOG_LISTING_FORMAT=django` (the old service's shape) \
                   answers a JSON page request with a bare array of every matching attempt, \
                   oldest first, streamed; `limit` and `cursor` are then ignored.",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Page size (default 50)."),
        ("cursor" = Option<String>, Query, description = "Position from a previous page's `next`."),
        ("successful" = Option<bool>, Query, description = "Only successes, or only failures."),
        ("ip" = Option<String>, Query, description = "A client IP or CIDR block."),
        ("email" = Option<String>, Query, description = "The account's email, any case."),
        ("identifier" = Option<String>, Query, description = "What was submitted as username, exact."),
        ("user_id" = Option<i64>, Query, description = "The account's id."),
        ("reason" = Option<String>, Query, description = "Failure reason: unknown_user, bad_password, inactive, malformed_request, locked_out, rate_limited, code_wrong, code_expired or too_many_attempts."),
        ("kind" = Option<String>, Query, description = "What was attempted: login, password_change or password_reset."),
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
                (Listing = "application/json"),
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
    if state.shapes.listing == ListingFormat::Django {
        tracing::info!(
            admin = admin.user_id,
            "listing every login attempt, oldest first"
        );
        let mut query = query;
        query.oldest_first = true;
        query.cursor = None;
        return export::export(&state, ctx, query, Format::JsonArray).await;
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
    let next = next_link(
        state.public_url.as_ref(),
        PATH,
        &reply.next_cursor,
        |cursor| query.next_query(cursor),
    );
    Ok(crate::headers::private_json(Page {
        results: reply
            .attempts
            .into_iter()
            .map(|record| AttemptItem::new(record, state.shapes.reasons))
            .collect(),
        next,
    }))
}

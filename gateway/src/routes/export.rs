//! Bulk export (`?format=csv|ndjson` on the listing) and the live tail as
//! Server-Sent Events (`GET /api/accounts/logs/login/attemps/stream/`).
//!
//! Exports page through audit-service (500 rows a call) and write each page
//! to the response body as it arrives, so memory stays at one page however
//! large the log is. The tail forwards `audit.v1.AuditService/Tail`; when
//! the HTTP client goes away the body stream is dropped, which cancels the
//! gRPC stream and frees the subscription in audit-service.

use std::{convert::Infallible, time::Duration};

use axum::{
    body::{Body, Bytes},
    extract::{RawQuery, State},
    http::{HeaderValue, header},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures::{StreamExt as _, stream};

use super::logs::{AttemptItem, LogsQuery};
use crate::{
    AppState,
    auth::AdminUser,
    context::RequestContext,
    error::{ApiError, Rpc},
    grpc::{AuditClient, call},
    openapi::AdminErrors,
};

/// The live tail's path.
pub const STREAM_PATH: &str = "/api/accounts/logs/login/attemps/stream/";
/// Rows fetched per audit-service call during an export.
const EXPORT_PAGE: u32 = 500;
/// How often an idle SSE connection gets a comment line, so proxies keep
/// it open and a vanished client is noticed.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// An export file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values with a header row (RFC 4180).
    Csv,
    /// One JSON object per line.
    Ndjson,
}

impl Format {
    /// `csv` or `ndjson`; `None` for anything else.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "csv" => Some(Self::Csv),
            "ndjson" => Some(Self::Ndjson),
            _ => None,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv; charset=utf-8",
            Self::Ndjson => "application/x-ndjson",
        }
    }

    fn file_name(self) -> &'static str {
        match self {
            Self::Csv => "attachment; filename=\"login-attempts.csv\"",
            Self::Ndjson => "attachment; filename=\"login-attempts.ndjson\"",
        }
    }
}

/// Column order of the CSV export.
const CSV_HEADER: &str = "id,created_at,email,identifier,username,user,ip,successful,\
reject_reason,suspicious,user_agent,event_id,request_id\r\n";

/// One CSV field: quoted when needed, and defused when a spreadsheet would
/// read it as a formula (these values come from anonymous clients).
fn csv_field(out: &mut String, value: &str) {
    let defuse = value.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = defuse || value.contains([',', '"', '\r', '\n']);
    if quote {
        out.push('"');
    }
    if defuse {
        out.push('\'');
    }
    for c in value.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    if quote {
        out.push('"');
    }
}

/// One item as a CSV line.
fn csv_line(item: &AttemptItem) -> String {
    let mut line = String::new();
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let fields = [
        item.id.to_string(),
        opt(&item.created_at),
        item.email.clone(),
        item.identifier.clone(),
        opt(&item.username),
        item.user.map(|u| u.to_string()).unwrap_or_default(),
        opt(&item.ip),
        item.successful.to_string(),
        opt(&item.reject_reason),
        item.suspicious.to_string(),
        opt(&item.user_agent),
        item.event_id.clone(),
        item.request_id.clone(),
    ];
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        csv_field(&mut line, field);
    }
    line.push_str("\r\n");
    line
}

/// A page of items in `format`.
fn render(format: Format, items: impl Iterator<Item = AttemptItem>) -> Bytes {
    let mut out = String::new();
    for item in items {
        match format {
            Format::Csv => out.push_str(&csv_line(&item)),
            Format::Ndjson => {
                // Serialising a plain struct of strings and numbers cannot
                // fail; an empty line would be the visible symptom if it did.
                out.push_str(&serde_json::to_string(&item).unwrap_or_default());
                out.push('\n');
            }
        }
    }
    Bytes::from(out)
}

/// Where an export stands between two pages.
struct ExportState {
    client: AuditClient,
    ctx: RequestContext,
    query: LogsQuery,
    /// Cursor of the next page; `None` once the last page was sent.
    next: Option<String>,
}

/// Streams the whole filtered log in `format`. The first page is fetched
/// before answering, so a bad filter or a down backend still gets a proper
/// status; a failure later cuts the body short (the client sees an
/// incomplete transfer, never a silently truncated file that looks whole).
pub async fn export(
    state: &AppState,
    ctx: RequestContext,
    mut query: LogsQuery,
    format: Format,
) -> Result<Response, ApiError> {
    query.limit = EXPORT_PAGE;
    let client = state.audit.clone();
    let first = call(
        Rpc::ListAttempts,
        client
            .clone()
            .list_attempts(ctx.grpc_request(query.to_request())),
    )
    .await?;
    let header = match format {
        Format::Csv => Bytes::from_static(CSV_HEADER.as_bytes()),
        Format::Ndjson => Bytes::new(),
    };
    let first_chunk = render(format, first.attempts.into_iter().map(AttemptItem::from));
    let next = (!first.next_cursor.is_empty()).then_some(first.next_cursor);
    let rest = stream::unfold(
        ExportState {
            client,
            ctx,
            query,
            next,
        },
        move |mut st| async move {
            let cursor = st.next.take()?;
            st.query.cursor = Some(cursor);
            let request = st.ctx.grpc_request(st.query.to_request());
            match st.client.list_attempts(request).await {
                Ok(reply) => {
                    let reply = reply.into_inner();
                    st.next = (!reply.next_cursor.is_empty()).then_some(reply.next_cursor);
                    let chunk = render(format, reply.attempts.into_iter().map(AttemptItem::from));
                    Some((Ok::<_, tonic::Status>(chunk), st))
                }
                Err(status) => {
                    tracing::warn!(%status, "export cut short: audit-service failed mid-stream");
                    Some((Err(status), st))
                }
            }
        },
    );
    // After an error the stream must end, not retry forever.
    let rest = rest.scan(false, |failed, item| {
        let out = if *failed { None } else { Some(item) };
        *failed = out.as_ref().is_some_and(Result::is_err);
        futures::future::ready(out)
    });
    let body = stream::iter([Ok(header), Ok(first_chunk)]).chain(rest);
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static(format.file_name()),
    );
    for (name, value) in crate::headers::no_store() {
        headers.insert(name, value);
    }
    Ok(response)
}

/// `GET /api/accounts/logs/login/attemps/stream/`: attempts as they are
/// committed, filtered like the listing, as Server-Sent Events. Each
/// attempt is an `attempt` event whose data is the listing's item; a
/// `skipped` event (`{"skipped": n}`) says the client fell behind and
/// missed `n` attempts, which the listing still has.
#[utoipa::path(
    get,
    path = STREAM_PATH,
    operation_id = "streamLoginAttempts",
    tag = "logs",
    summary = "Follow new login attempts live (Server-Sent Events)",
    description = "Each attempt is an `attempt` event whose data is a listing item (JSON); \
                   a `skipped` event (`{\"skipped\": n}`) says `n` attempts were missed. \
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
        (status = 200, description = "An endless event stream.", content_type = "text/event-stream", body = String),
        AdminErrors,
    )
)]
pub async fn stream(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    ctx: RequestContext,
    RawQuery(query): RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    let query = LogsQuery::parse(query.as_deref()).map_err(ApiError::Validation)?;
    tracing::info!(admin = admin.user_id, "tailing login attempts");
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
        .filter_map(|event| async move {
            let event = event.ok()?;
            let sse = match event.attempt {
                Some(record) => {
                    let item = AttemptItem::from(record);
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
            Some(Ok::<_, Infallible>(sse))
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
    fn csv_fields_are_quoted_and_formulas_defused() {
        let mut out = String::new();
        csv_field(&mut out, "plain");
        out.push('|');
        csv_field(&mut out, "a,\"b\"");
        out.push('|');
        csv_field(&mut out, "=HYPERLINK(\"x\")");
        assert_eq!(out, "plain|\"a,\"\"b\"\"\"|\"'=HYPERLINK(\"\"x\"\")\"");
    }

    #[test]
    fn formats_parse_case_insensitively() {
        assert_eq!(Format::parse("CSV"), Some(Format::Csv));
        assert_eq!(Format::parse("ndjson"), Some(Format::Ndjson));
        assert_eq!(Format::parse("xml"), None);
    }
}

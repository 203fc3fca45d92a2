//! Bulk export: `?format=csv|ndjson` on the listing, and the listing
//! itself as one JSON array under `LOG_LISTING_FORMAT=django`.
//!
//! Exports page through audit-service (500 rows a call) and write each page
//! to the response body as it arrives, so memory stays at one page however
//! large the log is: the next page is fetched only as the client reads
//! (the body's backpressure), so a slow client holds one page, not the log.

use axum::{
    body::{Body, Bytes},
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use futures::{StreamExt as _, stream};
use proto::audit::v1::AttemptRecord;

use super::{
    item::AttemptItem,
    query::{Format, LogsQuery},
};
use crate::{
    context::RequestContext,
    error::{ApiError, Rpc},
    grpc::{AuditClient, call},
    state::AppState,
};

/// Rows fetched per audit-service call during an export.
const EXPORT_PAGE: u32 = 500;

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv; charset=utf-8",
            Self::Ndjson => "application/x-ndjson",
            Self::JsonArray => "application/json",
        }
    }

    /// `Content-Disposition` of a download; `None` for the listing.
    fn file_name(self) -> Option<&'static str> {
        match self {
            Self::Csv => Some("attachment; filename=\"login-attempts.csv\""),
            Self::Ndjson => Some("attachment; filename=\"login-attempts.ndjson\""),
            Self::JsonArray => None,
        }
    }

    /// What comes before the first row.
    fn header(self) -> &'static str {
        match self {
            Self::Csv => CSV_HEADER,
            Self::Ndjson => "",
            Self::JsonArray => "[",
        }
    }

    /// What comes after the last row, sent only when every page arrived.
    fn trailer(self) -> &'static str {
        match self {
            Self::Csv | Self::Ndjson => "",
            Self::JsonArray => "]",
        }
    }
}

/// Column order of the CSV export.
const CSV_HEADER: &str = "id,created_at,email,identifier,username,user,ip,successful,\
reject_reason,suspicious,user_agent,event_id,request_id,count,last_created_at,kind,\
original_reject_reason\r\n";

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
        item.count.to_string(),
        opt(&item.last_created_at),
        item.kind.to_owned(),
        opt(&item.original_reject_reason),
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

/// A page of items in `format`; `first` when no page came before it (a
/// JSON array separates later pages from earlier ones with a comma).
fn render(format: Format, items: impl Iterator<Item = AttemptItem>, first: bool) -> Bytes {
    let mut out = String::new();
    for (i, item) in items.enumerate() {
        // Serialising a plain struct of strings and numbers cannot fail;
        // an empty line (or `,,` in an array, which no parser accepts)
        // would be the visible symptom if it did.
        match format {
            Format::Csv => out.push_str(&csv_line(&item)),
            Format::Ndjson => {
                out.push_str(&serde_json::to_string(&item).unwrap_or_default());
                out.push('\n');
            }
            Format::JsonArray => {
                if i > 0 || !first {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(&item).unwrap_or_default());
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

/// Streams the whole filtered log in `format`, in the query's order. The
/// first page is fetched before answering, so a bad filter or a down
/// backend still gets a proper status; a failure later cuts the body short
/// (the client sees an incomplete transfer, and a JSON array without its
/// `]`, never a silently truncated file that looks whole).
pub async fn export(
    state: &AppState,
    ctx: RequestContext,
    mut query: LogsQuery,
    format: Format,
) -> Result<Response, ApiError> {
    query.limit = EXPORT_PAGE;
    let client = state.audit.clone();
    let reasons = state.shapes.reasons;
    let item = move |record: AttemptRecord| AttemptItem::new(record, reasons);
    let first = call(
        Rpc::ListAttempts,
        client
            .clone()
            .list_attempts(ctx.grpc_request(query.to_request())),
    )
    .await?;
    let header = Bytes::from_static(format.header().as_bytes());
    let first_chunk = render(format, first.attempts.into_iter().map(item), true);
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
                    let chunk = render(format, reply.attempts.into_iter().map(item), false);
                    Some((Ok::<_, tonic::Status>(chunk), st))
                }
                Err(status) => {
                    tracing::warn!(%status, "export cut short: audit-service failed mid-stream");
                    Some((Err(status), st))
                }
            }
        },
    );
    let trailer = Bytes::from_static(format.trailer().as_bytes());
    // After an error the stream must end, not retry forever, and the
    // trailer must not follow: a complete-looking array would hide the loss.
    let rest = rest
        .chain(stream::once(futures::future::ready(Ok(trailer))))
        .scan(false, |failed, chunk| {
            let out = if *failed { None } else { Some(chunk) };
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
    if let Some(file_name) = format.file_name() {
        headers.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static(file_name),
        );
    }
    for (name, value) in crate::headers::no_store() {
        headers.insert(name, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use proto::audit::v1::Attempt;

    use super::*;

    fn items(ids: std::ops::Range<i64>) -> impl Iterator<Item = AttemptItem> {
        ids.map(|id| {
            AttemptItem::from(AttemptRecord {
                id,
                suspicious: false,
                attempt: Some(Attempt::default()),
            })
        })
    }

    #[test]
    fn json_array_pages_join_into_one_valid_array() {
        let format = Format::JsonArray;
        let mut body = format.header().to_owned();
        for (page, first) in [(items(1..3), true), (items(3..4), false)] {
            body.push_str(std::str::from_utf8(&render(format, page, first)).unwrap());
        }
        body.push_str(format.trailer());
        let parsed: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        let ids: Vec<i64> = parsed.iter().map(|v| v["id"].as_i64().unwrap()).collect();
        assert_eq!(ids, [1, 2, 3]);
        // An empty log is an empty array.
        let empty = format!(
            "{}{}{}",
            format.header(),
            std::str::from_utf8(&render(format, items(0..0), true)).unwrap(),
            format.trailer()
        );
        assert_eq!(empty, "[]");
    }

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
}

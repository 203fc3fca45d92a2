//! Listing: one page of the log, newest or oldest first, in every
//! backend's dialect.
//!
//! Pages are keyset-paged on `(occurred_at, id)`; every filter is a bound
//! value on a column that leads an `(x, occurred_at, id)` index, which the
//! engines read forwards or backwards alike.

use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Pool, QueryBuilder, Type};

use crate::attempt::{Cursor, Filter, NewAttempt, Order, Page, StoredAttempt, ip_key};

/// What one page asks for.
#[derive(Debug, Clone, Copy)]
pub(super) struct PageQuery<'a> {
    /// Which attempts.
    pub(super) filter: &'a Filter,
    /// Rows to fetch: the page size plus one, to tell whether more follow.
    pub(super) fetch: u32,
    /// Where the previous page ended.
    pub(super) cursor: Option<Cursor>,
    /// Which way through the log.
    pub(super) order: Order,
}

impl Order {
    /// The `ORDER BY` terms of a listing in this order.
    pub(super) fn sql(self) -> &'static str {
        match self {
            Self::NewestFirst => "occurred_at DESC, id DESC",
            Self::OldestFirst => "occurred_at ASC, id ASC",
        }
    }
}

/// How a backend compares the keyset position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Keyset {
    /// `(occurred_at, id) < (?, ?)`: SQLite and PostgreSQL seek on it.
    RowValue,
    /// The same spelled out, which MySQL/MariaDB turn into an index range
    /// (they do not for row values).
    Expanded,
}

/// How a listing with an IP range reaches its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IpPath {
    /// Whatever the engine's planner picks. PostgreSQL and MariaDB always
    /// take it: they choose between the IP-key index and the newest rows
    /// from their own statistics (autovacuum's ANALYZE, InnoDB's persistent
    /// statistics); measured, a `/16` holding a third of the log is read
    /// newest first (PostgreSQL at 10 M rows, MariaDB at 1 M).
    Planner,
    /// Not through the IP-key index (SQLite's unary `+` hides it): the
    /// range matches so many rows that reading the log in time order (the
    /// newest rows first, or the oldest) finds a page sooner than sorting
    /// every match.
    InTimeOrder,
}

/// Appends the listing's filters, keyset position, order and limit to a
/// query that ends in a `WHERE` clause. Shared by every backend: values are
/// only ever bound, and every filter column leads an `(x, occurred_at, id)`
/// index, so each engine seeks instead of scanning.
pub(super) fn push_listing<DB>(
    qb: &mut QueryBuilder<DB>,
    page: &PageQuery<'_>,
    keyset: Keyset,
    ip_path: IpPath,
) where
    DB: Database,
    for<'t> bool: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
{
    push_filters(qb, page.filter, ip_path);
    push_keyset(qb, page.cursor, page.order, keyset);
    qb.push(format_args!(" ORDER BY {} LIMIT ", page.order.sql()))
        .push_bind(i64::from(page.fetch));
}

/// Appends the listing's filters (`AND` terms) to a query that ends in a
/// `WHERE` clause: what a listing, and a count, select.
pub(super) fn push_filters<DB>(qb: &mut QueryBuilder<DB>, filter: &Filter, ip_path: IpPath)
where
    DB: Database,
    for<'t> bool: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
{
    if let Some(successful) = filter.successful {
        qb.push(" AND successful = ").push_bind(successful);
    }
    if let Some(ip) = &filter.ip {
        if ip.lo == ip.hi {
            qb.push(" AND ip_key = ").push_bind(ip.lo.clone());
        } else {
            qb.push(match ip_path {
                IpPath::Planner => " AND ip_key BETWEEN ",
                IpPath::InTimeOrder => " AND +ip_key BETWEEN ",
            })
            .push_bind(ip.lo.clone())
            .push(" AND ")
            .push_bind(ip.hi.clone());
        }
    }
    if let Some(email) = &filter.email_lower {
        qb.push(" AND email_lower = ").push_bind(email.clone());
    }
    if let Some(identifier) = &filter.identifier {
        qb.push(" AND identifier = ").push_bind(identifier.clone());
    }
    if let Some(user_id) = filter.user_id {
        qb.push(" AND user_id = ").push_bind(user_id);
    }
    if let Some(reason) = &filter.reason {
        qb.push(" AND reject_reason = ").push_bind(reason.clone());
    }
    if let Some(kind) = &filter.kind {
        qb.push(" AND kind = ").push_bind(kind.clone());
    }
    // A literal, not a bind: only then can SQLite and PostgreSQL use the
    // partial index of flagged rows.
    match filter.suspicious {
        Some(true) => {
            qb.push(" AND suspicious");
        }
        Some(false) => {
            qb.push(" AND NOT suspicious");
        }
        None => {}
    }
    if let Some(since) = filter.since {
        qb.push(" AND occurred_at >= ").push_bind(since);
    }
    if let Some(until) = filter.until {
        qb.push(" AND occurred_at < ").push_bind(until);
    }
}

/// Appends the keyset condition: rows past `cursor` in `order`, by
/// `(occurred_at, id)`. Nothing without a cursor.
pub(super) fn push_keyset<DB>(
    qb: &mut QueryBuilder<DB>,
    cursor: Option<Cursor>,
    order: Order,
    keyset: Keyset,
) where
    DB: Database,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    let Some(c) = cursor else {
        return;
    };
    // Past the cursor: before it newest first, after it oldest first.
    let (past, past_or_at) = match order {
        Order::NewestFirst => ("<", "<="),
        Order::OldestFirst => (">", ">="),
    };
    match keyset {
        Keyset::RowValue => {
            qb.push(format_args!(" AND (occurred_at, id) {past} ("))
                .push_bind(c.occurred_at)
                .push(", ")
                .push_bind(c.id)
                .push(")");
        }
        Keyset::Expanded => {
            qb.push(format_args!(" AND occurred_at {past_or_at} "))
                .push_bind(c.occurred_at)
                .push(format_args!(" AND (occurred_at {past} "))
                .push_bind(c.occurred_at)
                .push(format_args!(" OR id {past} "))
                .push_bind(c.id)
                .push(")");
        }
    }
}

/// Up to `page.fetch` rows of the page: `select` (the [`AttemptRow`]
/// columns, ending in a `WHERE` clause) completed by [`push_listing`].
pub(super) async fn fetch_rows<DB>(
    pool: &Pool<DB>,
    select: &str,
    keyset: Keyset,
    page: &PageQuery<'_>,
) -> Result<Vec<AttemptRow>, sqlx::Error>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'r> AttemptRow: FromRow<'r, DB::Row>,
    for<'t> bool: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
{
    let mut qb = QueryBuilder::<DB>::new(select);
    push_listing(&mut qb, page, keyset, IpPath::Planner);
    qb.build_query_as::<AttemptRow>().fetch_all(pool).await
}

/// The columns every backend selects, in its own dialect, for a listing.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct AttemptRow {
    pub(super) id: i64,
    pub(super) event_id: String,
    pub(super) occurred_at: i64,
    pub(super) identifier: String,
    pub(super) user_id: Option<i64>,
    pub(super) username: Option<String>,
    pub(super) email: String,
    pub(super) email_lower: String,
    pub(super) successful: bool,
    pub(super) reject_reason: String,
    pub(super) kind: String,
    pub(super) ip: String,
    pub(super) user_agent: Option<String>,
    pub(super) request_id: String,
    pub(super) suspicious: bool,
    pub(super) attempt_count: i64,
    pub(super) last_occurred_at: Option<i64>,
    pub(super) original_reject_reason: Option<String>,
}

impl From<AttemptRow> for StoredAttempt {
    fn from(r: AttemptRow) -> Self {
        Self {
            id: r.id,
            suspicious: r.suspicious,
            attempt: NewAttempt {
                event_id: r.event_id,
                occurred_at: r.occurred_at,
                identifier: r.identifier,
                user_id: r.user_id,
                username: r.username,
                email: r.email,
                email_lower: r.email_lower,
                successful: r.successful,
                reject_reason: r.reject_reason,
                kind: r.kind,
                ip_key: ip_key(&r.ip),
                ip: r.ip,
                user_agent: r.user_agent,
                request_id: r.request_id,
                count: r.attempt_count,
                last_occurred_at: r.last_occurred_at,
                original_reject_reason: r.original_reject_reason,
                producer_suspicious: None,
            },
        }
    }
}

/// Splits `limit + 1` fetched rows into a page and, when the extra row
/// exists, the cursor after the page's last row.
pub(super) fn page_from_rows(rows: Vec<AttemptRow>, limit: u32) -> Page {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let more = rows.len() > limit;
    let attempts: Vec<StoredAttempt> = rows.into_iter().take(limit).map(Into::into).collect();
    let next = if more {
        attempts.last().map(|a| Cursor {
            occurred_at: a.attempt.occurred_at,
            id: a.id,
        })
    } else {
        None
    };
    Page { attempts, next }
}

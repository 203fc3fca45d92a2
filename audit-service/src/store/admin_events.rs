//! Admin events in their own table (`admin_events`), on every backend
//! with one generic path: they are few (a person's clicks), so the
//! attempts' bulk paths (COPY, JSON pages, group splitting) would buy
//! nothing here. Each backend gives its dialect in an [`AdminSql`].

use std::collections::HashSet;

use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, FromRow, IntoArguments, Pool, Type};

use super::{
    insert::in_queries,
    listing::{Keyset, push_keyset},
};
use crate::{
    admin_event::{AdminEventPage, AdminFilter, NewAdminEvent, StoredAdminEvent},
    attempt::{Cursor, Order, ip_key},
};

/// A backend's spelling of the admin-event statements.
#[derive(Debug)]
pub(super) struct AdminSql {
    /// Opens the insert's transaction. SQLite's takes the write lock up
    /// front: it reads before it writes, and a deferred transaction
    /// upgrading to a writer fails at once when another holds the lock.
    pub(super) begin: &'static str,
    /// Follows each event id placeholder (`::uuid` on PostgreSQL).
    pub(super) uuid_cast: &'static str,
    /// The stored event ids among a list, ending in `IN (`.
    pub(super) existing: &'static str,
    /// Ends the multi-row INSERT: a duplicate event id is left alone.
    pub(super) on_duplicate: &'static str,
    /// A listing's columns ([`AdminEventRow`]), ending in a `WHERE` clause.
    pub(super) select: &'static str,
    /// How the keyset position is compared.
    pub(super) keyset: Keyset,
}

/// The INSERT up to its `VALUES`, columns in [`insert_admin_events`]' order.
const INSERT_INTO: &str = "INSERT INTO admin_events \
    (event_id, occurred_at, action, actor_id, actor_name, actor_name_lower, is_operator, \
     target_id, target_username, target_username_lower, target_email, ip, ip_key, \
     user_agent, request_id, sessions_revoked, counters_cleared, code_expires_at) ";

/// Rows per INSERT statement: 18 parameters each, far under every engine's
/// limit.
const INSERT_CHUNK: usize = 500;

/// Stores `events` in one transaction, skipping those whose event id is
/// stored already (or repeated earlier in `events`), and returns the event
/// ids that were new.
pub(super) async fn insert_admin_events<DB>(
    pool: &Pool<DB>,
    sql: &AdminSql,
    events: &[NewAdminEvent],
) -> Result<HashSet<String>, sqlx::Error>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'t> bool: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> Option<i64>: Encode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Decode<'t, DB> + Type<DB>,
    for<'t> Option<String>: Encode<'t, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    if events.is_empty() {
        return Ok(HashSet::new());
    }
    let mut tx = pool.begin_with(sql.begin).await?;
    let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    let mut stored = HashSet::new();
    for mut qb in in_queries::<DB>(sql.existing, &ids, sql.uuid_cast) {
        stored.extend(
            qb.build_query_scalar::<String>()
                .fetch_all(&mut *tx)
                .await?,
        );
    }
    let mut fresh = HashSet::new();
    let rows: Vec<&NewAdminEvent> = events
        .iter()
        .filter(|e| !stored.contains(&e.event_id) && fresh.insert(e.event_id.clone()))
        .collect();
    for chunk in rows.chunks(INSERT_CHUNK) {
        let mut qb = sqlx::QueryBuilder::<DB>::new(INSERT_INTO);
        qb.push_values(chunk, |mut row, e| {
            row.push_bind(e.event_id.clone())
                .push_unseparated(sql.uuid_cast)
                .push_bind(e.occurred_at)
                .push_bind(e.action.clone())
                .push_bind(e.actor_id)
                .push_bind(e.actor_name.clone())
                .push_bind(e.actor_name_lower.clone())
                .push_bind(e.operator)
                .push_bind(e.target_id)
                .push_bind(e.target_username.clone())
                .push_bind(e.target_username_lower.clone())
                .push_bind(e.target_email.clone())
                .push_bind(e.ip.clone())
                .push_bind(e.ip_key.clone())
                .push_bind(e.user_agent.clone())
                .push_bind(e.request_id.clone())
                .push_bind(e.sessions_revoked)
                .push_bind(e.counters_cleared)
                .push_bind(e.code_expires_at);
        });
        // A duplicate committed by another stream since the look-up above
        // is absorbed by the conflict clause (and counted as new here: the
        // count is informational, the row is stored once).
        qb.push(sql.on_duplicate).build().execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(fresh)
}

/// One page of admin events matching `filter` in `order` after `cursor`:
/// `limit` rows at most, and the cursor of the next page when more follow.
pub(super) async fn list_admin_events<DB>(
    pool: &Pool<DB>,
    sql: &AdminSql,
    filter: &AdminFilter,
    limit: u32,
    cursor: Option<Cursor>,
    order: Order,
) -> Result<AdminEventPage, sqlx::Error>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'r> AdminEventRow: FromRow<'r, DB::Row>,
    for<'t> bool: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
{
    let mut qb = sqlx::QueryBuilder::<DB>::new(sql.select);
    if let Some(action) = &filter.action {
        qb.push(" AND action = ").push_bind(action.clone());
    }
    if let Some(actor_id) = filter.actor_id {
        qb.push(" AND actor_id = ").push_bind(actor_id);
    }
    if let Some(name) = &filter.actor_name_lower {
        qb.push(" AND actor_name_lower = ").push_bind(name.clone());
    }
    if let Some(operator) = filter.operator {
        qb.push(" AND is_operator = ").push_bind(operator);
    }
    if let Some(target_id) = filter.target_id {
        qb.push(" AND target_id = ").push_bind(target_id);
    }
    if let Some(name) = &filter.target_username_lower {
        qb.push(" AND target_username_lower = ")
            .push_bind(name.clone());
    }
    if let Some(ip) = &filter.ip {
        if ip.lo == ip.hi {
            qb.push(" AND ip_key = ").push_bind(ip.lo.clone());
        } else {
            qb.push(" AND ip_key BETWEEN ")
                .push_bind(ip.lo.clone())
                .push(" AND ")
                .push_bind(ip.hi.clone());
        }
    }
    if let Some(since) = filter.since {
        qb.push(" AND occurred_at >= ").push_bind(since);
    }
    if let Some(until) = filter.until {
        qb.push(" AND occurred_at < ").push_bind(until);
    }
    push_keyset(&mut qb, cursor, order, sql.keyset);
    qb.push(format_args!(" ORDER BY {} LIMIT ", order.sql()))
        .push_bind(i64::from(limit) + 1);
    let rows: Vec<AdminEventRow> = qb.build_query_as().fetch_all(pool).await?;
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let more = rows.len() > limit;
    let events: Vec<StoredAdminEvent> = rows.into_iter().take(limit).map(Into::into).collect();
    let next = if more {
        events.last().map(|e| Cursor {
            occurred_at: e.event.occurred_at,
            id: e.id,
        })
    } else {
        None
    };
    Ok(AdminEventPage { events, next })
}

/// The columns every backend selects for a listing.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct AdminEventRow {
    id: i64,
    event_id: String,
    occurred_at: i64,
    action: String,
    actor_id: Option<i64>,
    actor_name: String,
    actor_name_lower: String,
    is_operator: bool,
    target_id: i64,
    target_username: String,
    target_username_lower: String,
    target_email: String,
    ip: String,
    user_agent: Option<String>,
    request_id: String,
    sessions_revoked: Option<i64>,
    counters_cleared: Option<i64>,
    code_expires_at: Option<i64>,
}

impl From<AdminEventRow> for StoredAdminEvent {
    fn from(r: AdminEventRow) -> Self {
        Self {
            id: r.id,
            event: NewAdminEvent {
                event_id: r.event_id,
                occurred_at: r.occurred_at,
                action: r.action,
                actor_id: r.actor_id,
                actor_name: r.actor_name,
                actor_name_lower: r.actor_name_lower,
                operator: r.is_operator,
                target_id: r.target_id,
                target_username: r.target_username,
                target_username_lower: r.target_username_lower,
                target_email: r.target_email,
                ip_key: ip_key(&r.ip),
                ip: r.ip,
                user_agent: r.user_agent,
                request_id: r.request_id,
                sessions_revoked: r.sessions_revoked,
                counters_cleared: r.counters_cleared,
                code_expires_at: r.code_expires_at,
            },
        }
    }
}

/// The columns of [`AdminEventRow`] in a SELECT, `event_id` spelled
/// `$event_id` (PostgreSQL casts its UUID to text).
macro_rules! admin_select {
    ($event_id:literal) => {
        concat!(
            "SELECT id, ",
            $event_id,
            ", occurred_at, action, actor_id, actor_name, actor_name_lower, \
             is_operator, target_id, target_username, target_username_lower, target_email, ip, user_agent, \
             request_id, sessions_revoked, counters_cleared, code_expires_at \
             FROM admin_events WHERE 1 = 1"
        )
    };
}
pub(super) use admin_select;

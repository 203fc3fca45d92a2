//! Inserting a batch: the error that says what was committed all the same,
//! the rows as stored, and, for the backends that insert with bound
//! `VALUES` (SQLite, MySQL/MariaDB; PostgreSQL copies its rows in, see
//! `pg_copy`), the multi-row INSERTs and the `IN`-list lookups around them.

use std::collections::{HashMap, HashSet};

use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, QueryBuilder, Type};

use crate::attempt::{NewAttempt, StoredAttempt};

/// A failed insert, with what it committed all the same: batches spread
/// over transactions can fail in one after another has committed.
#[derive(Debug)]
pub struct InsertError {
    /// Rows committed anyway; new to the log like any others.
    pub stored: Vec<StoredAttempt>,
    /// Why the rest were not.
    pub source: sqlx::Error,
}

impl From<sqlx::Error> for InsertError {
    fn from(source: sqlx::Error) -> Self {
        Self {
            stored: Vec::new(),
            source,
        }
    }
}

/// Rows per multi-row INSERT: 18 parameters each, so 18,000 per statement,
/// under SQLite's 32,766 and PostgreSQL's and MySQL's 65,535.
const INSERT_CHUNK: usize = 1000;

/// Values per `IN (...)` list (plus a few more parameters), under every
/// engine's bind-parameter limit.
pub(super) const IN_CHUNK: usize = 10_000;

/// The multi-row INSERT up to its `VALUES`, columns in [`insert_queries`]'s order.
const INSERT_INTO: &str = "INSERT INTO login_attempts \
    (event_id, occurred_at, identifier, user_id, username, email, email_lower, \
     successful, reject_reason, ip, user_agent, request_id, suspicious, ip_key, \
     attempt_count, last_occurred_at, kind, original_reject_reason) ";

/// Multi-row INSERTs of `rows` (attempt and flag), one per chunk, each ending
/// after its `VALUES` list so the backend can append its conflict and
/// returning clauses. `uuid_cast` follows the event id's placeholder
/// (`::uuid` on PostgreSQL).
pub(super) fn insert_queries<DB>(
    rows: &[(&NewAttempt, bool)],
    uuid_cast: &str,
) -> Vec<QueryBuilder<DB>>
where
    DB: Database,
    for<'t> bool: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> Option<i64>: Encode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> Option<String>: Encode<'t, DB> + Type<DB>,
{
    rows.chunks(INSERT_CHUNK)
        .map(|chunk| {
            let mut qb = QueryBuilder::<DB>::new(INSERT_INTO);
            qb.push_values(chunk, |mut row, (a, suspicious)| {
                row.push_bind(a.event_id.clone())
                    .push_unseparated(uuid_cast)
                    .push_bind(a.occurred_at)
                    .push_bind(a.identifier.clone())
                    .push_bind(a.user_id)
                    .push_bind(a.username.clone())
                    .push_bind(a.email.clone())
                    .push_bind(a.email_lower.clone())
                    .push_bind(a.successful)
                    .push_bind(a.reject_reason.clone())
                    .push_bind(a.ip.clone())
                    .push_bind(a.user_agent.clone())
                    .push_bind(a.request_id.clone())
                    .push_bind(*suspicious)
                    .push_bind(a.ip_key.clone())
                    .push_bind(a.count)
                    .push_bind(a.last_occurred_at)
                    .push_bind(a.kind.clone())
                    .push_bind(a.original_reject_reason.clone());
            });
            qb
        })
        .collect()
}

/// `select` (ending in `WHERE event_id IN (`) completed with `ids`, one
/// query per chunk; each placeholder is followed by `cast`.
pub(super) fn in_queries<DB>(select: &str, ids: &[&str], cast: &str) -> Vec<QueryBuilder<DB>>
where
    DB: Database,
    for<'t> String: Encode<'t, DB> + Type<DB>,
{
    ids.chunks(IN_CHUNK)
        .map(|chunk| {
            let mut qb = QueryBuilder::<DB>::new(select);
            let mut list = qb.separated(", ");
            for id in chunk {
                list.push_bind((*id).to_owned()).push_unseparated(cast);
            }
            qb.push(")");
            qb
        })
        .collect()
}

/// Looks up which of a batch's event ids are stored, ending in `IN (`.
const EXISTING: &str = "SELECT event_id FROM login_attempts WHERE event_id IN (";

/// The event ids of `attempts` already stored, read on `conn` with `IN`
/// lists (the caller's transaction decides how the read locks).
pub(super) async fn stored_event_ids<DB>(
    conn: &mut DB::Connection,
    attempts: &[NewAttempt],
) -> Result<HashSet<String>, sqlx::Error>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'t> String: Encode<'t, DB> + Decode<'t, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    let event_ids: Vec<&str> = attempts.iter().map(|a| a.event_id.as_str()).collect();
    let mut stored = HashSet::new();
    for mut qb in in_queries::<DB>(EXISTING, &event_ids, "") {
        stored.extend(
            qb.build_query_scalar::<String>()
                .fetch_all(&mut *conn)
                .await?,
        );
    }
    Ok(stored)
}

/// The inserted rows as stored, in batch order: those `ids` (by event id)
/// reports as new.
pub(super) fn stored_attempts(
    rows: &[(&NewAttempt, bool)],
    ids: &HashMap<String, i64>,
) -> Vec<StoredAttempt> {
    rows.iter()
        .filter_map(|(a, suspicious)| {
            ids.get(&a.event_id).map(|&id| StoredAttempt {
                id,
                suspicious: *suspicious,
                attempt: (*a).clone(),
            })
        })
        .collect()
}

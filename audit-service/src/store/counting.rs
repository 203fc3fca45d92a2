//! Counting: the attempts of each time bucket of a range, in every
//! backend's dialect.
//!
//! The rows the listing's filters select (the same SQL, [`push_filters`]),
//! bucketed by integer arithmetic on the stored time (microseconds on every
//! backend), summing `attempt_count` so a tallied record counts as the
//! attempts it stands for: one `GROUP BY` on SQLite and MySQL/MariaDB, one
//! aggregate per bucket on PostgreSQL (see [`per_bucket_query`]). Only
//! buckets holding rows come back; the service fills in the empty ones.

use sqlx::{
    Database, Decode, Encode, Executor, FromRow, IntoArguments, Pool, Postgres, QueryBuilder, Type,
};

use super::listing::{IpPath, push_filters};
use crate::attempt::{BucketCounts, CountQuery};

/// How a backend spells what a count needs beyond the listing's SQL.
#[derive(Debug)]
pub(super) struct CountDialect {
    /// Integer division: `/` of two integers, or MySQL's `DIV` (its `/`
    /// gives a decimal).
    pub(super) div: &'static str,
    /// The integer type sums are cast to, so they decode as `i64`:
    /// PostgreSQL sums `BIGINT` as `NUMERIC` and MySQL as `DECIMAL`.
    pub(super) int: &'static str,
    /// The table, with any hint the engine needs to read it well.
    pub(super) table: &'static str,
}

/// SQLite (PostgreSQL counts per bucket, see [`per_bucket_query`]).
pub(super) const STANDARD: CountDialect = CountDialect {
    div: "/",
    int: "BIGINT",
    table: "login_attempts",
};

/// MySQL and MariaDB.
///
/// With every index a filter can lead to named, and only them: measured at
/// 1 M rows, MariaDB 10.11 read the whole table (1.4 s) for a day's range
/// holding an eighth of it, where the time index takes 0.2 s. It still picks
/// among the named ones by cost (an email filter seeks the email index), but
/// never scans the table.
pub(super) const MYSQL: CountDialect = CountDialect {
    div: "DIV",
    int: "SIGNED",
    table: "login_attempts FORCE INDEX (login_attempts_recent, login_attempts_email, \
            login_attempts_ip_key, login_attempts_identifier, login_attempts_user, \
            login_attempts_reason, login_attempts_kind, login_attempts_suspicious)",
};

/// A row of the count: the bucket's index from the first bucket, then
/// successes, failures and suspicious attempts.
pub(super) type CountRow = (i64, i64, i64, i64);

/// The three sums of a count, each cast to `int`.
fn sums(int: &str) -> String {
    format!(
        "CAST(SUM(CASE WHEN successful THEN attempt_count ELSE 0 END) AS {int}), \
         CAST(SUM(CASE WHEN successful THEN 0 ELSE attempt_count END) AS {int}), \
         CAST(SUM(CASE WHEN suspicious THEN attempt_count ELSE 0 END) AS {int})"
    )
}

/// The count's statement: `SELECT <bucket>, <three sums> FROM
/// login_attempts WHERE` the listing's filters `GROUP BY` bucket, in
/// bucket order. The bucket index is `(occurred_at - origin) / width`:
/// `origin` is at or before every counted row (it is `since` rounded down),
/// so the dividend is never negative and truncating division is floor
/// division on every engine.
pub(super) fn count_query<DB>(
    dialect: &CountDialect,
    query: &CountQuery,
    ip_path: IpPath,
) -> QueryBuilder<DB>
where
    DB: Database,
    for<'t> bool: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
{
    let CountDialect { div, int, table } = dialect;
    let mut qb = QueryBuilder::<DB>::new("SELECT CAST((occurred_at - ");
    qb.push_bind(query.origin)
        .push(format_args!(") {div} "))
        .push_bind(query.width)
        .push(format_args!(
            " AS {int}), {} FROM {table} WHERE 1 = 1",
            sums(int)
        ));
    push_filters(&mut qb, &query.filter, ip_path);
    qb.push(" GROUP BY 1 ORDER BY 1");
    qb
}

/// PostgreSQL's statement: one aggregate per bucket, each over its own
/// range of the time index (`k` counts the buckets from 0; buckets without
/// rows are left out), where [`count_query`] makes one `GROUP BY` over the
/// whole range.
///
/// Measured at 10 M rows (BENCHMARKS.md), PostgreSQL 15 plans that
/// `GROUP BY` over a day as a parallel scan of the whole table (2.6 GB)
/// and a sort spilling to disk, ~1 s: it costs an index scan of the
/// two-column `(occurred_at, id)` index as if the rows were only 0.75
/// correlated with time (its rule for multi-column indexes, though they are
/// appended in time order), and cannot know that the grouping makes 25
/// groups, not 400,000. A bucket's range is a small share of the log, so
/// each is read from the index, with no sort; a day in hours took 130-190
/// ms there.
pub(super) fn per_bucket_query(query: &CountQuery) -> QueryBuilder<Postgres> {
    let mut qb = QueryBuilder::<Postgres>::new("SELECT k, s.* FROM generate_series(0::int8, ");
    qb.push_bind(query.buckets - 1)
        .push(format_args!(
            ") AS k CROSS JOIN LATERAL (SELECT {} FROM login_attempts WHERE occurred_at >= ",
            sums("BIGINT")
        ))
        .push_bind(query.origin)
        .push(" + k * ")
        .push_bind(query.width)
        .push(" AND occurred_at < ")
        .push_bind(query.origin)
        .push(" + (k + 1) * ")
        .push_bind(query.width);
    push_filters(&mut qb, &query.filter, IpPath::Planner);
    // An aggregate over no rows is one row of NULLs.
    qb.push(") AS s (successes, failures, suspicious) WHERE s.successes IS NOT NULL ORDER BY k");
    qb
}

/// The non-empty buckets of `query`, by index, through `pool`.
pub(super) async fn fetch_counts<DB>(
    pool: &Pool<DB>,
    dialect: &CountDialect,
    query: &CountQuery,
    ip_path: IpPath,
) -> Result<Vec<(i64, BucketCounts)>, sqlx::Error>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'t> bool: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Decode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'r> CountRow: FromRow<'r, DB::Row>,
{
    let mut qb = count_query::<DB>(dialect, query, ip_path);
    let rows: Vec<CountRow> = qb.build_query_as().fetch_all(pool).await?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// A row as a bucket index and its counts.
pub(super) fn from_row((bucket, successes, failures, suspicious): CountRow) -> (i64, BucketCounts) {
    (
        bucket,
        BucketCounts {
            successes,
            failures,
            suspicious,
        },
    )
}

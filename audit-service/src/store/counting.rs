//! Counting: the attempts of each time bucket of a range, in every
//! backend's dialect.
//!
//! One `GROUP BY` over the rows the listing's filters select (the same SQL,
//! [`push_filters`]), bucketed by integer arithmetic on the stored time
//! (microseconds on every backend), summing `attempt_count` so a tallied
//! record counts as the attempts it stands for. Only buckets holding rows
//! come back; the service fills in the empty ones.

use sqlx::{Database, Decode, Encode, Executor, FromRow, IntoArguments, Pool, QueryBuilder, Type};

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
}

/// PostgreSQL and SQLite.
pub(super) const STANDARD: CountDialect = CountDialect {
    div: "/",
    int: "BIGINT",
};

/// MySQL and MariaDB.
pub(super) const MYSQL: CountDialect = CountDialect {
    div: "DIV",
    int: "SIGNED",
};

/// A row of the count: the bucket's index from the first bucket, then
/// successes, failures and suspicious attempts.
pub(super) type CountRow = (i64, i64, i64, i64);

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
    let CountDialect { div, int } = dialect;
    let mut qb = QueryBuilder::<DB>::new("SELECT CAST((occurred_at - ");
    qb.push_bind(query.origin)
        .push(format_args!(") {div} "))
        .push_bind(query.width)
        .push(format_args!(
            " AS {int}), \
             CAST(SUM(CASE WHEN successful THEN attempt_count ELSE 0 END) AS {int}), \
             CAST(SUM(CASE WHEN successful THEN 0 ELSE attempt_count END) AS {int}), \
             CAST(SUM(CASE WHEN suspicious THEN attempt_count ELSE 0 END) AS {int}) \
             FROM login_attempts WHERE 1 = 1"
        ));
    push_filters(&mut qb, &query.filter, ip_path);
    qb.push(" GROUP BY 1 ORDER BY 1");
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

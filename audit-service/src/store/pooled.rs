//! What every backend does with its pool the same way, each in its own SQL
//! dialect: retention's deletes, the readiness heartbeat, the IP-key
//! backfill, pool usage and closing, and the migrations and backfill that
//! opening runs.

use sqlx::{
    ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Type,
    migrate::{Migrate, Migrator},
};

use super::opening::Opening as _;
use crate::attempt::{Micros, ip_key};

/// Rows a background pass (IP-key backfill) touches per statement, so no
/// statement holds locks for long.
const BACKFILL_BATCH: i64 = 1000;

/// The number of rows a statement changed: each driver has it as an
/// inherent method, and sqlx names no trait for it.
pub(super) trait RowsAffected {
    /// Rows changed.
    fn rows_affected(&self) -> u64;
}

impl RowsAffected for sqlx::sqlite::SqliteQueryResult {
    fn rows_affected(&self) -> u64 {
        self.rows_affected()
    }
}

impl RowsAffected for sqlx::postgres::PgQueryResult {
    fn rows_affected(&self) -> u64 {
        self.rows_affected()
    }
}

impl RowsAffected for sqlx::mysql::MySqlQueryResult {
    fn rows_affected(&self) -> u64 {
        self.rows_affected()
    }
}

/// A backend's statements for [`Pooled`], in its dialect.
#[derive(Debug)]
pub(super) struct UpkeepSql {
    /// Deletes up to the second parameter's number of rows that occurred
    /// before the first.
    pub(super) delete_before: &'static str,
    /// Up to the parameter's number of `(id, ip)` rows with no IP key yet.
    pub(super) missing_ip_keys: &'static str,
    /// Sets the IP key (first parameter) of the row with id the second.
    pub(super) set_ip_key: &'static str,
    /// Upserts the heartbeat row, written at the parameter (Unix seconds).
    pub(super) heartbeat: &'static str,
}

/// A backend's connection pool with its [`UpkeepSql`].
pub(super) struct Pooled<DB: Database> {
    /// Connection pool.
    pub(super) pool: Pool<DB>,
    /// The backend's upkeep statements.
    sql: &'static UpkeepSql,
}

// By hand, showing nothing of the connection: sqlx's connect options print
// their password in `Debug`, and every backend's derived `Debug` goes
// through this one.
impl<DB: Database> std::fmt::Debug for Pooled<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pooled").finish_non_exhaustive()
    }
}

// By hand: deriving would ask `DB: Clone` of the driver's marker type.
impl<DB: Database> Clone for Pooled<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            sql: self.sql,
        }
    }
}

impl<DB> Pooled<DB>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    DB::QueryResult: RowsAffected,
    DB::Connection: Migrate,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'t> i64: Encode<'t, DB> + Decode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Decode<'t, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    /// `pool` with the statements `sql`, once `migrator` has applied its
    /// pending migrations and rows stored before IP keys existed have
    /// theirs; errors name `url` as opening errors do.
    pub(super) async fn open(
        pool: Pool<DB>,
        migrator: &Migrator,
        sql: &'static UpkeepSql,
        url: &str,
    ) -> anyhow::Result<Self> {
        migrator.run(&pool).await.opening(url, "")?;
        let db = Self { pool, sql };
        db.backfill_ip_keys()
            .await
            .opening(url, "while filling in IP keys: ")?;
        Ok(db)
    }

    /// Deletes at most `batch` attempts that occurred before `cutoff`, in
    /// one statement, and returns how many went.
    pub(super) async fn delete_before(
        &self,
        cutoff: Micros,
        batch: i64,
    ) -> Result<u64, sqlx::Error> {
        let done = sqlx::query(self.sql.delete_before)
            .bind(cutoff)
            .bind(batch)
            .execute(&self.pool)
            .await?;
        Ok(RowsAffected::rows_affected(&done))
    }

    /// Computes `ip_key` for rows stored before it existed, a bounded batch
    /// per transaction; a no-op query once done.
    async fn backfill_ip_keys(&self) -> Result<(), sqlx::Error> {
        loop {
            let rows: Vec<(i64, String)> = sqlx::query_as(self.sql.missing_ip_keys)
                .bind(BACKFILL_BATCH)
                .fetch_all(&self.pool)
                .await?;
            if rows.is_empty() {
                return Ok(());
            }
            let mut tx = self.pool.begin().await?;
            for (id, ip) in rows {
                sqlx::query(self.sql.set_ip_key)
                    .bind(ip_key(&ip))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        }
    }

    /// Upserts the heartbeat row: a write, so a database that answers but
    /// refuses writes fails it.
    pub(super) async fn check_writable(&self, now: i64) -> Result<(), sqlx::Error> {
        sqlx::query(self.sql.heartbeat)
            .bind(now)
            .execute(&self.pool)
            .await
            .map(drop)
    }

    /// The pool's connections right now.
    pub(super) fn usage(&self) -> common::metrics::PoolUsage {
        common::metrics::PoolUsage {
            open: self.pool.size(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            max: self.pool.options().get_max_connections(),
        }
    }

    /// Closes the pool, letting SQLite checkpoint its WAL.
    pub(super) async fn close(&self) {
        self.pool.close().await;
    }
}

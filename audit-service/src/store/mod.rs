//! Storage of the log, one module per database backend.
//!
//! [`Store`] is an enum rather than a trait object: the set of backends is
//! closed and small, dispatch stays a plain `match`, and each backend keeps
//! its own SQL dialect and migrations.
//!
//! Layout (each module depends only on those listed before it):
//! - `opening`: connection limits and opening errors in an operator's words.
//! - `pooled`: what every backend does with its pool alike, in its own SQL
//!   (migrations and IP-key backfill on opening, retention deletes, the
//!   readiness heartbeat, pool usage), and a `Debug` without secrets.
//! - `listing`: a page's SQL (filters, keyset, order) and its row type.
//! - `counting`: attempts per time bucket, filtered by the listing's SQL.
//! - `insert`: the insert error, multi-row INSERTs and `IN`-list lookups.
//! - `suspicion`: the suspicious-activity rule and the queries applying it.
//! - `admin_events`: the admin-event table's insert and listing, generic
//!   over the backend (each gives its dialect).
//! - `sqlite`, `postgres` (with `pg_copy`), `mysql`: one module per backend,
//!   its connection options, dialect and insert path.

mod admin_events;
mod counting;
mod insert;
mod listing;
mod mysql;
mod opening;
mod pg_copy;
mod pooled;
mod postgres;
mod sqlite;
mod suspicion;

use listing::{IpPath, Keyset};

use std::collections::HashSet;

use crate::{
    admin_event::{AdminEventPage, AdminFilter, NewAdminEvent},
    attempt::{
        BucketCounts, CountQuery, Cursor, Filter, Micros, NewAttempt, Order, Page, StoredAttempt,
    },
};

pub use insert::InsertError;
pub use suspicion::SuspicionRule;

/// Which database engine a URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file (`sqlite:`).
    Sqlite,
    /// PostgreSQL server (`postgres:` or `postgresql:`).
    Postgres,
    /// MySQL or MariaDB server (`mysql:`).
    Mysql,
}

impl Backend {
    /// The backend named by the URL's scheme, or `None` when unsupported.
    pub fn from_url(url: &str) -> Option<Self> {
        let scheme = url.split_once(':')?.0.to_ascii_lowercase();
        match scheme.as_str() {
            "sqlite" => Some(Self::Sqlite),
            "postgres" | "postgresql" => Some(Self::Postgres),
            "mysql" => Some(Self::Mysql),
            _ => None,
        }
    }
}

/// The log database.
#[derive(Debug, Clone)]
pub enum Store {
    /// SQLite backend.
    Sqlite(sqlite::SqliteStore),
    /// PostgreSQL backend.
    Postgres(postgres::PgStore),
    /// MySQL/MariaDB backend.
    Mysql(mysql::MySqlStore),
}

impl Store {
    /// Connects, creating the database file for SQLite, and applies pending
    /// migrations.
    pub async fn connect(url: &str, rule: SuspicionRule) -> anyhow::Result<Self> {
        match Backend::from_url(url) {
            Some(Backend::Sqlite) => {
                Ok(Self::Sqlite(sqlite::SqliteStore::connect(url, rule).await?))
            }
            Some(Backend::Postgres) => {
                Ok(Self::Postgres(postgres::PgStore::connect(url, rule).await?))
            }
            Some(Backend::Mysql) => Ok(Self::Mysql(mysql::MySqlStore::connect(url, rule).await?)),
            None => anyhow::bail!(
                "AUDIT_DATABASE_URL: unsupported scheme (expected sqlite:, postgres:, postgresql: or mysql:)"
            ),
        }
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
            Self::Mysql(_) => Backend::Mysql,
        }
    }

    /// Stores producer batches, each in one transaction committed before
    /// returning, and returns the attempts that were new, as stored
    /// (duplicates by `event_id`, within the batches or from earlier, are
    /// skipped). `batch_ends` marks where each batch ends in `attempts`: a
    /// backend may spread the batches over transactions but never splits
    /// one.
    pub async fn insert_batch(
        &self,
        attempts: &[NewAttempt],
        batch_ends: &[usize],
    ) -> Result<Vec<StoredAttempt>, InsertError> {
        if attempts.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            Self::Sqlite(s) => Ok(s.insert_batch(attempts).await?),
            Self::Postgres(s) => s.insert_batch(attempts, batch_ends).await,
            Self::Mysql(s) => Ok(s.insert_batch(attempts).await?),
        }
    }

    /// Stores admin events in one transaction committed before returning;
    /// returns the event ids that were new (duplicates by `event_id`,
    /// within `events` or from earlier, are skipped).
    pub async fn insert_admin_events(
        &self,
        events: &[NewAdminEvent],
    ) -> Result<HashSet<String>, sqlx::Error> {
        match self {
            Self::Sqlite(s) => {
                admin_events::insert_admin_events(&s.db.pool, &sqlite::ADMIN, events).await
            }
            Self::Postgres(s) => {
                admin_events::insert_admin_events(&s.db.pool, &postgres::ADMIN, events).await
            }
            Self::Mysql(s) => {
                admin_events::insert_admin_events(&s.db.pool, &mysql::ADMIN, events).await
            }
        }
    }

    /// One page of admin events matching `filter` in `order`, starting
    /// after `cursor`.
    pub async fn list_admin_events(
        &self,
        filter: &AdminFilter,
        limit: u32,
        cursor: Option<Cursor>,
        order: Order,
    ) -> Result<AdminEventPage, sqlx::Error> {
        match self {
            Self::Sqlite(s) => {
                admin_events::list_admin_events(
                    &s.db.pool,
                    &sqlite::ADMIN,
                    filter,
                    limit,
                    cursor,
                    order,
                )
                .await
            }
            Self::Postgres(s) => {
                admin_events::list_admin_events(
                    &s.db.pool,
                    &postgres::ADMIN,
                    filter,
                    limit,
                    cursor,
                    order,
                )
                .await
            }
            Self::Mysql(s) => {
                admin_events::list_admin_events(
                    &s.db.pool,
                    &mysql::ADMIN,
                    filter,
                    limit,
                    cursor,
                    order,
                )
                .await
            }
        }
    }

    /// Deletes at most `batch` attempts that occurred before `cutoff`, in
    /// one short statement, and returns how many went.
    pub async fn delete_before(&self, cutoff: Micros, batch: u32) -> Result<u64, sqlx::Error> {
        let batch = i64::from(batch);
        match self {
            Self::Sqlite(s) => s.db.delete_before(cutoff, batch).await,
            Self::Postgres(s) => s.db.delete_before(cutoff, batch).await,
            Self::Mysql(s) => s.db.delete_before(cutoff, batch).await,
        }
    }

    /// One page of attempts matching `filter` in `order`, starting after
    /// `cursor`.
    pub async fn list(
        &self,
        filter: &Filter,
        limit: u32,
        cursor: Option<Cursor>,
        order: Order,
    ) -> Result<Page, sqlx::Error> {
        let fetch = limit + 1;
        let page = listing::PageQuery {
            filter,
            fetch,
            cursor,
            order,
        };
        let rows = match self {
            // A page as one JSON value, and its own path to an IP range.
            Self::Sqlite(s) => s.list(&page).await?,
            Self::Postgres(s) => {
                listing::fetch_rows(&s.db.pool, postgres::SELECT, Keyset::RowValue, &page).await?
            }
            Self::Mysql(s) => {
                listing::fetch_rows(&s.db.pool, mysql::SELECT, Keyset::Expanded, &page).await?
            }
        };
        Ok(listing::page_from_rows(rows, limit))
    }

    /// The attempts of each bucket of `query` that holds any, by bucket
    /// index (0 is the bucket starting at `query.origin`), in index order.
    pub async fn count(&self, query: &CountQuery) -> Result<Vec<(i64, BucketCounts)>, sqlx::Error> {
        match self {
            Self::Sqlite(s) => s.count(query).await,
            Self::Postgres(s) => s.count(query).await,
            Self::Mysql(s) => {
                counting::fetch_counts(&s.db.pool, &counting::MYSQL, query, IpPath::Planner).await
            }
        }
    }

    /// A write (the heartbeat row, at `now` in Unix seconds), for readiness
    /// and the start-up check: reads alone would pass on a database that
    /// refuses every insert.
    pub async fn check_writable(&self, now: i64) -> Result<(), sqlx::Error> {
        match self {
            Self::Sqlite(s) => s.db.check_writable(now).await,
            Self::Postgres(s) => s.db.check_writable(now).await,
            Self::Mysql(s) => s.db.check_writable(now).await,
        }
    }

    /// The pool's connections right now, for the metrics endpoint.
    pub fn pool_usage(&self) -> common::metrics::PoolUsage {
        match self {
            Self::Sqlite(s) => s.db.usage(),
            Self::Postgres(s) => s.db.usage(),
            Self::Mysql(s) => s.db.usage(),
        }
    }

    /// Closes the pool, letting SQLite checkpoint its WAL.
    pub async fn close(&self) {
        match self {
            Self::Sqlite(s) => s.db.close().await,
            Self::Postgres(s) => s.db.close().await,
            Self::Mysql(s) => s.db.close().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_are_chosen_by_scheme() {
        assert_eq!(Backend::from_url("sqlite://x.db"), Some(Backend::Sqlite));
        assert_eq!(Backend::from_url("sqlite::memory:"), Some(Backend::Sqlite));
        assert_eq!(Backend::from_url("postgres://h/d"), Some(Backend::Postgres));
        assert_eq!(
            Backend::from_url("PostgreSQL://h/d"),
            Some(Backend::Postgres)
        );
        assert_eq!(Backend::from_url("mysql://h/d"), Some(Backend::Mysql));
        assert_eq!(Backend::from_url("mongodb://h/d"), None);
        assert_eq!(Backend::from_url("data/audit.db"), None);
    }
}

//! Storage of the log, one module per database backend.
//!
//! [`Store`] is an enum rather than a trait object: the set of backends is
//! closed and small, dispatch stays a plain `match`, and each backend keeps
//! its own SQL dialect and migrations.

mod mysql;
mod postgres;
mod sqlite;

use std::time::Duration;

use sqlx::{Database, Encode, QueryBuilder, Type};

use crate::attempt::{Cursor, Filter, Micros, NewAttempt, Page, StoredAttempt};

pub(crate) use crate::attempt::ip_key;

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

/// The suspicious-activity rule: a failed attempt is flagged when, counting
/// itself, `threshold` failures from the same IP or the same email fall in
/// the `window` ending at its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuspicionRule {
    /// Failures (including the one being judged) that trigger the flag.
    pub threshold: u32,
    /// How far back failures count.
    pub window: Duration,
}

impl SuspicionRule {
    /// The rule with the standard one-hour window.
    pub fn per_hour(threshold: u32) -> Self {
        Self {
            threshold,
            window: Duration::from_secs(3600),
        }
    }

    /// How many *earlier* failures flag an attempt (the attempt itself is
    /// the last of `threshold`).
    fn others_needed(&self) -> i64 {
        i64::from(self.threshold.saturating_sub(1))
    }

    /// Start of the window for an attempt at `at`.
    fn window_start(&self, at: Micros) -> Micros {
        let window = i64::try_from(self.window.as_micros()).unwrap_or(i64::MAX);
        at.saturating_sub(window)
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

/// Rows a background pass (IP-key backfill) touches per statement, so no
/// statement holds locks for long.
const BACKFILL_BATCH: i64 = 1000;

/// How long a request waits for a pooled connection before failing, so an
/// unreachable database surfaces as `unavailable` instead of a hang.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

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

    /// Stores a batch in one transaction, committed before returning, and
    /// returns the attempts that were new, as stored (duplicates by
    /// `event_id`, within the batch or from earlier, are skipped).
    pub async fn insert_batch(
        &self,
        attempts: &[NewAttempt],
    ) -> Result<Vec<StoredAttempt>, sqlx::Error> {
        if attempts.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            Self::Sqlite(s) => s.insert_batch(attempts).await,
            Self::Postgres(s) => s.insert_batch(attempts).await,
            Self::Mysql(s) => s.insert_batch(attempts).await,
        }
    }

    /// Deletes at most `batch` attempts that occurred before `cutoff`, in
    /// one short statement, and returns how many went.
    pub async fn delete_before(&self, cutoff: Micros, batch: u32) -> Result<u64, sqlx::Error> {
        let batch = i64::from(batch);
        match self {
            Self::Sqlite(s) => s.delete_before(cutoff, batch).await,
            Self::Postgres(s) => s.delete_before(cutoff, batch).await,
            Self::Mysql(s) => s.delete_before(cutoff, batch).await,
        }
    }

    /// One page of attempts matching `filter`, newest first, starting after
    /// `cursor`.
    pub async fn list(
        &self,
        filter: &Filter,
        limit: u32,
        cursor: Option<Cursor>,
    ) -> Result<Page, sqlx::Error> {
        let rows = match self {
            Self::Sqlite(s) => s.list(filter, limit + 1, cursor).await?,
            Self::Postgres(s) => s.list(filter, limit + 1, cursor).await?,
            Self::Mysql(s) => s.list(filter, limit + 1, cursor).await?,
        };
        Ok(page_from_rows(rows, limit))
    }

    /// Closes the pool, letting SQLite checkpoint its WAL.
    pub async fn close(&self) {
        match self {
            Self::Sqlite(s) => s.close().await,
            Self::Postgres(s) => s.close().await,
            Self::Mysql(s) => s.close().await,
        }
    }
}

/// Splits `limit + 1` fetched rows into a page and, when the extra row
/// exists, the cursor after the page's last row.
fn page_from_rows(rows: Vec<AttemptRow>, limit: u32) -> Page {
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

/// How a backend compares the keyset position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keyset {
    /// `(occurred_at, id) < (?, ?)`: SQLite and PostgreSQL seek on it.
    RowValue,
    /// The same spelled out, which MySQL/MariaDB turn into an index range
    /// (they do not for row values).
    Expanded,
}

/// Appends the listing's filters, keyset position, order and limit to a
/// query that ends in a `WHERE` clause. Shared by every backend: values are
/// only ever bound, and every filter column leads an `(x, occurred_at, id)`
/// index, so each engine seeks instead of scanning.
fn push_listing<DB>(
    qb: &mut QueryBuilder<DB>,
    filter: &Filter,
    cursor: Option<Cursor>,
    fetch: u32,
    keyset: Keyset,
) where
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
            qb.push(" AND ip_key BETWEEN ")
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
    if let Some(suspicious) = filter.suspicious {
        qb.push(" AND suspicious = ").push_bind(suspicious);
    }
    if let Some(since) = filter.since {
        qb.push(" AND occurred_at >= ").push_bind(since);
    }
    if let Some(until) = filter.until {
        qb.push(" AND occurred_at < ").push_bind(until);
    }
    if let Some(c) = cursor {
        match keyset {
            Keyset::RowValue => {
                qb.push(" AND (occurred_at, id) < (")
                    .push_bind(c.occurred_at)
                    .push(", ")
                    .push_bind(c.id)
                    .push(")");
            }
            Keyset::Expanded => {
                qb.push(" AND occurred_at <= ")
                    .push_bind(c.occurred_at)
                    .push(" AND (occurred_at < ")
                    .push_bind(c.occurred_at)
                    .push(" OR id < ")
                    .push_bind(c.id)
                    .push(")");
            }
        }
    }
    qb.push(" ORDER BY occurred_at DESC, id DESC LIMIT ")
        .push_bind(i64::from(fetch));
}

/// The columns every backend selects, in its own dialect, for a listing.
#[derive(Debug, sqlx::FromRow)]
struct AttemptRow {
    id: i64,
    event_id: String,
    occurred_at: i64,
    identifier: String,
    user_id: Option<i64>,
    username: Option<String>,
    email: String,
    email_lower: String,
    successful: bool,
    reject_reason: String,
    ip: String,
    user_agent: Option<String>,
    request_id: String,
    suspicious: bool,
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
                ip: r.ip,
                user_agent: r.user_agent,
                request_id: r.request_id,
            },
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

    #[test]
    fn the_rule_counts_the_attempt_itself() {
        assert_eq!(SuspicionRule::per_hour(10).others_needed(), 9);
        assert_eq!(SuspicionRule::per_hour(1).others_needed(), 0);
        assert_eq!(SuspicionRule::per_hour(1).window_start(3_600_000_001), 1);
    }
}

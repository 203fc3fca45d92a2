//! SQLite backend: one file, WAL mode, writes serialised by the engine.

use std::{str::FromStr, time::Duration};

use sqlx::{
    QueryBuilder, Sqlite, SqliteConnection,
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
    },
};

use super::{
    ACQUIRE_TIMEOUT, AttemptRow, BACKFILL_BATCH, Keyset, SuspicionRule, ip_key, push_listing,
};
use crate::attempt::{Cursor, Filter, NewAttempt, StoredAttempt};

/// How long a writer waits for another writer's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const INSERT: &str = "INSERT INTO login_attempts \
    (event_id, occurred_at, identifier, user_id, username, email, email_lower, \
     successful, reject_reason, ip, user_agent, request_id, suspicious, ip_key) \
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
    ON CONFLICT (event_id) DO NOTHING RETURNING id";

const DELETE_BEFORE: &str = "DELETE FROM login_attempts WHERE id IN \
    (SELECT id FROM login_attempts WHERE occurred_at < ? LIMIT ?)";
const MISSING_IP_KEYS: &str = "SELECT id, ip FROM login_attempts WHERE ip_key IS NULL LIMIT ?";
const SET_IP_KEY: &str = "UPDATE login_attempts SET ip_key = ? WHERE id = ?";

// Counting stops at the threshold (LIMIT), so a flood from one IP costs no
// more than the rule needs.
const RECENT_IP_FAILURES: &str = "SELECT COUNT(*) FROM (SELECT 1 FROM login_attempts \
    WHERE ip = ? AND occurred_at > ? AND occurred_at <= ? AND NOT successful LIMIT ?)";
const RECENT_EMAIL_FAILURES: &str = "SELECT COUNT(*) FROM (SELECT 1 FROM login_attempts \
    WHERE email_lower = ? AND occurred_at > ? AND occurred_at <= ? AND NOT successful LIMIT ?)";

const SELECT: &str = "SELECT id, event_id, occurred_at, identifier, user_id, username, email, \
    email_lower, successful, reject_reason, ip, user_agent, request_id, suspicious \
    FROM login_attempts WHERE 1 = 1";

/// The SQLite log database.
#[derive(Clone)]
pub struct SqliteStore {
    /// Connection pool; readers run concurrently under WAL.
    pool: SqlitePool,
    /// The suspicious-activity rule applied at ingest.
    rule: SuspicionRule,
}

// By hand, as for PostgreSQL: the pool's own `Debug` dumps all its options.
impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("rule", &self.rule)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating file and parent directory if missing) and migrates.
    pub(super) async fn connect(url: &str, rule: SuspicionRule) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let options = SqliteConnectOptions::from_str(url)
            .context("AUDIT_DATABASE_URL is not a valid SQLite URL")?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: an ack promises durability, even across power loss.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT);
        if let Some(dir) = options.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            tokio::fs::create_dir_all(dir)
                .await
                .with_context(|| format!("cannot create directory {}", dir.display()))?;
        }
        let pool = SqlitePoolOptions::new()
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .context("cannot open the SQLite log database")?;
        sqlx::migrate!("migrations/sqlite")
            .run(&pool)
            .await
            .context("cannot migrate the SQLite log database")?;
        let store = Self { pool, rule };
        store
            .backfill_ip_keys()
            .await
            .context("cannot fill in IP keys of the SQLite log database")?;
        Ok(store)
    }

    pub(super) async fn insert_batch(
        &self,
        attempts: &[NewAttempt],
    ) -> Result<Vec<StoredAttempt>, sqlx::Error> {
        // IMMEDIATE takes the write lock up front: this transaction reads (the
        // suspicious counts) before it writes, and a deferred one upgrading
        // from reader to writer fails with SQLITE_BUSY despite busy_timeout.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut inserted = Vec::new();
        for a in attempts {
            let suspicious = is_suspicious(&mut tx, self.rule, a).await?;
            let id: Option<i64> = sqlx::query_scalar(INSERT)
                .bind(&a.event_id)
                .bind(a.occurred_at)
                .bind(&a.identifier)
                .bind(a.user_id)
                .bind(&a.username)
                .bind(&a.email)
                .bind(&a.email_lower)
                .bind(a.successful)
                .bind(&a.reject_reason)
                .bind(&a.ip)
                .bind(&a.user_agent)
                .bind(&a.request_id)
                .bind(suspicious)
                .bind(ip_key(&a.ip))
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(id) = id {
                inserted.push(StoredAttempt {
                    id,
                    suspicious,
                    attempt: a.clone(),
                });
            }
        }
        tx.commit().await?;
        Ok(inserted)
    }

    pub(super) async fn list(
        &self,
        filter: &Filter,
        fetch: u32,
        cursor: Option<Cursor>,
    ) -> Result<Vec<AttemptRow>, sqlx::Error> {
        let mut qb = QueryBuilder::<Sqlite>::new(SELECT);
        push_listing(&mut qb, filter, cursor, fetch, Keyset::RowValue);
        qb.build_query_as::<AttemptRow>()
            .fetch_all(&self.pool)
            .await
    }

    pub(super) async fn delete_before(&self, cutoff: i64, batch: i64) -> Result<u64, sqlx::Error> {
        let done = sqlx::query(DELETE_BEFORE)
            .bind(cutoff)
            .bind(batch)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Computes `ip_key` for rows stored before it existed, a bounded batch
    /// per transaction; a no-op query once done.
    async fn backfill_ip_keys(&self) -> Result<(), sqlx::Error> {
        loop {
            let rows: Vec<(i64, String)> = sqlx::query_as(MISSING_IP_KEYS)
                .bind(BACKFILL_BATCH)
                .fetch_all(&self.pool)
                .await?;
            if rows.is_empty() {
                return Ok(());
            }
            let mut tx = self.pool.begin().await?;
            for (id, ip) in rows {
                sqlx::query(SET_IP_KEY)
                    .bind(ip_key(&ip))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        }
    }

    pub(super) async fn close(&self) {
        self.pool.close().await;
    }
}

/// Applies the rule to `a` against the failures already stored (including
/// earlier rows of the same, still open, transaction).
async fn is_suspicious(
    conn: &mut SqliteConnection,
    rule: SuspicionRule,
    a: &NewAttempt,
) -> Result<bool, sqlx::Error> {
    if a.successful {
        return Ok(false);
    }
    let needed = rule.others_needed();
    if needed == 0 {
        return Ok(true);
    }
    let from = rule.window_start(a.occurred_at);
    // An empty IP or email means "unknown"; unknowns are not one client.
    for (sql, key) in [
        (RECENT_IP_FAILURES, &a.ip),
        (RECENT_EMAIL_FAILURES, &a.email_lower),
    ] {
        if key.is_empty() {
            continue;
        }
        let failures: i64 = sqlx::query_scalar(sql)
            .bind(key)
            .bind(from)
            .bind(a.occurred_at)
            .bind(needed)
            .fetch_one(&mut *conn)
            .await?;
        if failures >= needed {
            return Ok(true);
        }
    }
    Ok(false)
}

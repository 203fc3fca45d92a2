//! SQLite backend: one file, WAL mode, writes serialised by the engine.

use std::{
    collections::{HashMap, HashSet},
    str::FromStr,
    time::Duration,
};

use sqlx::{
    Sqlite,
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
    },
};

use super::{
    ACQUIRE_TIMEOUT, AttemptRow, BACKFILL_BATCH, Judge, KeyKind, Keyset, SuspicionRule, in_queries,
    insert_queries, ip_key, push_listing, stored_attempts,
};
use crate::attempt::{Cursor, Filter, NewAttempt, StoredAttempt};

/// How long a writer waits for another writer's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const EXISTING: &str = "SELECT event_id FROM login_attempts WHERE event_id IN (";
const ON_CONFLICT: &str = " ON CONFLICT (event_id) DO NOTHING RETURNING id, event_id";

const DELETE_BEFORE: &str = "DELETE FROM login_attempts WHERE id IN \
    (SELECT id FROM login_attempts WHERE occurred_at < ? LIMIT ?)";
const MISSING_IP_KEYS: &str = "SELECT id, ip FROM login_attempts WHERE ip_key IS NULL LIMIT ?";
const SET_IP_KEY: &str = "UPDATE login_attempts SET ip_key = ? WHERE id = ?";

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
            .busy_timeout(BUSY_TIMEOUT)
            // A 64 MiB page cache (default 2 MiB) and a checkpoint every
            // 64 MiB of WAL (default 4 MiB): a batch dirties pages of a dozen
            // indexes, and small ones made every commit re-read pages and
            // checkpoint.
            .pragma("cache_size", "-65536")
            .pragma("wal_autocheckpoint", "16384");
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
        let event_ids: Vec<&str> = attempts.iter().map(|a| a.event_id.as_str()).collect();
        let mut stored = HashSet::new();
        for mut qb in in_queries::<Sqlite>(EXISTING, &event_ids, "") {
            stored.extend(
                qb.build_query_scalar::<String>()
                    .fetch_all(&mut *tx)
                    .await?,
            );
        }
        let mut judge = Judge::new(self.rule, attempts, &stored);
        if judge.is_empty() {
            return Ok(Vec::new());
        }
        for kind in KeyKind::ALL {
            for mut qb in judge.count_queries::<Sqlite>(kind) {
                let counts = qb.build_query_as().fetch_all(&mut *tx).await?;
                judge.add_counts(kind, counts);
            }
        }
        let mut rows = Vec::new();
        for (i, verdict) in judge.verdicts() {
            rows.push((&attempts[i], settle(&mut tx, verdict).await?));
        }
        let mut ids = HashMap::new();
        for mut qb in insert_queries::<Sqlite>(&rows, "") {
            qb.push(ON_CONFLICT);
            let new: Vec<(i64, String)> = qb.build_query_as().fetch_all(&mut *tx).await?;
            ids.extend(new.into_iter().map(|(id, event_id)| (event_id, id)));
        }

        tx.commit().await?;
        Ok(stored_attempts(&rows, &ids))
    }

    /// Re-analyzes tables whose size changed a lot since their last
    /// analysis, with a bounded sample (see `statistics`). The pool's other
    /// connections see the new statistics at their next statement.
    pub(super) async fn refresh_statistics(&self) -> Result<(), sqlx::Error> {
        sqlx::raw_sql("PRAGMA optimize=0x10002")
            .execute(&self.pool)
            .await
            .map(drop)
    }
}

super::shared::shared_backend_ops!(SqliteStore, sqlx::Sqlite, Keyset::RowValue);

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(i: u32) -> NewAttempt {
        let ip = format!("10.0.{}.{}", i / 256 % 256, i % 256);
        NewAttempt {
            event_id: uuid::Uuid::now_v7().to_string(),
            occurred_at: i64::from(i),
            identifier: format!("user{i}@example.com"),
            user_id: None,
            username: None,
            email: format!("user{i}@example.com"),
            email_lower: format!("user{i}@example.com"),
            successful: i.is_multiple_of(2),
            reject_reason: if i.is_multiple_of(2) { "" } else { "bad_password" }.to_owned(),
            ip_key: ip_key(&ip),
            ip,
            user_agent: None,
            request_id: String::new(),
        }
    }

    #[tokio::test]
    async fn refreshing_statistics_analyzes_a_grown_log() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("audit.db").display());
        let store = SqliteStore::connect(&url, SuspicionRule::per_hour(10))
            .await
            .unwrap();
        let batch: Vec<NewAttempt> = (0..2_000).map(attempt).collect();
        store.insert_batch(&batch).await.unwrap();
        let stats = "SELECT COUNT(*) FROM sqlite_stat1 WHERE tbl = 'login_attempts'";
        let before: i64 = sqlx::query_scalar(stats)
            .fetch_one(&store.pool)
            .await
            .unwrap_or(0);

        store.refresh_statistics().await.unwrap();

        let after: i64 = sqlx::query_scalar(stats)
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(before, 0, "no statistics before the refresh");
        assert!(after > 0, "the refresh analyzed the log's indexes");
    }
}

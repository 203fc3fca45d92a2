//! MySQL/MariaDB backend, for operators whose shared database is one of
//! those.

use sqlx::{
    MySql, MySqlConnection, QueryBuilder,
    mysql::{MySqlPool, MySqlPoolOptions},
};

use super::{
    ACQUIRE_TIMEOUT, AttemptRow, BACKFILL_BATCH, Keyset, SuspicionRule, ip_key, push_listing,
};
use crate::attempt::{Cursor, Filter, NewAttempt, StoredAttempt};

/// Pool size per replica, as for PostgreSQL.
const MAX_CONNECTIONS: u32 = 10;

/// Whether an attempt is already stored. A plain consistent read, not a
/// locking one: locking a missing key takes a gap lock, and two producers
/// doing so would deadlock. The insert below stays idempotent on its own.
const EXISTS: &str = "SELECT COUNT(*) FROM login_attempts WHERE event_id = ?";

// `ON DUPLICATE KEY UPDATE` on the unique key only, where `INSERT IGNORE`
// would also turn other errors (a value too long, a NULL) into warnings and
// silently store something else. A duplicate that slipped in between the
// check above and this insert (a concurrent producer) is absorbed here.
const INSERT: &str = "INSERT INTO login_attempts \
    (event_id, occurred_at, identifier, user_id, username, email, email_lower, \
     successful, reject_reason, ip, user_agent, request_id, suspicious, ip_key) \
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
    ON DUPLICATE KEY UPDATE event_id = event_id";

// Counting stops at the threshold (LIMIT), so a flood from one IP costs no
// more than the rule needs.
const RECENT_IP_FAILURES: &str = "SELECT COUNT(*) FROM (SELECT 1 FROM login_attempts \
    WHERE ip = ? AND occurred_at > ? AND occurred_at <= ? AND NOT successful LIMIT ?) AS recent";
const RECENT_EMAIL_FAILURES: &str = "SELECT COUNT(*) FROM (SELECT 1 FROM login_attempts \
    WHERE email_lower = ? AND occurred_at > ? AND occurred_at <= ? AND NOT successful LIMIT ?) AS recent";

const SELECT: &str = "SELECT id, event_id, occurred_at, identifier, user_id, username, email, \
    email_lower, successful, reject_reason, ip, user_agent, request_id, suspicious \
    FROM login_attempts WHERE TRUE";

// MySQL allows ORDER BY/LIMIT on a single-table DELETE (not LIMIT in a
// subquery), and the order walks the time index from the oldest row.
const DELETE_BEFORE: &str =
    "DELETE FROM login_attempts WHERE occurred_at < ? ORDER BY occurred_at, id LIMIT ?";
const MISSING_IP_KEYS: &str = "SELECT id, ip FROM login_attempts WHERE ip_key IS NULL LIMIT ?";
const SET_IP_KEY: &str = "UPDATE login_attempts SET ip_key = ? WHERE id = ?";

/// The MySQL/MariaDB log database.
#[derive(Clone)]
pub struct MySqlStore {
    /// Connection pool.
    pool: MySqlPool,
    /// The suspicious-activity rule applied at ingest.
    rule: SuspicionRule,
}

// By hand: the pool's own `Debug` shows its connect options, password included.
impl std::fmt::Debug for MySqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MySqlStore")
            .field("rule", &self.rule)
            .finish_non_exhaustive()
    }
}

impl MySqlStore {
    /// Connects and migrates (sqlx serialises concurrent migrators with a
    /// named lock, so replicas may start together).
    pub(super) async fn connect(url: &str, rule: SuspicionRule) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let pool = MySqlPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await
            .context("cannot connect to the MySQL log database")?;
        sqlx::migrate!("migrations/mysql")
            .run(&pool)
            .await
            .context("cannot migrate the MySQL log database")?;
        let store = Self { pool, rule };
        store
            .backfill_ip_keys()
            .await
            .context("cannot fill in IP keys of the MySQL log database")?;
        Ok(store)
    }

    pub(super) async fn insert_batch(
        &self,
        attempts: &[NewAttempt],
    ) -> Result<Vec<StoredAttempt>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let mut inserted = Vec::new();
        for a in attempts {
            let existing: i64 = sqlx::query_scalar(EXISTS)
                .bind(&a.event_id)
                .fetch_one(&mut *tx)
                .await?;
            if existing > 0 {
                continue;
            }
            let suspicious = is_suspicious(&mut tx, self.rule, a).await?;
            let done = sqlx::query(INSERT)
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
                .execute(&mut *tx)
                .await?;
            // A fresh row reports its AUTO_INCREMENT id; a duplicate that
            // raced in (the update branch) reports none.
            let id = i64::try_from(done.last_insert_id()).unwrap_or(0);
            if id > 0 {
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
        let mut qb = QueryBuilder::<MySql>::new(SELECT);
        push_listing(&mut qb, filter, cursor, fetch, Keyset::Expanded);
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

    /// Computes `ip_key` for rows that lack it, a bounded batch per
    /// transaction (none on this backend today; kept for parity).
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

/// Applies the rule to `a` against the failures visible to this transaction
/// (committed ones plus earlier rows of this batch), as on PostgreSQL.
async fn is_suspicious(
    conn: &mut MySqlConnection,
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

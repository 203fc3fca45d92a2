//! PostgreSQL backend: the shared engine when the service runs as replicas.

use sqlx::{
    PgConnection, Postgres, QueryBuilder,
    postgres::{PgPool, PgPoolOptions},
};

use super::{
    ACQUIRE_TIMEOUT, AttemptRow, BACKFILL_BATCH, Keyset, SuspicionRule, ip_key, push_listing,
};
use crate::attempt::{Cursor, Filter, NewAttempt, StoredAttempt};

/// Pool size per replica; ingest is one transaction per batch and listing is
/// an admin action, so a handful of connections is plenty.
const MAX_CONNECTIONS: u32 = 10;

const INSERT: &str = "INSERT INTO login_attempts \
    (event_id, occurred_at, identifier, user_id, username, email, email_lower, \
     successful, reject_reason, ip, user_agent, request_id, suspicious, ip_key) \
    VALUES ($1::uuid, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
    ON CONFLICT (event_id) DO NOTHING RETURNING id";

const DELETE_BEFORE: &str = "DELETE FROM login_attempts WHERE id IN \
    (SELECT id FROM login_attempts WHERE occurred_at < $1 LIMIT $2)";
const MISSING_IP_KEYS: &str = "SELECT id, ip FROM login_attempts WHERE ip_key IS NULL LIMIT $1";
const SET_IP_KEY: &str = "UPDATE login_attempts SET ip_key = $1 WHERE id = $2";

// Counting stops at the threshold (LIMIT), so a flood from one IP costs no
// more than the rule needs.
const RECENT_IP_FAILURES: &str = "SELECT COUNT(*) FROM (SELECT 1 FROM login_attempts \
    WHERE ip = $1 AND occurred_at > $2 AND occurred_at <= $3 AND NOT successful LIMIT $4) AS recent";
const RECENT_EMAIL_FAILURES: &str = "SELECT COUNT(*) FROM (SELECT 1 FROM login_attempts \
    WHERE email_lower = $1 AND occurred_at > $2 AND occurred_at <= $3 AND NOT successful LIMIT $4) AS recent";

const SELECT: &str = "SELECT id, event_id::text AS event_id, occurred_at, identifier, user_id, \
    username, email, email_lower, successful, reject_reason, ip, user_agent, request_id, \
    suspicious FROM login_attempts WHERE TRUE";

/// The PostgreSQL log database.
#[derive(Clone)]
pub struct PgStore {
    /// Connection pool.
    pool: PgPool,
    /// The suspicious-activity rule applied at ingest.
    rule: SuspicionRule,
}

// By hand: the pool's own `Debug` shows its connect options, password included.
impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("rule", &self.rule)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects and migrates (sqlx serialises concurrent migrators with an
    /// advisory lock, so replicas may start together).
    pub(super) async fn connect(url: &str, rule: SuspicionRule) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await
            .context("cannot connect to the PostgreSQL log database")?;
        sqlx::migrate!("migrations/postgres")
            .run(&pool)
            .await
            .context("cannot migrate the PostgreSQL log database")?;
        let store = Self { pool, rule };
        store
            .backfill_ip_keys()
            .await
            .context("cannot fill in IP keys of the PostgreSQL log database")?;
        Ok(store)
    }

    pub(super) async fn insert_batch(
        &self,
        attempts: &[NewAttempt],
    ) -> Result<Vec<StoredAttempt>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
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
        let mut qb = QueryBuilder::<Postgres>::new(SELECT);
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

/// Applies the rule to `a` against the failures visible to this transaction
/// (committed ones plus earlier rows of this batch). Under READ COMMITTED two
/// producers committing at the same instant may not see each other's rows;
/// the flag is a heuristic, so that is accepted rather than serialising
/// every ingest.
async fn is_suspicious(
    conn: &mut PgConnection,
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

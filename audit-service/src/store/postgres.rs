//! PostgreSQL backend: the shared engine when the service runs as replicas.

use sqlx::{
    Postgres,
    postgres::{PgPool, PgPoolOptions},
};

use super::{
    ACQUIRE_TIMEOUT, AttemptRow, BACKFILL_BATCH, Judge, KeyKind, Keyset, SuspicionRule, ip_key,
    push_listing, stored_attempts,
};
use std::collections::{HashMap, HashSet};

use crate::attempt::{Cursor, Filter, NewAttempt, StoredAttempt};

/// Pool size per replica; ingest is one transaction per batch and listing is
/// an admin action, so a handful of connections is plenty.
const MAX_CONNECTIONS: u32 = 10;

const EXISTING: &str =
    "SELECT event_id::text FROM login_attempts WHERE event_id = ANY($1::text[]::uuid[])";
const INSERT: &str = "INSERT INTO login_attempts \
    (event_id, occurred_at, identifier, user_id, username, email, email_lower, \
     successful, reject_reason, ip, user_agent, request_id, suspicious, ip_key) \
    SELECT e::uuid, o, i, u, n, m, ml, s, r, ip, ua, rq, su, k FROM UNNEST( \
     $1::text[], $2::int8[], $3::text[], $4::int8[], $5::text[], $6::text[], $7::text[], \
     $8::bool[], $9::text[], $10::text[], $11::text[], $12::text[], $13::bool[], $14::text[]) \
     AS t(e, o, i, u, n, m, ml, s, r, ip, ua, rq, su, k) \
    ON CONFLICT (event_id) DO NOTHING RETURNING id, event_id::text";

const DELETE_BEFORE: &str = "DELETE FROM login_attempts WHERE id IN \
    (SELECT id FROM login_attempts WHERE occurred_at < $1 LIMIT $2)";
const MISSING_IP_KEYS: &str = "SELECT id, ip FROM login_attempts WHERE ip_key IS NULL LIMIT $1";
const SET_IP_KEY: &str = "UPDATE login_attempts SET ip_key = $1 WHERE id = $2";

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
        let event_ids: Vec<String> = attempts.iter().map(|a| a.event_id.clone()).collect();
        let stored: HashSet<String> = sqlx::query_scalar(EXISTING)
            .bind(event_ids)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
        let mut judge = Judge::new(self.rule, attempts, &stored);
        if judge.is_empty() {
            return Ok(Vec::new());
        }
        for kind in KeyKind::ALL {
            for mut qb in judge.count_queries::<Postgres>(kind) {
                let counts = qb.build_query_as().fetch_all(&mut *tx).await?;
                judge.add_counts(kind, counts);
            }
        }
        let mut rows = Vec::new();
        for (i, verdict) in judge.verdicts() {
            rows.push((&attempts[i], settle(&mut tx, verdict).await?));
        }
        // One statement of 14 array parameters, whatever the batch size.
        let col = |f: fn(&NewAttempt) -> String| rows.iter().map(|(a, _)| f(a)).collect::<Vec<_>>();
        let new: Vec<(i64, String)> = sqlx::query_as(INSERT)
            .bind(col(|a| a.event_id.clone()))
            .bind(rows.iter().map(|(a, _)| a.occurred_at).collect::<Vec<_>>())
            .bind(col(|a| a.identifier.clone()))
            .bind(rows.iter().map(|(a, _)| a.user_id).collect::<Vec<_>>())
            .bind(
                rows.iter()
                    .map(|(a, _)| a.username.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(col(|a| a.email.clone()))
            .bind(col(|a| a.email_lower.clone()))
            .bind(rows.iter().map(|(a, _)| a.successful).collect::<Vec<_>>())
            .bind(col(|a| a.reject_reason.clone()))
            .bind(col(|a| a.ip.clone()))
            .bind(
                rows.iter()
                    .map(|(a, _)| a.user_agent.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(col(|a| a.request_id.clone()))
            .bind(rows.iter().map(|(_, s)| *s).collect::<Vec<_>>())
            .bind(col(|a| a.ip_key.clone()))
            .fetch_all(&mut *tx)
            .await?;
        let ids: HashMap<String, i64> = new
            .into_iter()
            .map(|(id, event_id)| (event_id, id))
            .collect();
        tx.commit().await?;
        Ok(stored_attempts(&rows, &ids))
    }
}

super::shared::shared_backend_ops!(PgStore, sqlx::Postgres, Keyset::RowValue);

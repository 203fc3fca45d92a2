//! Signing keys, and the readiness write check.

use sqlx::{ColumnIndex, Executor};

use super::{Backend, Param, Value};
use crate::store::{SigningKeyRow, SqlStore, StoreError};

impl<DB> SqlStore<DB>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    i64: Value<DB>,
    i32: Value<DB>,
    bool: Value<DB>,
    String: Value<DB>,
    Option<String>: Value<DB>,
    Vec<u8>: Value<DB>,
    for<'a> &'a str: Param<DB>,
    for<'a> &'a [u8]: Param<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
{
    pub(super) async fn signing_keys(&self) -> Result<Vec<SigningKeyRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT kid, secret, created_at, not_before, alg, supersedes FROM signing_keys \
             ORDER BY not_before DESC, created_at DESC, kid DESC",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    pub(super) async fn add_signing_key(&self, key: &SigningKeyRow) -> Result<bool, StoreError> {
        let mut conn = self.write().await?;
        // One statement: the unique index on `supersedes` decides between
        // replicas adding a key on the same state, on both engines.
        let done = sqlx::query(
            "INSERT INTO signing_keys (kid, secret, created_at, not_before, alg, supersedes) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (supersedes) DO NOTHING",
        )
        .bind(&key.kid)
        .bind(&key.secret)
        .bind(key.created_at)
        .bind(key.not_before)
        .bind(key.alg.name())
        .bind(key.supersedes.clone())
        .execute(&mut *conn)
        .await?;
        Ok(DB::rows_affected(&done) == 1)
    }

    pub(super) async fn check_writable(&self, now: i64) -> Result<(), StoreError> {
        // On the connection every write uses (SQLite's single
        // writer): that is the one that must be able to write.
        let mut conn = self.write().await?;
        sqlx::query(
            "INSERT INTO readiness_heartbeat (id, written_at) VALUES (1, $1) \
                     ON CONFLICT (id) DO UPDATE SET written_at = excluded.written_at",
        )
        .bind(now)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

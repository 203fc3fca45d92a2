//! Passwords set after sign-up: reset codes (the verification code rules,
//! in their own table) and the one transaction that sets a new password,
//! records its attempt and revokes what the old password opened.

use sqlx::{ColumnIndex, Executor};

use super::{Backend, Param, Value};
use crate::{
    store::{OutboxEntry, PasswordSet, SqlStore, StoreError},
    throttle,
};

impl<DB> SqlStore<DB>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    i64: Value<DB>,
    i32: Value<DB>,
    bool: Value<DB>,
    String: Value<DB>,
    Vec<u8>: Value<DB>,
    for<'a> &'a str: Param<DB>,
    for<'a> &'a [u8]: Param<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
{
    pub(super) async fn record_password_set(
        &self,
        attempt: &OutboxEntry,
        set: PasswordSet<'_>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.write().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        // The outbox write goes first (see `record_login`).
        Self::insert_attempt(&mut tx, attempt).await?;
        if let Some(code_hash) = set.reset_code {
            // Single use: of requests racing with one code, only the one
            // that deletes it goes on; the others write nothing.
            let used = sqlx::query(
                "DELETE FROM password_reset_codes WHERE user_id = $1 AND code_hash = $2",
            )
            .bind(set.user_id)
            .bind(code_hash)
            .execute(&mut *tx)
            .await?;
            if DB::rows_affected(&used) != 1 {
                return Ok(false);
            }
            sqlx::query("DELETE FROM throttle WHERE key = $1 OR key LIKE $2")
                .bind(throttle::account_key(set.user_id))
                .bind(format!("{}%", throttle::pair_prefix(set.user_id)))
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE users SET password_hash = $2, password_nfkc = TRUE WHERE id = $1")
            .bind(set.user_id)
            .bind(set.password_hash)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
        )
        .bind(set.user_id)
        .bind(set.now)
        .execute(&mut *tx)
        .await?;
        // Never moved back (see `logout_user`); within the same second the
        // kept jti is replaced, so only the latest change's token survives
        // (a reset keeps none: '' is stored as NULL).
        sqlx::query(
            "UPDATE users SET sessions_revoked_at = $2, sessions_kept_jti = NULLIF($3, '')
                     WHERE id = $1 AND (sessions_revoked_at IS NULL OR sessions_revoked_at <= $2)",
        )
        .bind(set.user_id)
        .bind(set.now)
        .bind(set.kept.map_or("", |k| k.access_jti))
        .execute(&mut *tx)
        .await?;
        if let Some(kept) = set.kept {
            Self::insert_refresh(&mut tx, kept.refresh).await?;
            Self::credit_success(&mut tx, kept.refresh, kept.keys, kept.reserved).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    pub(super) async fn kept_access_jti(&self, user_id: i64) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar::<_, Option<String>>(
            "SELECT sessions_kept_jti FROM users WHERE id = $1",
        )
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?
        .flatten())
    }
}

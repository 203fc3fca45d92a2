//! Passwords set after sign-up: reset codes (the verification code rules,
//! in their own table) and the one transaction that sets a new password,
//! records its attempt and revokes what the old password opened.

use sqlx::{ColumnIndex, Executor};

use super::{Backend, Param, Value};
use crate::{
    store::{OutboxEntry, PasswordSet, SqlStore, StoreError, StoredCode},
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
    pub(super) async fn put_reset_code(
        &self,
        user_id: i64,
        code: &StoredCode,
        resend_cutoff: i64,
    ) -> Result<bool, StoreError> {
        let mut conn = self.write().await?;
        // As for verification codes: the WHERE makes the resend throttle
        // atomic, so racing requests cannot both replace a fresh code.
        let done = sqlx::query(
            "INSERT INTO password_reset_codes (user_id, code_hash, salt, created_at, expires_at, tries)
                     VALUES ($1, $2, $3, $4, $5, 0)
                     ON CONFLICT (user_id) DO UPDATE SET
                        code_hash = excluded.code_hash, salt = excluded.salt,
                        created_at = excluded.created_at, expires_at = excluded.expires_at, tries = 0
                     WHERE password_reset_codes.created_at <= $6",
        )
        .bind(user_id)
        .bind(&code.code_hash)
        .bind(&code.salt)
        .bind(code.created_at)
        .bind(code.expires_at)
        .bind(resend_cutoff)
        .execute(&mut *conn)
        .await?;
        Ok(DB::rows_affected(&done) == 1)
    }

    pub(super) async fn reset_code(&self, user_id: i64) -> Result<Option<StoredCode>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT code_hash, salt, created_at, expires_at, tries FROM password_reset_codes WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub(super) async fn reserve_reset_try(
        &self,
        user_id: i64,
        max_tries: i32,
    ) -> Result<Option<StoredCode>, StoreError> {
        let mut conn = self.write().await?;
        Ok(sqlx::query_as(
            "UPDATE password_reset_codes SET tries = tries + 1
                     WHERE user_id = $1 AND tries < $2
                     RETURNING code_hash, salt, created_at, expires_at, tries",
        )
        .bind(user_id)
        .bind(max_tries)
        .fetch_optional(&mut *conn)
        .await?)
    }

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

//! Accounts and their verification codes.

use sqlx::{ColumnIndex, Executor};

use super::{Backend, Param, Value};
use crate::{
    domain::{LoginLookup, names},
    store::{NewUser, SqlStore, StoreError, StoredCode, User, unique_violation},
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
    pub(super) async fn create_user(&self, u: NewUser<'_>) -> Result<User, StoreError> {
        let mut conn = self.write().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO users (username, username_lower, email, email_lower, password_hash, password_nfkc, is_active, is_staff, created_at, verified_at)
                     VALUES ($1, $2, $3, $4, $5, TRUE, $6, $7, $8, CASE WHEN $6 THEN $8 END)
                     RETURNING id",
        )
        .bind(u.username)
        .bind(u.username_lower)
        .bind(u.email)
        .bind(u.email_lower)
        .bind(u.password_hash)
        .bind(u.is_active)
        .bind(u.is_staff)
        .bind(u.now)
        .fetch_one(&mut *tx)
        .await
        .map_err(unique_violation)?;
        // In the transaction that creates the account: a name another
        // account holds (or looks like) refuses it whole; dropping `tx`
        // rolls the insert back.
        for (key, kind) in names::claims(u.username, u.email) {
            if Self::claim(&mut *tx, id, &key, kind).await?.is_some() {
                return Err(StoreError::Duplicate(kind.field()));
            }
        }
        tx.commit().await?;
        Ok(User {
            id,
            username: u.username.to_owned(),
            email: u.email.to_owned(),
            password_hash: u.password_hash.to_owned(),
            is_active: u.is_active,
            is_staff: u.is_staff,
            sessions_revoked_at: None,
            password_nfkc: true,
        })
    }

    pub(super) async fn user_by_login(&self, key: &str) -> Result<Option<User>, StoreError> {
        // An email match wins over another account's username that looks
        // like that email (legacy rows; new ones cannot be created).
        Ok(sqlx::query_as(
            "SELECT id, username, email, password_hash, is_active, is_staff, sessions_revoked_at, password_nfkc FROM users
                     WHERE email_lower = $1 OR username_lower = $1
                     ORDER BY CASE WHEN email_lower = $1 THEN 0 ELSE 1 END
                     LIMIT 1",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub(super) async fn user_by_identifier(
        &self,
        lookup: &LoginLookup,
    ) -> Result<Option<User>, StoreError> {
        // In order: the email's account; an account that kept its old key
        // at the migration (exact old spelling); a username. No email
        // fold binds '', which no account's email_lower is.
        Ok(sqlx::query_as(
            "SELECT id, username, email, password_hash, is_active, is_staff, sessions_revoked_at, password_nfkc FROM users
                     WHERE email_lower = $1 OR email_lower = $2 OR username_lower = $2 OR username_lower = $3
                     ORDER BY CASE WHEN email_lower = $1 THEN 0
                                   WHEN email_lower = $2 THEN 1
                                   WHEN username_lower = $2 THEN 2
                                   ELSE 3 END
                     LIMIT 1",
        )
        .bind(lookup.email.as_deref().unwrap_or(""))
        .bind(lookup.legacy.as_str())
        .bind(lookup.username.as_str())
        .fetch_optional(&self.pool)
        .await?)
    }

    pub(super) async fn user_by_email(
        &self,
        email_lower: &str,
    ) -> Result<Option<User>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, username, email, password_hash, is_active, is_staff, sessions_revoked_at, password_nfkc FROM users WHERE email_lower = $1",
        )
        .bind(email_lower)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub(super) async fn set_password_hash(
        &self,
        user_id: i64,
        password_hash: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.write().await?;
        // Every hash made now is of the NFKC form (the hasher normalises).
        sqlx::query("UPDATE users SET password_hash = $2, password_nfkc = TRUE WHERE id = $1")
            .bind(user_id)
            .bind(password_hash)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    pub(super) async fn make_staff(&self, user_id: i64) -> Result<(), StoreError> {
        let mut conn = self.write().await?;
        sqlx::query("UPDATE users SET is_staff = TRUE WHERE id = $1")
            .bind(user_id)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    pub(super) async fn user_by_id(&self, id: i64) -> Result<Option<User>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, username, email, password_hash, is_active, is_staff, sessions_revoked_at, password_nfkc FROM users WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub(super) async fn put_code(
        &self,
        user_id: i64,
        code: &StoredCode,
        resend_cutoff: i64,
    ) -> Result<bool, StoreError> {
        let mut conn = self.write().await?;
        // The WHERE on the update makes the resend throttle atomic:
        // two racing requests cannot both replace a fresh code.
        let done = sqlx::query(
            "INSERT INTO verification_codes (user_id, code_hash, salt, created_at, expires_at, tries)
                     VALUES ($1, $2, $3, $4, $5, 0)
                     ON CONFLICT (user_id) DO UPDATE SET
                        code_hash = excluded.code_hash, salt = excluded.salt,
                        created_at = excluded.created_at, expires_at = excluded.expires_at, tries = 0
                     WHERE verification_codes.created_at <= $6",
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

    pub(super) async fn code(&self, user_id: i64) -> Result<Option<StoredCode>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT code_hash, salt, created_at, expires_at, tries FROM verification_codes WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub(super) async fn reserve_code_try(
        &self,
        user_id: i64,
        max_tries: i32,
    ) -> Result<Option<StoredCode>, StoreError> {
        let mut conn = self.write().await?;
        Ok(sqlx::query_as(
            "UPDATE verification_codes SET tries = tries + 1
                     WHERE user_id = $1 AND tries < $2
                     RETURNING code_hash, salt, created_at, expires_at, tries",
        )
        .bind(user_id)
        .bind(max_tries)
        .fetch_optional(&mut *conn)
        .await?)
    }

    pub(super) async fn activate_with_code(
        &self,
        user_id: i64,
        code_hash: &[u8],
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut conn = self.write().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let deleted =
            sqlx::query("DELETE FROM verification_codes WHERE user_id = $1 AND code_hash = $2")
                .bind(user_id)
                .bind(code_hash)
                .execute(&mut *tx)
                .await?;
        if DB::rows_affected(&deleted) != 1 {
            return Ok(false);
        }
        sqlx::query("UPDATE users SET is_active = TRUE, verified_at = $2 WHERE id = $1")
            .bind(user_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }
}

//! Accounts and their verification codes.

use sqlx::{ColumnIndex, Executor};

use super::{Backend, Param, Value};
use crate::{
    domain::{LoginLookup, names},
    store::{
        CodePurpose, NewUser, Registration, SqlStore, StoreError, StoredCode, User,
        unique_violation,
    },
};

/// How many times, at most, a registration is tried while racing ones keep
/// taking its names between its deletes and its insert.
const REGISTER_TRIES: u32 = 8;

/// `SELECT <every column of User> FROM users <tail>`: one column list for
/// every query that reads an account, so none forgets a field.
macro_rules! select_user {
    ($tail:literal) => {
        concat!(
            "SELECT id, username, email, password_hash, is_active, is_staff, sessions_revoked_at, password_nfkc, created_at, verified_at FROM users ",
            $tail
        )
    };
}

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
    /// Creates an account and claims its names, in one transaction.
    pub(super) async fn create_user(&self, u: NewUser<'_>) -> Result<User, StoreError> {
        let mut conn = self.write().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let claims = names::claims(u.username, u.email);
        let user = Self::insert_user(&mut tx, &u, &claims).await?;
        tx.commit().await?;
        Ok(user)
    }

    /// Registration: in one transaction, deletes the unverified accounts
    /// that hold `u`'s email (at any age: whoever registers anew may be the
    /// mailbox owner, and only the mailbox owner can verify) and those
    /// holding another of its names (its username, a lookalike of it, or
    /// the email its username spells) if created before
    /// `username_held_after`, with everything that refers to them (foreign
    /// keys cascade), then inserts `u` with its claims. A registration
    /// racing another for the same name (PostgreSQL: the other's row
    /// appeared after this one's delete looked) is tried again, so a burst
    /// leaves one account and answers no error for it.
    pub(super) async fn register_user(
        &self,
        u: NewUser<'_>,
        username_held_after: i64,
    ) -> Result<Registration, StoreError> {
        let claims = names::claims(u.username, u.email);
        let mut conn = self.write().await?;
        let mut tries = 0;
        loop {
            tries += 1;
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            let mut replaced = DB::rows_affected(
                &sqlx::query(
                    "DELETE FROM users
                             WHERE is_active = FALSE AND verified_at IS NULL
                               AND (email_lower = $1 OR (username_lower = $2 AND created_at < $3))",
                )
                .bind(u.email_lower)
                .bind(u.username_lower)
                .bind(username_held_after)
                .execute(&mut *tx)
                .await?,
            );
            for (key, kind) in &claims {
                // The email's own claim is released at any age; a name
                // only once its holder's hold has lapsed.
                let held_after = match kind {
                    names::ClaimKind::Email => i64::MAX,
                    _ => username_held_after,
                };
                replaced += DB::rows_affected(
                    &sqlx::query(
                        "DELETE FROM users
                                 WHERE is_active = FALSE AND verified_at IS NULL AND created_at < $2
                                   AND id IN (SELECT user_id FROM account_names WHERE name_key = $1)",
                    )
                    .bind(key.as_str())
                    .bind(held_after)
                    .execute(&mut *tx)
                    .await?,
                );
            }
            match Self::insert_user(&mut tx, &u, &claims).await {
                Ok(user) => {
                    tx.commit().await?;
                    return Ok(Registration { user, replaced });
                }
                Err(e) => {
                    tx.rollback().await?;
                    // A name taken by a racing registration that committed
                    // after this one's deletes looked is released by the next
                    // try; one that a try could not release (a verified or
                    // still-held account) will not be released by more.
                    let may_release = tries == 1 || replaced > 0;
                    if matches!(e, StoreError::Duplicate(_))
                        && may_release
                        && tries < REGISTER_TRIES
                    {
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Inserts an account and claims its names (`claims`, computed once per
    /// registration) on `conn`, a transaction the caller commits: a name
    /// another account holds (or looks like) refuses it whole, as
    /// `Duplicate(field)`.
    async fn insert_user(
        conn: &mut DB::Connection,
        u: &NewUser<'_>,
        claims: &[(String, names::ClaimKind)],
    ) -> Result<User, StoreError> {
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
        .fetch_one(&mut *conn)
        .await
        .map_err(unique_violation)?;
        for (key, kind) in claims {
            if Self::claim(&mut *conn, id, key, *kind).await?.is_some() {
                return Err(StoreError::Duplicate(kind.field()));
            }
        }
        Ok(User {
            id,
            username: u.username.to_owned(),
            email: u.email.to_owned(),
            password_hash: u.password_hash.to_owned(),
            is_active: u.is_active,
            is_staff: u.is_staff,
            sessions_revoked_at: None,
            password_nfkc: true,
            created_at: u.now,
            verified_at: u.is_active.then_some(u.now),
        })
    }

    /// Deletes up to `batch` unverified accounts created before `before`
    /// (with their codes, tokens and names, by cascade); how many.
    pub(super) async fn delete_unverified(
        &self,
        before: i64,
        batch: i64,
    ) -> Result<u64, StoreError> {
        let mut conn = self.write().await?;
        let done = sqlx::query(
            "DELETE FROM users WHERE id IN (
                        SELECT id FROM users
                        WHERE verified_at IS NULL AND is_active = FALSE AND created_at < $1
                        ORDER BY created_at LIMIT $2)",
        )
        .bind(before)
        .bind(batch)
        .execute(&mut *conn)
        .await?;
        Ok(DB::rows_affected(&done))
    }

    pub(super) async fn user_by_identifier(
        &self,
        lookup: &LoginLookup,
    ) -> Result<Option<User>, StoreError> {
        // In order: the email's account; an account that kept its old key
        // at the migration (exact old spelling); a username. No email
        // fold binds '', which no account's email_lower is.
        Ok(sqlx::query_as(
            select_user!(
                "WHERE email_lower = $1 OR email_lower = $2 OR username_lower = $2 OR username_lower = $3
                 ORDER BY CASE WHEN email_lower = $1 THEN 0
                               WHEN email_lower = $2 THEN 1
                               WHEN username_lower = $2 THEN 2
                               ELSE 3 END
                 LIMIT 1"
            ),
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
        Ok(sqlx::query_as(select_user!("WHERE email_lower = $1"))
            .bind(email_lower)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub(super) async fn django_hash_census(&self) -> Result<Vec<(String, i64)>, StoreError> {
        // argon2id PHC strings start with '$', Django's unusable markers
        // with '!'; everything else came from Django. Eight characters
        // hold a 7-digit count and its '$', or a shorter one and a few
        // salt characters (summed by the caller): few groups either way.
        Ok(sqlx::query_as(
            "SELECT CASE WHEN substr(password_hash, 1, 14) = 'pbkdf2_sha256$'
                         THEN substr(password_hash, 15, 8) ELSE '' END AS head,
                    COUNT(*) AS n
               FROM users
              WHERE substr(password_hash, 1, 1) NOT IN ('$', '!')
              GROUP BY 1",
        )
        .fetch_all(&self.pool)
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
        Ok(sqlx::query_as(select_user!("WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub(super) async fn put_code(
        &self,
        purpose: CodePurpose,
        user_id: i64,
        code: &StoredCode,
        resend_cutoff: i64,
    ) -> Result<bool, StoreError> {
        let mut conn = self.write().await?;
        // The WHERE on the update makes the resend throttle atomic:
        // two racing requests cannot both replace a fresh code. The table
        // name comes from a closed enum; every value is bound.
        let table = purpose.table();
        let sql = format!(
            "INSERT INTO {table} (user_id, code_hash, salt, created_at, expires_at, tries)
                     VALUES ($1, $2, $3, $4, $5, 0)
                     ON CONFLICT (user_id) DO UPDATE SET
                        code_hash = excluded.code_hash, salt = excluded.salt,
                        created_at = excluded.created_at, expires_at = excluded.expires_at, tries = 0
                     WHERE {table}.created_at <= $6"
        );
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
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

    pub(super) async fn code(
        &self,
        purpose: CodePurpose,
        user_id: i64,
    ) -> Result<Option<StoredCode>, StoreError> {
        let sql = format!(
            "SELECT code_hash, salt, created_at, expires_at, tries FROM {} WHERE user_id = $1",
            purpose.table()
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub(super) async fn reserve_code_try(
        &self,
        purpose: CodePurpose,
        user_id: i64,
        max_tries: i32,
    ) -> Result<Option<StoredCode>, StoreError> {
        let mut conn = self.write().await?;
        let sql = format!(
            "UPDATE {} SET tries = tries + 1
                     WHERE user_id = $1 AND tries < $2
                     RETURNING code_hash, salt, created_at, expires_at, tries",
            purpose.table()
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
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
        new_password_hash: Option<&str>,
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
        let activate = match new_password_hash {
            Some(hash) => sqlx::query(
                "UPDATE users SET is_active = TRUE, verified_at = $2, password_hash = $3,
                                  password_nfkc = TRUE
                         WHERE id = $1",
            )
            .bind(user_id)
            .bind(now)
            .bind(hash),
            None => {
                sqlx::query("UPDATE users SET is_active = TRUE, verified_at = $2 WHERE id = $1")
                    .bind(user_id)
                    .bind(now)
            }
        };
        activate.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    }
}

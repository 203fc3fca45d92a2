//! Claimed names (issue #14): the one key space every account's username
//! and email claim ([`crate::domain::names`]), and the start-up data
//! migration that computes the new keys for rows that predate it.

use sqlx::{ColumnIndex, Executor};

use super::{Backend, Param, Value};
use crate::{
    domain::names::{self, ClaimKind},
    store::{NameCollision, SqlStore, StoreError},
};

/// The data migration's row in `data_migrations`.
const MIGRATION: &str = "0009_identity_keys";

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
    /// Claims `key` for `user_id` unless another account holds it; returns
    /// the holder when it is another account.
    pub(super) async fn claim(
        conn: &mut DB::Connection,
        user_id: i64,
        key: &str,
        kind: ClaimKind,
    ) -> Result<Option<i64>, sqlx::Error> {
        // ON CONFLICT DO NOTHING waits for a concurrent insert of the same
        // key to commit or roll back, so two registrations released at one
        // instant cannot both claim it.
        let done = sqlx::query(
            "INSERT INTO account_names (name_key, user_id, kind) VALUES ($1, $2, $3)
                     ON CONFLICT (name_key) DO NOTHING",
        )
        .bind(key)
        .bind(user_id)
        .bind(kind.as_str())
        .execute(&mut *conn)
        .await?;
        if DB::rows_affected(&done) == 1 {
            return Ok(None);
        }
        let holder: Option<i64> =
            sqlx::query_scalar("SELECT user_id FROM account_names WHERE name_key = $1")
                .bind(key)
                .fetch_optional(&mut *conn)
                .await?;
        Ok(holder.filter(|h| *h != user_id))
    }

    /// Computes the new keys of up to `batch` accounts that predate them
    /// (in one transaction) and returns how many it looked at; 0 once every
    /// account has been done, which is then recorded.
    pub(super) async fn migrate_identities(&self, batch: i64, now: i64) -> Result<u64, StoreError> {
        let mut conn = self.write().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        // Locks the row: replicas starting together take turns.
        let pending: Option<String> = sqlx::query_scalar(
            "UPDATE data_migrations SET done_at = done_at WHERE name = $1 AND done_at IS NULL
                     RETURNING name",
        )
        .bind(MIGRATION)
        .fetch_optional(&mut *tx)
        .await?;
        if pending.is_none() {
            return Ok(0);
        }
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT id, username, email FROM users u
                     WHERE NOT EXISTS (SELECT 1 FROM account_names a WHERE a.user_id = u.id)
                       AND NOT EXISTS (SELECT 1 FROM account_name_collisions c WHERE c.user_id = u.id)
                     ORDER BY id LIMIT $1",
        )
        .bind(batch)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            sqlx::query("UPDATE data_migrations SET done_at = $2 WHERE name = $1")
                .bind(MIGRATION)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(0);
        }
        for (id, username, email) in &rows {
            let mut collided = Vec::new();
            for (key, kind) in names::claims(username, email) {
                if let Some(holder) = Self::claim(&mut *tx, *id, &key, kind).await? {
                    collided.push((key, kind, holder));
                }
            }
            let (username_key, email_key) = (names::fold(username), names::email_fold(email));
            // Another account may still hold one of the new keys as its
            // old one (a later account, not yet migrated): then this one
            // keeps its old keys too, and is reported.
            let in_the_way: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM users WHERE id <> $1
                         AND (username_lower = $2 OR email_lower = $3) LIMIT 1",
            )
            .bind(id)
            .bind(&username_key)
            .bind(&email_key)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(holder) = in_the_way
                && collided.is_empty()
            {
                collided.push((username_key.clone(), ClaimKind::Username, holder));
            }
            if collided.is_empty() {
                sqlx::query("UPDATE users SET username_lower = $2, email_lower = $3 WHERE id = $1")
                    .bind(id)
                    .bind(&username_key)
                    .bind(&email_key)
                    .execute(&mut *tx)
                    .await?;
            }
            for (key, kind, holder) in collided {
                sqlx::query(
                    "INSERT INTO account_name_collisions (user_id, name_key, kind, holder_id, found_at)
                             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, name_key) DO NOTHING",
                )
                .bind(id)
                .bind(&key)
                .bind(kind.as_str())
                .bind(holder)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(rows.len() as u64)
    }

    /// Every recorded collision, oldest account first.
    pub(super) async fn name_collisions(&self) -> Result<Vec<NameCollision>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT c.user_id, u.username, u.email, c.kind, c.name_key, c.holder_id,
                    h.username AS holder_username, h.email AS holder_email
               FROM account_name_collisions c
               JOIN users u ON u.id = c.user_id
               JOIN users h ON h.id = c.holder_id
              ORDER BY c.user_id, c.kind, c.name_key",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}

//! Refresh tokens and sessions: rotation (one token used, its successor
//! stored, the family's refreshes counted), reuse detection, logout.
//!
//! [`SqlStore::rotate_in_tx`] is the one-by-one rotation; how it is
//! scheduled is the backend's ([`super::Backend::rotate_refresh`]).

use sqlx::{ColumnIndex, Executor};

use super::{Backend, Param, Value};
use crate::{
    store::{AdminEventEntry, NewRefreshToken, Rotation, SqlStore, StoreError, TokenOwner},
    throttle::Limit,
};

/// A spent token's family and owner, then the owner's username, `is_active`
/// and `is_staff` (`NULL` when the account is gone).
type Spent = (String, i64, Option<String>, Option<bool>, Option<bool>);

/// A live successor's owner id, `issued_at` and `expires_at`, and the
/// owner's username and `is_staff`.
type Successor = (i64, i64, i64, String, bool);

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
    /// One rotation in a transaction of its own: what
    /// [`super::Backend::rotate_refresh`] does when nothing batches it.
    pub(in crate::store) async fn rotate_one(
        &self,
        jti: &str,
        now: i64,
        next: &NewRefreshToken,
        family_limit: Limit,
        reuse_grace: i64,
    ) -> Result<Rotation, StoreError> {
        let mut conn = self.write().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let outcome =
            Self::rotate_in_tx(&mut tx, jti, now, next, family_limit, reuse_grace).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    pub(super) async fn logout_family(&self, jti: &str, now: i64) -> Result<bool, StoreError> {
        let mut conn = self.write().await?;
        let live = sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $2
                     WHERE revoked_at IS NULL AND family_id = (
                        SELECT family_id FROM refresh_tokens
                        WHERE jti = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $2)",
        )
        .bind(jti)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        if DB::rows_affected(&live) > 0 {
            return Ok(true);
        }
        // Logging out with an already used token is reuse: the
        // family goes as on refresh, and the caller is told no.
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $2
                     WHERE revoked_at IS NULL AND family_id = (
                        SELECT family_id FROM refresh_tokens WHERE jti = $1 AND used_at IS NOT NULL)",
        )
        .bind(jti)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        Ok(false)
    }

    pub(super) async fn live_refresh_owner(
        &self,
        jti: &str,
        now: i64,
    ) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT user_id FROM refresh_tokens
                     WHERE jti = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $2",
        )
        .bind(jti)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub(super) async fn logout_user(
        &self,
        user_id: i64,
        now: i64,
        record: impl FnOnce(u64) -> Vec<AdminEventEntry> + Send,
    ) -> Result<u64, StoreError> {
        let mut conn = self.write().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let revoked = Self::revoke_sessions(&mut tx, user_id, now).await?;
        Self::insert_admin_events(&mut tx, &record(revoked)).await?;
        tx.commit().await?;
        Ok(revoked)
    }

    /// Revokes every refresh token of the user and records `now` as its
    /// `sessions_revoked_at`, inside the caller's transaction; how many
    /// families were still open.
    pub(in crate::store) async fn revoke_sessions(
        conn: &mut DB::Connection,
        user_id: i64,
        now: i64,
    ) -> Result<u64, sqlx::Error> {
        let families: Vec<String> = sqlx::query_scalar(
            "UPDATE refresh_tokens SET revoked_at = $2
                     WHERE user_id = $1 AND revoked_at IS NULL
                     RETURNING family_id",
        )
        .bind(user_id)
        .bind(now)
        .fetch_all(&mut *conn)
        .await?;
        // Never moved back: a replica with a slower clock must not
        // revive tokens another replica's logout already revoked. A token
        // a password change kept in this second is revoked with the rest.
        sqlx::query(
            "UPDATE users SET sessions_revoked_at = $2, sessions_kept_jti = NULL
                     WHERE id = $1 AND (sessions_revoked_at IS NULL OR sessions_revoked_at <= $2)",
        )
        .bind(user_id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        let distinct: std::collections::HashSet<String> = families.into_iter().collect();
        Ok(u64::try_from(distinct.len()).unwrap_or(u64::MAX))
    }

    /// Stores a refresh token (a login's first, or a rotation's successor).
    pub(super) async fn insert_refresh(
        conn: &mut DB::Connection,
        r: &NewRefreshToken,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO refresh_tokens (jti, family_id, user_id, issued_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&r.jti)
        .bind(&r.family_id)
        .bind(r.user_id)
        .bind(r.issued_at)
        .bind(r.expires_at)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// One refresh-token rotation inside the caller's transaction, which
    /// the caller commits (alone, or with a batch of others). Three
    /// statements on the common path, each a round trip to the driver:
    /// use the token (recording its successor's `jti` in the same
    /// statement) and read its owner, count the family's refresh, store
    /// the successor. A token that is not live goes to [`Self::not_live`].
    pub(in crate::store) async fn rotate_in_tx(
        conn: &mut DB::Connection,
        jti: &str,
        now: i64,
        next: &NewRefreshToken,
        family_limit: Limit,
        reuse_grace: i64,
    ) -> Result<Rotation, sqlx::Error> {
        let used: Option<Spent> = sqlx::query_as(
            "UPDATE refresh_tokens SET used_at = $2, successor_jti = $3
                     WHERE jti = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $2
                     RETURNING family_id, user_id,
                        (SELECT username FROM users WHERE id = refresh_tokens.user_id),
                        (SELECT is_active FROM users WHERE id = refresh_tokens.user_id),
                        (SELECT is_staff FROM users WHERE id = refresh_tokens.user_id)",
        )
        .bind(jti)
        .bind(now)
        .bind(&next.jti)
        .fetch_optional(&mut *conn)
        .await?;
        let Some((family_id, user_id, username, is_active, is_staff)) = used else {
            return Self::not_live(conn, jti, now, family_limit, reuse_grace).await;
        };
        if let Some(wait) = Self::count_refresh(conn, &family_id, now, family_limit).await? {
            // Undo the spend too (the transaction may hold other rotations,
            // so it is not rolled back): the token stays usable once the
            // window passes.
            sqlx::query(
                "UPDATE refresh_tokens SET used_at = NULL, successor_jti = NULL WHERE jti = $1",
            )
            .bind(jti)
            .execute(&mut *conn)
            .await?;
            return Ok(Rotation::Throttled(wait));
        }
        Ok(match (username, is_active, is_staff) {
            (Some(username), Some(true), Some(is_staff)) => {
                let next = NewRefreshToken {
                    family_id,
                    user_id,
                    ..next.clone()
                };
                Self::insert_refresh(conn, &next).await?;
                Rotation::Rotated(TokenOwner {
                    id: user_id,
                    username,
                    is_staff,
                })
            }
            // Disabled, or gone.
            _ => {
                Self::revoke_family(conn, &family_id, now).await?;
                Rotation::Inactive
            }
        })
    }

    /// Counts one refresh of `family_id`; when that is over `limit`, takes
    /// the count back and returns the seconds to wait. Over the limit means
    /// the count was incremented within a running window (a fresh window
    /// starts at 1, and every limit is at least 1), so one decrement
    /// restores it exactly.
    async fn count_refresh(
        conn: &mut DB::Connection,
        family_id: &str,
        now: i64,
        limit: Limit,
    ) -> Result<Option<u64>, sqlx::Error> {
        let rate_key = format!("rf:{family_id}");
        let (hits, start) = Self::count_hit(conn, &rate_key, now, limit.window).await?;
        let wait = limit.retry_after(hits.hits, start, now);
        if wait.is_some() {
            sqlx::query("UPDATE throttle SET hits = hits - 1 WHERE key = $1")
                .bind(&rate_key)
                .execute(&mut *conn)
                .await?;
        }
        Ok(wait)
    }

    /// A token that could not be spent: unknown, expired or revoked
    /// ([`Rotation::Invalid`]); used within `reuse_grace` seconds with its
    /// successor still live ([`Rotation::Replayed`], nothing written but
    /// the family's refresh count); any other used one is reuse, which
    /// revokes the family. The successor's `jti` was written by the
    /// statement that spent the token and the successor row in the same
    /// transaction, so a presentation that lost the race to spend it (it
    /// waited on the row's lock, PostgreSQL, or ran after it, SQLite) sees
    /// both here.
    async fn not_live(
        conn: &mut DB::Connection,
        jti: &str,
        now: i64,
        family_limit: Limit,
        reuse_grace: i64,
    ) -> Result<Rotation, sqlx::Error> {
        let seen: Option<(String, Option<i64>, Option<String>)> = sqlx::query_as(
            "SELECT family_id, used_at, successor_jti FROM refresh_tokens WHERE jti = $1",
        )
        .bind(jti)
        .fetch_optional(&mut *conn)
        .await?;
        let (family_id, used_at, successor_jti) = match seen {
            Some((family_id, Some(used_at), successor)) => (family_id, used_at, successor),
            _ => return Ok(Rotation::Invalid),
        };
        let within_grace = reuse_grace > 0 && now <= used_at.saturating_add(reuse_grace);
        if let (true, Some(successor_jti)) = (within_grace, successor_jti) {
            let live: Option<Successor> = sqlx::query_as(
                "SELECT s.user_id, s.issued_at, s.expires_at, u.username, u.is_staff
                         FROM refresh_tokens s JOIN users u ON u.id = s.user_id
                         WHERE s.jti = $1 AND s.family_id = $2 AND s.used_at IS NULL
                           AND s.revoked_at IS NULL AND s.expires_at > $3 AND u.is_active",
            )
            .bind(&successor_jti)
            .bind(&family_id)
            .bind(now)
            .fetch_optional(&mut *conn)
            .await?;
            if let Some((user_id, issued_at, expires_at, username, is_staff)) = live {
                if let Some(wait) = Self::count_refresh(conn, &family_id, now, family_limit).await?
                {
                    return Ok(Rotation::Throttled(wait));
                }
                return Ok(Rotation::Replayed {
                    owner: TokenOwner {
                        id: user_id,
                        username,
                        is_staff,
                    },
                    successor: NewRefreshToken {
                        jti: successor_jti,
                        family_id,
                        user_id,
                        issued_at,
                        expires_at,
                    },
                });
            }
        }
        Self::revoke_family(conn, &family_id, now).await?;
        Ok(Rotation::Reused)
    }

    /// Revokes every live token of a family (reuse, logout, a disabled owner).
    pub(in crate::store) async fn revoke_family(
        conn: &mut DB::Connection,
        family_id: &str,
        now: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
        )
        .bind(family_id)
        .bind(now)
        .execute(conn)
        .await?;
        Ok(())
    }
}

//! Login throttling: the reservation that counts a try before its password
//! is checked, the settlement of the try ([`SqlStore::record_login`]), the
//! fixed-window rate counters, and their upkeep.
//!
//! The reservation's rows are always locked in one order (pair, account,
//! IP) by one transaction on the write connection, so tries from every
//! replica at one instant are counted one after another and two
//! reservations never wait on each other in a cycle.

use sqlx::{ColumnIndex, Executor};

use super::{Backend, Param, Value};
use crate::{
    store::{
        AdminEventEntry, LoginEffects, LoginReservation, NewRefreshToken, OutboxEntry, ReservedTry,
        SqlStore, StoreError,
    },
    throttle::{self, BruteForcePolicy, Counter, LoginKeys, Update},
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
    pub(super) async fn reserve_login(
        &self,
        keys: &LoginKeys,
        policy: &BruteForcePolicy,
        now: i64,
    ) -> Result<LoginReservation, StoreError> {
        let mut conn = self.write().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        // Always pair, then account, then IP: every transaction that
        // locks these rows takes them in this order, so two of them
        // never wait on each other in a cycle. A refusal returns
        // without committing: dropping the transaction rolls back
        // the counts taken before the blocked key.
        let Some((pair, _)) =
            Self::reserve_hit(&mut tx, &keys.pair, now, policy.failure_reset).await?
        else {
            return Ok(Self::refusal(&mut tx, keys, now).await?);
        };
        let known_client = match keys.user_id {
            Some(user_id) => sqlx::query_scalar::<_, i64>(
                "SELECT last_login FROM known_clients
                         WHERE user_id = $1 AND client = $2 AND last_login > $3",
            )
            .bind(user_id)
            .bind(&keys.client)
            .bind(now - policy.known_client_ttl)
            .fetch_optional(&mut *tx)
            .await?
            .is_some(),
            None => false,
        };
        let account = if known_client {
            None
        } else {
            let Some((account, _)) =
                Self::reserve_hit(&mut tx, &keys.account, now, policy.failure_reset).await?
            else {
                return Ok(Self::refusal(&mut tx, keys, now).await?);
            };
            Some(policy.account(account, now))
        };
        let Some((ip, ip_window_start)) =
            Self::reserve_hit(&mut tx, &keys.ip, now, policy.ip_window).await?
        else {
            return Ok(Self::refusal(&mut tx, keys, now).await?);
        };
        let updates = [
            (&keys.pair, Some(policy.pair(pair, now))),
            (&keys.account, account),
            (&keys.ip, Some(policy.ip(ip, now))),
        ];
        for (key, update) in updates {
            if let Some(update) = update.filter(|u| u.started) {
                Self::apply(&mut tx, key, update).await?;
            }
        }
        tx.commit().await?;
        Ok(LoginReservation::Granted(ReservedTry {
            known_client,
            lock_started: account.is_some_and(|a| a.started),
            ip_window_start,
        }))
    }

    /// Settles a login try: its outbox row, and on success the session and
    /// the counters it clears (see [`crate::store::LoginEffects`]).
    pub(super) async fn record_login(
        &self,
        attempt: &OutboxEntry,
        effects: LoginEffects<'_>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.write().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        // The outbox write goes first: on SQLite a transaction that
        // starts by writing takes the lock at once instead of failing
        // to upgrade a read lock under contention.
        Self::insert_attempt(&mut tx, attempt).await?;
        if let LoginEffects::Success {
            refresh,
            keys,
            reserved,
        } = effects
        {
            // The account row before any other: an administrator's change
            // holds it (see `change_account`) while it decides, so a login
            // waits for a deactivation or deletion to commit and then finds
            // the account inactive, instead of storing a session the
            // deactivation did not see. Rows after it in the order
            // `change_account` takes them, so the two never deadlock.
            let live = sqlx::query(
                "UPDATE users SET last_login_at = $2 WHERE id = $1 AND is_active = TRUE",
            )
            .bind(refresh.user_id)
            .bind(refresh.issued_at)
            .execute(&mut *tx)
            .await?;
            if DB::rows_affected(&live) == 0 {
                return Ok(false);
            }
            Self::insert_refresh(&mut tx, refresh).await?;
            Self::credit_success(&mut tx, refresh, keys, reserved).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// What a proven password does to the counters, inside the caller's
    /// transaction: the pair's (and, from an unknown client, the
    /// account's) counts start over, the client becomes known to the
    /// account, and the reserved IP try is given back (successes are not
    /// stuffing).
    pub(super) async fn credit_success(
        conn: &mut DB::Connection,
        refresh: &NewRefreshToken,
        keys: &LoginKeys,
        reserved: &ReservedTry,
    ) -> Result<(), sqlx::Error> {
        // Row by row in the order reservations lock them (see
        // `reserve_login`), never one statement over both keys.
        // A known client never touched the account counter, and
        // clearing it would hand whoever is guessing elsewhere
        // a fresh set of tries each time the owner logs in.
        let mut cleared = vec![&keys.pair];
        if !reserved.known_client {
            cleared.push(&keys.account);
        }
        for key in cleared {
            sqlx::query("DELETE FROM throttle WHERE key = $1")
                .bind(key)
                .execute(&mut *conn)
                .await?;
        }
        sqlx::query(
            "INSERT INTO known_clients (user_id, client, last_login) VALUES ($1, $2, $3)
                     ON CONFLICT (user_id, client) DO UPDATE SET last_login = excluded.last_login",
        )
        .bind(refresh.user_id)
        .bind(&keys.client)
        .bind(refresh.issued_at)
        .execute(&mut *conn)
        .await?;
        // Only to the window it was taken from, and not once a
        // block has started (which reset the count): the try
        // that reaches the IP threshold starts the block
        // whatever its outcome.
        sqlx::query(
            "UPDATE throttle SET hits = hits - 1
                     WHERE key = $1 AND window_start = $2 AND hits > 0",
        )
        .bind(&keys.ip)
        .bind(reserved.ip_window_start)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    pub(super) async fn rate_hit(
        &self,
        key: &str,
        now: i64,
        window: i64,
    ) -> Result<(i64, i64), StoreError> {
        let mut conn = self.write().await?;
        let (c, start) = Self::count_hit(&mut conn, key, now, window).await?;
        Ok((c.hits, start))
    }

    pub(super) async fn unlock_account(
        &self,
        user_id: i64,
        record: impl FnOnce(u64) -> Vec<AdminEventEntry> + Send,
    ) -> Result<u64, StoreError> {
        let mut conn = self.write().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let done = sqlx::query("DELETE FROM throttle WHERE key = $1 OR key LIKE $2")
            .bind(throttle::account_key(user_id))
            .bind(format!("{}%", throttle::pair_prefix(user_id)))
            .execute(&mut *tx)
            .await?;
        let cleared = DB::rows_affected(&done);
        Self::insert_admin_events(&mut tx, &record(cleared)).await?;
        tx.commit().await?;
        Ok(cleared)
    }

    pub(super) async fn throttle_prune(
        &self,
        before: i64,
        now: i64,
        known_before: i64,
    ) -> Result<u64, StoreError> {
        let mut conn = self.write().await?;
        let done =
            sqlx::query("DELETE FROM throttle WHERE window_start < $1 AND blocked_until <= $2")
                .bind(before)
                .bind(now)
                .execute(&mut *conn)
                .await?;
        let known = sqlx::query("DELETE FROM known_clients WHERE last_login < $1")
            .bind(known_before)
            .execute(&mut *conn)
            .await?;
        Ok(DB::rows_affected(&done) + DB::rows_affected(&known))
    }

    /// [`Self::reserve_hit`] for a key nothing ever blocks (rate limits,
    /// the refresh family): always counted.
    pub(in crate::store) async fn count_hit(
        conn: &mut DB::Connection,
        key: &str,
        now: i64,
        window: i64,
    ) -> Result<(Counter, i64), sqlx::Error> {
        // Only login keys get a `blocked_until`; a refusal here would
        // mean a rate key was blocked, which nothing does.
        Self::reserve_hit(conn, key, now, window)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }

    /// Counts one event under `key` in a fixed window of `window` seconds
    /// that starts over once it has passed (locks and tiers with it),
    /// unless `key` is blocked at `now`: then nothing is counted and
    /// `None` comes back. One statement, so the check and the count
    /// cannot be split by a concurrent try. Also returns when the
    /// window began.
    async fn reserve_hit(
        conn: &mut DB::Connection,
        key: &str,
        now: i64,
        window: i64,
    ) -> Result<Option<(Counter, i64)>, sqlx::Error> {
        let row: Option<(i64, i64, i64, i64)> = sqlx::query_as(
            "INSERT INTO throttle (key, hits, window_start) VALUES ($1, 1, $2)
                 ON CONFLICT (key) DO UPDATE SET
                    hits = CASE WHEN throttle.window_start <= $3 THEN 1 ELSE throttle.hits + 1 END,
                    strikes = CASE WHEN throttle.window_start <= $3 THEN 0 ELSE throttle.strikes END,
                    window_start = CASE WHEN throttle.window_start <= $3 THEN $2 ELSE throttle.window_start END
                 WHERE throttle.blocked_until <= $2
                 RETURNING hits, blocked_until, strikes, window_start",
        )
        .bind(key)
        .bind(now)
        .bind(now - window)
        .fetch_optional(conn)
        .await?;
        Ok(row.map(|(hits, blocked_until, strikes, window_start)| {
            (
                Counter {
                    hits,
                    blocked_until,
                    strikes,
                },
                window_start,
            )
        }))
    }

    /// Why a login try was refused: the blocks running on its keys.
    async fn refusal(
        conn: &mut DB::Connection,
        keys: &LoginKeys,
        now: i64,
    ) -> Result<LoginReservation, sqlx::Error> {
        let blocks: Vec<(String, i64)> = sqlx::query_as(
            "SELECT key, blocked_until FROM throttle
                 WHERE key IN ($1, $2, $3) AND blocked_until > $4",
        )
        .bind(&keys.pair)
        .bind(&keys.account)
        .bind(&keys.ip)
        .bind(now)
        .fetch_all(conn)
        .await?;
        Ok(LoginReservation::Refused {
            until: blocks.iter().map(|(_, u)| *u).max().unwrap_or(now + 1),
            account_locked: blocks.iter().any(|(k, _)| *k == keys.account),
        })
    }

    /// Writes back what the policy decided for one counter.
    async fn apply(conn: &mut DB::Connection, key: &str, u: Update) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE throttle SET hits = $2, blocked_until = $3, strikes = $4 WHERE key = $1",
        )
        .bind(key)
        .bind(u.hits)
        .bind(u.blocked_until)
        .bind(u.strikes)
        .execute(conn)
        .await?;
        Ok(())
    }
}

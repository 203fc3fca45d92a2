//! Accounts as administrators see and change them (issue #16): the
//! listing, one account in detail, and the one transaction in which a
//! change is decided and written.

use sqlx::{AssertSqlSafe, ColumnIndex, Executor};

use super::{Backend, Param, Value};
use crate::{
    store::{
        AccountChange, AccountDetail, AccountFilter, AccountView, AdminEventEntry, ChangeOutcome,
        SqlStore, StoreError,
    },
    throttle,
};

/// `SELECT <every column of AccountView> FROM users <tail>`.
macro_rules! select_account {
    ($tail:literal) => {
        concat!(
            "SELECT id, username, email, is_active, is_staff, created_at, verified_at, last_login_at FROM users ",
            $tail
        )
    };
}

/// The ids of every active administrator, in the order rows are locked.
const ACTIVE_ADMINS: &str =
    "SELECT id FROM users WHERE is_active = TRUE AND is_staff = TRUE ORDER BY id";

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
    pub(super) async fn list_accounts(
        &self,
        filter: &AccountFilter,
    ) -> Result<Vec<AccountView>, StoreError> {
        // One statement for every combination: an unset filter binds FALSE
        // (or '' for the pattern) and its condition holds for every row.
        // (sqlx binds no `Option` generically, so no NULLs.) Newest first
        // by primary key, so a page is an index range scan.
        let (active_set, active) = (filter.is_active.is_some(), filter.is_active == Some(true));
        let (staff_set, staff) = (filter.is_staff.is_some(), filter.is_staff == Some(true));
        let (verified_set, verified) = (filter.verified.is_some(), filter.verified == Some(true));
        Ok(sqlx::query_as(select_account!(
            r"WHERE ($1 = '' OR username_lower LIKE $1 ESCAPE '\' OR email_lower LIKE $1 ESCAPE '\')
                AND (NOT $2 OR is_active = $3)
                AND (NOT $4 OR is_staff = $5)
                AND (NOT $6 OR (verified_at IS NOT NULL) = $7)
                AND id < $8
              ORDER BY id DESC
              LIMIT $9"
        ))
        .bind(filter.pattern.as_deref().unwrap_or(""))
        .bind(active_set)
        .bind(active)
        .bind(staff_set)
        .bind(staff)
        .bind(verified_set)
        .bind(verified)
        .bind(filter.before_id.unwrap_or(i64::MAX))
        .bind(filter.limit)
        .fetch_all(&self.pool)
        .await?)
    }

    pub(super) async fn account_detail(
        &self,
        user_id: i64,
        now: i64,
    ) -> Result<Option<AccountDetail>, StoreError> {
        let Some(account) = sqlx::query_as::<_, AccountView>(select_account!("WHERE id = $1"))
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        // One statement, so the three figures describe one instant.
        let (locked_until, delayed_clients, active_sessions): (Option<i64>, i64, i64) =
            sqlx::query_as(
                "SELECT
                    (SELECT blocked_until FROM throttle WHERE key = $2 AND blocked_until > $4),
                    (SELECT COUNT(*) FROM throttle WHERE key LIKE $3 AND blocked_until > $4),
                    (SELECT COUNT(DISTINCT family_id) FROM refresh_tokens
                      WHERE user_id = $1 AND used_at IS NULL AND revoked_at IS NULL
                        AND expires_at > $4)",
            )
            .bind(user_id)
            .bind(throttle::account_key(user_id))
            .bind(format!("{}%", throttle::pair_prefix(user_id)))
            .bind(now)
            .fetch_one(&self.pool)
            .await?;
        Ok(Some(AccountDetail {
            account,
            locked_until,
            delayed_clients,
            active_sessions,
        }))
    }

    pub(super) async fn change_account<E: Send>(
        &self,
        user_id: i64,
        change: AccountChange,
        now: i64,
        decide: impl FnOnce(&AccountView, &[i64]) -> Result<(), E> + Send,
        record: impl FnOnce(&AccountView, u64) -> Vec<AdminEventEntry> + Send,
    ) -> Result<ChangeOutcome<E>, StoreError> {
        let mut conn = self.write().await?;
        let mut tx = sqlx::Connection::begin_with(&mut *conn, DB::BEGIN_WRITE).await?;
        // Every active administrator's row first, always in id order, then
        // the target's: two changes never wait on each other in a cycle,
        // and one that would remove the last administrator sees every
        // change committed before it (PostgreSQL re-reads a locked row
        // once the transaction holding it ends).
        let admins: Vec<i64> =
            sqlx::query_scalar(AssertSqlSafe(format!("{ACTIVE_ADMINS}{}", DB::FOR_UPDATE)))
                .fetch_all(&mut *tx)
                .await?;
        let target: Option<AccountView> = sqlx::query_as(AssertSqlSafe(format!(
            "{}{}",
            select_account!("WHERE id = $1"),
            DB::FOR_UPDATE
        )))
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
        // Returning early drops the transaction, which rolls it back.
        let Some(before) = target else {
            return Ok(ChangeOutcome::NotFound);
        };
        if let Err(refusal) = decide(&before, &admins) {
            return Ok(ChangeOutcome::Refused(refusal));
        }
        let revoked_sessions = match change {
            AccountChange::Update {
                is_active,
                is_staff,
            } => {
                sqlx::query(
                    "UPDATE users SET is_active = CASE WHEN $2 THEN $3 ELSE is_active END,
                                      is_staff = CASE WHEN $4 THEN $5 ELSE is_staff END
                      WHERE id = $1",
                )
                .bind(user_id)
                .bind(is_active.is_some())
                .bind(is_active == Some(true))
                .bind(is_staff.is_some())
                .bind(is_staff == Some(true))
                .execute(&mut *tx)
                .await?;
                if is_active == Some(false) {
                    Self::revoke_sessions(&mut tx, user_id, now).await?
                } else {
                    0
                }
            }
            AccountChange::Delete => {
                let live: i64 = sqlx::query_scalar(
                    "SELECT COUNT(DISTINCT family_id) FROM refresh_tokens
                      WHERE user_id = $1 AND used_at IS NULL AND revoked_at IS NULL
                        AND expires_at > $2",
                )
                .bind(user_id)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                // Tokens, codes, names and known clients go by cascade.
                // Its brute-force counters are keyed by text and left to
                // upkeep's prune: ids are never reused, so they count for
                // no one, and deleting them here would take their rows
                // after the account's, the reverse of a password reset's
                // order (a deadlock, were the two to meet).
                sqlx::query("DELETE FROM users WHERE id = $1")
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                u64::try_from(live).unwrap_or(0)
            }
        };
        Self::insert_admin_events(&mut tx, &record(&before, revoked_sessions)).await?;
        tx.commit().await?;
        Ok(ChangeOutcome::Changed {
            before,
            revoked_sessions,
        })
    }
}

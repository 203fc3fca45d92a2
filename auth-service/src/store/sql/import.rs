//! `auth-service import-django` (issue #15): Django accounts with their
//! claimed names and the record of what each became, and the Django login
//! log queued into the outbox behind a watermark. Each call is one
//! transaction, so a run that stops leaves whole batches behind it.

use sqlx::{ColumnIndex, Executor};

use super::{Backend, Param, Value};
use crate::{
    domain::names::{self, ClaimKind},
    store::{DjangoAccount, DjangoImport, OutboxEntry, SqlStore, StoreError},
};

/// The watermark's row in `django_import_progress`.
const LOGIN_LOG: &str = "accounts_loginlog";

/// The key stored in `username_lower` or `email_lower` when the account
/// cannot have its own (another account holds it, or there is no email):
/// unique, and never equal to a lookup key, which are folds and so hold no
/// upper-case ASCII letter. The account is then not found by that name.
fn placeholder(django_id: i64, what: &str) -> String {
    format!("IMPORTED-DJANGO-{django_id}-{what}")
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
    pub(super) async fn import_django_users(
        &self,
        accounts: &[DjangoAccount],
        now: i64,
    ) -> Result<Vec<DjangoImport>, StoreError> {
        let mut conn = self.write().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        // A write first: runs at once take turns batch by batch (the row
        // lock on PostgreSQL, the write lock on SQLite, taken before this
        // transaction reads, so it never works from a stale snapshot), and
        // the later one finds the earlier one's accounts already there.
        sqlx::query("UPDATE django_import_progress SET updated_at = updated_at WHERE name = $1")
            .bind(LOGIN_LOG)
            .execute(&mut *tx)
            .await?;
        let mut done = Vec::with_capacity(accounts.len());
        for account in accounts {
            done.push(Self::import_django_user(&mut tx, account, now).await?);
        }
        tx.commit().await?;
        Ok(done)
    }

    /// One account on `conn` (the batch's transaction): skipped when it
    /// was imported before; else inserted with its names claimed as a
    /// registration claims them, except that a name another account holds
    /// is recorded as a collision (the way the start-up migration records
    /// one) instead of refusing the account.
    async fn import_django_user(
        conn: &mut DB::Connection,
        a: &DjangoAccount,
        now: i64,
    ) -> Result<DjangoImport, StoreError> {
        let known: Option<i64> =
            sqlx::query_scalar("SELECT django_id FROM django_imported_users WHERE django_id = $1")
                .bind(a.django_id)
                .fetch_optional(&mut *conn)
                .await?;
        if known.is_some() {
            return Ok(DjangoImport::AlreadyThere);
        }
        let username_key = names::fold(&a.username);
        let email_key = (!a.email.is_empty()).then(|| names::email_fold(&a.email));
        let username_holder = Self::holder(&mut *conn, "username_lower", &username_key).await?;
        let email_holder = match &email_key {
            Some(key) => Self::holder(&mut *conn, "email_lower", key).await?,
            None => None,
        };
        let username_lower = match username_holder {
            Some(_) => placeholder(a.django_id, "USERNAME-TAKEN"),
            None => username_key.clone(),
        };
        let email_lower = match (&email_key, email_holder) {
            (None, _) => placeholder(a.django_id, "NO-EMAIL"),
            (Some(_), Some(_)) => placeholder(a.django_id, "EMAIL-TAKEN"),
            (Some(key), None) => key.clone(),
        };
        let user_id: i64 = sqlx::query_scalar(
            "INSERT INTO users (username, username_lower, email, email_lower, password_hash,
                                password_nfkc, is_active, is_staff, created_at, verified_at)
                     VALUES ($1, $2, $3, $4, $5, FALSE, $6, $7, $8, CASE WHEN $10 THEN $9 END)
                     RETURNING id",
        )
        .bind(a.username.as_str())
        .bind(username_lower.as_str())
        .bind(a.email.as_str())
        .bind(email_lower.as_str())
        .bind(a.password_hash.as_str())
        .bind(a.is_active)
        .bind(a.is_staff)
        .bind(a.created_at)
        // Bound as a value and a flag: the generic driver bound has no
        // optional integers.
        .bind(a.verified_at.unwrap_or_default())
        .bind(a.verified_at.is_some())
        .fetch_one(&mut *conn)
        .await?;

        let mut collided: Vec<(String, ClaimKind, i64)> = Vec::new();
        for (key, kind) in names::claims(&a.username, &a.email) {
            // No email, no email claim (every such account would share
            // the empty one).
            if kind == ClaimKind::Email && a.email.is_empty() {
                continue;
            }
            if let Some(holder) = Self::claim(&mut *conn, user_id, &key, kind).await? {
                collided.push((key, kind, holder));
            }
        }
        // A folded name held by an account without claims on it (one that
        // kept its old keys at the start-up migration) is a collision too.
        for (holder, key, kind) in [
            (username_holder, Some(username_key), ClaimKind::Username),
            (email_holder, email_key, ClaimKind::Email),
        ] {
            if let (Some(holder), Some(key)) = (holder, key)
                && !collided.iter().any(|(_, k, _)| *k == kind)
            {
                collided.push((key, kind, holder));
            }
        }
        for (key, kind, holder) in &collided {
            sqlx::query(
                "INSERT INTO account_name_collisions (user_id, name_key, kind, holder_id, found_at)
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, name_key) DO NOTHING",
            )
            .bind(user_id)
            .bind(key.as_str())
            .bind(kind.as_str())
            .bind(*holder)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        }
        sqlx::query(
            "INSERT INTO django_imported_users (django_id, user_id, imported_at) VALUES ($1, $2, $3)",
        )
        .bind(a.django_id)
        .bind(user_id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        Ok(DjangoImport::Imported {
            user_id,
            collisions: collided.len(),
        })
    }

    /// The account whose `column` (`username_lower` or `email_lower`, a
    /// fixed name) is `key`.
    async fn holder(
        conn: &mut DB::Connection,
        column: &'static str,
        key: &str,
    ) -> Result<Option<i64>, sqlx::Error> {
        let sql = format!("SELECT id FROM users WHERE {column} = $1");
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(key)
            .fetch_optional(conn)
            .await
    }

    pub(super) async fn django_accounts(
        &self,
        django_ids: &[i64],
    ) -> Result<Vec<(i64, i64, String)>, StoreError> {
        let mut found = Vec::with_capacity(django_ids.len());
        for chunk in django_ids.chunks(500) {
            let mut qb = sqlx::QueryBuilder::<DB>::new(
                "SELECT d.django_id, u.id, u.username FROM django_imported_users d
                 JOIN users u ON u.id = d.user_id WHERE d.django_id IN (",
            );
            let mut list = qb.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            list.push_unseparated(")");
            found.extend(
                qb.build_query_as::<(i64, i64, String)>()
                    .fetch_all(&self.pool)
                    .await?,
            );
        }
        Ok(found)
    }

    pub(super) async fn django_log_watermark(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT last_id FROM django_import_progress WHERE name = $1")
                .bind(LOGIN_LOG)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    pub(super) async fn import_django_log(
        &self,
        attempts: &[OutboxEntry],
        from: i64,
        through: i64,
        now: i64,
    ) -> Result<Option<u64>, StoreError> {
        let mut conn = self.write().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        // First, so two runs at once cannot both queue a batch: the
        // second waits for the first's commit, then finds the watermark
        // moved and writes nothing.
        let moved = sqlx::query(
            "UPDATE django_import_progress SET last_id = $3, updated_at = $4
                     WHERE name = $1 AND last_id = $2",
        )
        .bind(LOGIN_LOG)
        .bind(from)
        .bind(through)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if DB::rows_affected(&moved) != 1 {
            return Ok(None);
        }
        let mut queued = 0;
        for attempt in attempts {
            let done = sqlx::query(
                "INSERT INTO attempt_outbox (event_id, payload, created_at) VALUES ($1, $2, $3)
                         ON CONFLICT (event_id) DO NOTHING",
            )
            .bind(attempt.event_id.as_str())
            .bind(attempt.payload.as_slice())
            .bind(attempt.created_at)
            .execute(&mut *tx)
            .await?;
            queued += DB::rows_affected(&done);
        }
        tx.commit().await?;
        Ok(Some(queued))
    }
}

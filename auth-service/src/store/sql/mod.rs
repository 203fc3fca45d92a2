//! The SQL both backends run, written once as generic code over
//! [`sqlx::Database`] and split by concern: [`users`] (accounts and
//! verification codes), [`accounts`] (accounts as administrators list and
//! change them), [`throttle`] (login reservation and rate counters),
//! [`tokens`] (refresh tokens and sessions), [`keys`] (signing keys) and
//! [`outbox`] (login attempts on their way to audit-service). Each concern is
//! an `impl SqlStore<DB>` block whose methods carry the names of the
//! [`AuthStore`] methods they implement; the one [`AuthStore`] impl below
//! only forwards to them.
//!
//! What the backends do differently is a [`Backend`] method, implemented in
//! the backend's own module (`sqlite.rs`, `postgres.rs`).
//!
//! Every concern block repeats one `where` clause (the driver capabilities
//! its queries use, see [`Value`]): Rust assumes a trait's `where` clauses
//! only where they are written, never where the trait is merely required,
//! so a single "capabilities" trait cannot stand in for them.

mod accounts;
mod identities;
mod import;
mod keys;
mod outbox;
mod password;
mod throttle;
mod tokens;
mod users;

use std::future::Future;

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Type};

use super::{
    AccountChange, AccountDetail, AccountFilter, AccountView, AdminEventEntry, AuthStore,
    ChangeOutcome, CodePurpose, DjangoAccount, DjangoImport, LoginEffects, LoginReservation,
    NameCollision, NewRefreshToken, NewUser, OutboxEntry, OutboxRow, PasswordSet, Registration,
    Rotation, SigningKeyRow, SqlStore, StoreError, StoredCode, User,
};
use crate::{
    domain::LoginLookup,
    throttle::{BruteForcePolicy, Limit, LoginKeys},
};

/// A column type the shared SQL both binds and reads; written as one bound
/// (`i64: Value<DB>`) instead of three per type.
pub trait Value<DB: sqlx::Database>:
    Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>
{
}

impl<DB: sqlx::Database, T> Value<DB> for T where
    T: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>
{
}

/// A borrowed parameter type the shared SQL binds (`&str`, `&[u8]`).
pub trait Param<DB: sqlx::Database>: Type<DB> + for<'q> Encode<'q, DB> {}

impl<DB: sqlx::Database, T> Param<DB> for T where T: Type<DB> + for<'q> Encode<'q, DB> {}

/// A driver the shared SQL runs on, and where the two differ in behaviour.
/// (The bound on `Arguments` is one Rust does imply wherever `DB: Backend`
/// is required, unlike the ones in the concern blocks' `where` clause.)
pub trait Backend: sqlx::Database<Arguments: IntoArguments<Self>> {
    /// Begins a transaction that reads rows, decides, then writes, and
    /// must not be overtaken between the two: SQLite's `BEGIN IMMEDIATE`
    /// takes the database's write lock at once (a deferred transaction that
    /// read first could not upgrade while another process wrote);
    /// PostgreSQL's plain `BEGIN`, whose rows [`Self::FOR_UPDATE`] locks.
    const BEGIN_WRITE: &'static str;
    /// Appended to a `SELECT` in such a transaction: PostgreSQL locks the
    /// rows read (` FOR UPDATE`); SQLite holds the whole database already.
    const FOR_UPDATE: &'static str;

    /// Rows a statement changed (each driver's result type has its own
    /// method; sqlx has no trait for it).
    fn rows_affected(done: &Self::QueryResult) -> u64;

    /// [`AuthStore::rotate_refresh`]: SQLite hands rotations to its batch
    /// writer; PostgreSQL runs each in its own transaction.
    fn rotate_refresh(
        store: &SqlStore<Self>,
        jti: &str,
        now: i64,
        next: &NewRefreshToken,
        family_limit: Limit,
        reuse_grace: i64,
    ) -> impl Future<Output = Result<Rotation, StoreError>> + Send;
}

/// Forwards every method to the concern module holding it (an inherent
/// method of the same name, which path resolution prefers over the trait's;
/// were it missing, the call would be to this method itself, which does not
/// compile: an async fn's future cannot contain itself).
impl<DB> AuthStore for SqlStore<DB>
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
    async fn create_user(&self, user: NewUser<'_>) -> Result<User, StoreError> {
        SqlStore::create_user(self, user).await
    }
    async fn register_user(
        &self,
        user: NewUser<'_>,
        username_held_after: i64,
    ) -> Result<Registration, StoreError> {
        SqlStore::register_user(self, user, username_held_after).await
    }
    async fn delete_unverified(&self, before: i64, batch: i64) -> Result<u64, StoreError> {
        SqlStore::delete_unverified(self, before, batch).await
    }
    async fn user_by_identifier(&self, lookup: &LoginLookup) -> Result<Option<User>, StoreError> {
        SqlStore::user_by_identifier(self, lookup).await
    }
    async fn migrate_identities(&self, batch: i64, now: i64) -> Result<u64, StoreError> {
        SqlStore::migrate_identities(self, batch, now).await
    }
    async fn name_collisions(&self) -> Result<Vec<NameCollision>, StoreError> {
        SqlStore::name_collisions(self).await
    }
    async fn user_by_email(&self, email_lower: &str) -> Result<Option<User>, StoreError> {
        SqlStore::user_by_email(self, email_lower).await
    }
    async fn set_password_hash(&self, user_id: i64, password_hash: &str) -> Result<(), StoreError> {
        SqlStore::set_password_hash(self, user_id, password_hash).await
    }
    async fn django_hash_census(&self) -> Result<Vec<(String, i64)>, StoreError> {
        SqlStore::django_hash_census(self).await
    }
    async fn user_by_id(&self, id: i64) -> Result<Option<User>, StoreError> {
        SqlStore::user_by_id(self, id).await
    }
    async fn make_staff(&self, user_id: i64) -> Result<(), StoreError> {
        SqlStore::make_staff(self, user_id).await
    }
    async fn put_code(
        &self,
        purpose: CodePurpose,
        user_id: i64,
        code: &StoredCode,
        resend_cutoff: i64,
    ) -> Result<bool, StoreError> {
        SqlStore::put_code(self, purpose, user_id, code, resend_cutoff).await
    }
    async fn code(
        &self,
        purpose: CodePurpose,
        user_id: i64,
    ) -> Result<Option<StoredCode>, StoreError> {
        SqlStore::code(self, purpose, user_id).await
    }
    async fn reserve_code_try(
        &self,
        purpose: CodePurpose,
        user_id: i64,
        max_tries: i32,
    ) -> Result<Option<StoredCode>, StoreError> {
        SqlStore::reserve_code_try(self, purpose, user_id, max_tries).await
    }
    async fn activate_with_code(
        &self,
        user_id: i64,
        code_hash: &[u8],
        now: i64,
        new_password_hash: Option<&str>,
    ) -> Result<bool, StoreError> {
        SqlStore::activate_with_code(self, user_id, code_hash, now, new_password_hash).await
    }
    async fn reserve_login(
        &self,
        keys: &LoginKeys,
        policy: &BruteForcePolicy,
        now: i64,
    ) -> Result<LoginReservation, StoreError> {
        SqlStore::reserve_login(self, keys, policy, now).await
    }
    async fn record_login(
        &self,
        attempt: &OutboxEntry,
        effects: LoginEffects<'_>,
    ) -> Result<bool, StoreError> {
        SqlStore::record_login(self, attempt, effects).await
    }
    async fn rate_hit(&self, key: &str, now: i64, window: i64) -> Result<(i64, i64), StoreError> {
        SqlStore::rate_hit(self, key, now, window).await
    }
    async fn unlock_account(
        &self,
        user_id: i64,
        record: impl FnOnce(u64) -> Vec<AdminEventEntry> + Send,
    ) -> Result<u64, StoreError> {
        SqlStore::unlock_account(self, user_id, record).await
    }
    async fn list_accounts(&self, filter: &AccountFilter) -> Result<Vec<AccountView>, StoreError> {
        SqlStore::list_accounts(self, filter).await
    }
    async fn account_detail(
        &self,
        user_id: i64,
        now: i64,
    ) -> Result<Option<AccountDetail>, StoreError> {
        SqlStore::account_detail(self, user_id, now).await
    }
    async fn change_account<E: Send>(
        &self,
        user_id: i64,
        change: AccountChange,
        now: i64,
        decide: impl FnOnce(&AccountView, &[i64]) -> Result<(), E> + Send,
        record: impl FnOnce(&AccountView, u64) -> Vec<AdminEventEntry> + Send,
    ) -> Result<ChangeOutcome<E>, StoreError> {
        SqlStore::change_account(self, user_id, change, now, decide, record).await
    }
    async fn throttle_prune(
        &self,
        before: i64,
        now: i64,
        known_before: i64,
    ) -> Result<u64, StoreError> {
        SqlStore::throttle_prune(self, before, now, known_before).await
    }
    async fn rotate_refresh(
        &self,
        jti: &str,
        now: i64,
        next: &NewRefreshToken,
        family_limit: Limit,
        reuse_grace: i64,
    ) -> Result<Rotation, StoreError> {
        DB::rotate_refresh(self, jti, now, next, family_limit, reuse_grace).await
    }
    async fn logout_family(&self, jti: &str, now: i64) -> Result<bool, StoreError> {
        SqlStore::logout_family(self, jti, now).await
    }
    async fn live_refresh_owner(&self, jti: &str, now: i64) -> Result<Option<i64>, StoreError> {
        SqlStore::live_refresh_owner(self, jti, now).await
    }
    async fn logout_user(
        &self,
        user_id: i64,
        now: i64,
        record: impl FnOnce(u64) -> Vec<AdminEventEntry> + Send,
    ) -> Result<u64, StoreError> {
        SqlStore::logout_user(self, user_id, now, record).await
    }
    async fn record_admin_event(&self, event: &AdminEventEntry) -> Result<(), StoreError> {
        SqlStore::record_admin_event(self, event).await
    }
    async fn record_password_set(
        &self,
        attempt: &OutboxEntry,
        set: PasswordSet<'_>,
    ) -> Result<bool, StoreError> {
        SqlStore::record_password_set(self, attempt, set).await
    }
    async fn kept_access_jti(&self, user_id: i64) -> Result<Option<String>, StoreError> {
        SqlStore::kept_access_jti(self, user_id).await
    }
    async fn signing_keys(&self) -> Result<Vec<SigningKeyRow>, StoreError> {
        SqlStore::signing_keys(self).await
    }
    async fn add_signing_key(&self, key: &SigningKeyRow) -> Result<bool, StoreError> {
        SqlStore::add_signing_key(self, key).await
    }
    async fn outbox_oldest(&self, limit: i64, now: i64) -> Result<Vec<OutboxRow>, StoreError> {
        SqlStore::outbox_oldest(self, limit, now).await
    }
    async fn outbox_set_aside(&self, seq: i64, refusal: &str, now: i64) -> Result<(), StoreError> {
        SqlStore::outbox_set_aside(self, seq, refusal, now).await
    }
    async fn refused_len(&self) -> Result<i64, StoreError> {
        SqlStore::refused_len(self).await
    }
    async fn outbox_remove(&self, seqs: &[i64]) -> Result<(), StoreError> {
        SqlStore::outbox_remove(self, seqs).await
    }
    async fn outbox_len(&self) -> Result<i64, StoreError> {
        SqlStore::outbox_len(self).await
    }
    async fn check_writable(&self, now: i64) -> Result<(), StoreError> {
        SqlStore::check_writable(self, now).await
    }
    async fn import_django_users(
        &self,
        accounts: &[DjangoAccount],
        now: i64,
    ) -> Result<Vec<DjangoImport>, StoreError> {
        SqlStore::import_django_users(self, accounts, now).await
    }
    async fn django_accounts(
        &self,
        django_ids: &[i64],
    ) -> Result<Vec<(i64, i64, String)>, StoreError> {
        SqlStore::django_accounts(self, django_ids).await
    }
    async fn django_log_watermark(&self) -> Result<i64, StoreError> {
        SqlStore::django_log_watermark(self).await
    }
    async fn import_django_log(
        &self,
        attempts: &[OutboxEntry],
        from: i64,
        through: i64,
        now: i64,
    ) -> Result<Option<u64>, StoreError> {
        SqlStore::import_django_log(self, attempts, from, through, now).await
    }
}

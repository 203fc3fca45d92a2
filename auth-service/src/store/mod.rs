//! Persistence behind one trait, so the service runs on SQLite (one machine)
//! or PostgreSQL (replicas) unchanged.
//!
//! Both backends share one SQL text ([`sql`], generic over the driver and
//! split by concern): SQLite accepts PostgreSQL's `$N` placeholders,
//! `RETURNING` and `ON CONFLICT`, so a second copy would only be a place for
//! the two to drift. What does differ — connection set-up, DDL, how refresh
//! rotations are scheduled — lives in [`sqlite`], [`postgres`] and
//! `migrations/<backend>/`. The rows themselves are in [`records`].

use std::{
    future::Future,
    ops::{Deref, DerefMut},
    sync::Arc,
};

use crate::{
    domain::LoginLookup,
    throttle::{BruteForcePolicy, Limit, LoginKeys},
};

mod postgres;
mod records;
mod sql;
mod sqlite;

pub use records::{
    AccountChange, AccountDetail, AccountFilter, AccountView, AdminEventEntry, ChangeOutcome,
    CodePurpose, DjangoAccount, DjangoImport, KeptSession, LoginEffects, LoginReservation,
    NameCollision, NewRefreshToken, NewUser, OutboxEntry, OutboxKind, OutboxRow, PasswordSet,
    Registration, ReservedTry, Rotation, SigningKeyRow, StoredCode, Tally, TokenOwner, User,
};

/// A store on either backend's pool; the backend is a type parameter so
/// every query is compiled for the driver it runs on.
pub struct SqlStore<DB: sqlx::Database> {
    /// Reads; on PostgreSQL writes too.
    pool: sqlx::Pool<DB>,
    /// SQLite only: the one connection all writes use, handed out first come,
    /// first served. SQLite admits one writer at a time; writers on several
    /// connections collide and retry from SQLite's busy handler, which sleeps
    /// 1, 2, 5, 10… ms, so under load a refresh waited milliseconds for a
    /// lock held for microseconds. A plain connection (not a pool of one)
    /// also skips the pool's liveness pings on every acquire and release,
    /// each a round trip to the driver's thread.
    writer: Option<Arc<tokio::sync::Mutex<DB::Connection>>>,
    /// SQLite only: refresh-token rotations go to a task that commits them in
    /// batches (see [`sqlite::RotationBatches`]).
    rotations: Option<sqlite::RotationBatches>,
}

// Manual: a derive would demand `DB: Clone`, which the driver markers are not.
impl<DB: sqlx::Database> Clone for SqlStore<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            writer: self.writer.clone(),
            rotations: self.rotations.clone(),
        }
    }
}

// Manual: connections need not be `Debug`.
impl<DB: sqlx::Database> std::fmt::Debug for SqlStore<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("pool", &self.pool)
            .field("single_writer", &self.writer.is_some())
            .finish()
    }
}

impl<DB: sqlx::Database> SqlStore<DB> {
    /// The connection for one write (or write transaction).
    async fn write(&self) -> Result<WriteConn<'_, DB>, sqlx::Error> {
        Ok(match &self.writer {
            Some(one) => WriteConn::Single(one.lock().await),
            None => WriteConn::Pooled(self.pool.acquire().await?),
        })
    }
}

/// A connection held for writing: SQLite's single writer or a pooled one.
enum WriteConn<'a, DB: sqlx::Database> {
    Single(tokio::sync::MutexGuard<'a, DB::Connection>),
    Pooled(sqlx::pool::PoolConnection<DB>),
}

impl<DB: sqlx::Database> Deref for WriteConn<'_, DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        match self {
            Self::Single(c) => c,
            Self::Pooled(c) => c,
        }
    }
}

impl<DB: sqlx::Database> DerefMut for WriteConn<'_, DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        match self {
            Self::Single(c) => c,
            Self::Pooled(c) => c,
        }
    }
}

impl<DB: sqlx::Database> SqlStore<DB> {
    /// The pool's connections right now, for the metrics endpoint.
    pub fn pool_usage(&self) -> common::metrics::PoolUsage {
        common::metrics::PoolUsage {
            open: self.pool.size(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            max: self.pool.options().get_max_connections(),
        }
    }
}

/// SQLite-backed store.
pub type SqliteStore = SqlStore<sqlx::Sqlite>;
/// PostgreSQL-backed store.
pub type PgStore = SqlStore<sqlx::Postgres>;

/// Whether opening a store may create its database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    /// Create a missing SQLite file (and its folder), then migrate: what
    /// serving does on a fresh machine.
    OrCreate,
    /// Refuse a missing SQLite file: what operator commands do, so a wrong
    /// path or working directory is an error instead of a new empty
    /// database that the command then acts on. (A server refuses a missing
    /// database by itself; an existing, empty one, such as a PostgreSQL
    /// database just created for the service, is migrated as serving would.)
    Existing,
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique column already holds the value; names the request field.
    #[error("duplicate {0}")]
    Duplicate(&'static str),
    /// The database failed or is unreachable.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The first connection could not be opened (server unreachable or
    /// refusing).
    #[error(transparent)]
    Connect(#[from] common::database::ConnectError),
    /// [`Open::Existing`] and there is no database file here.
    #[error("no database file at {}", .0.display())]
    Missing(std::path::PathBuf),
}

impl StoreError {
    /// This error as a failure to open the database of variable `var`
    /// holding `url`: one line naming both and the file or server, never
    /// the password. A missing or empty database is a configuration error
    /// (the URL points at the wrong place).
    pub fn opening(self, var: &str, url: &str) -> anyhow::Error {
        use common::database::{config_error, describe, describe_migration, location, open_error};
        match self {
            Self::Missing(_) => config_error(
                var,
                url,
                format!(
                    "no database at {}; operator commands never create one. Start auth-service \
                     once to create it, run from the folder it runs in (a relative sqlite path \
                     is read from the working directory), or give an absolute path \
                     (sqlite:///var/lib/auth/auth.db)",
                    location(url)
                ),
            )
            .into(),
            Self::Connect(e) => open_error(var, url, e),
            Self::Database(e) => open_error(var, url, describe(&e)),
            Self::Migrate(e) => open_error(var, url, describe_migration(&e)),
            Self::Duplicate(_) => open_error(var, url, self),
        }
    }
}

/// The persistence auth-service needs. Every method is one short
/// transaction; multi-step changes that must not half-happen are one method.
pub trait AuthStore: Clone + Send + Sync + 'static {
    /// Inserts an account and claims its names (see
    /// [`crate::domain::names`]) in one transaction;
    /// `Duplicate("username" | "email")` when that name, or a lookalike,
    /// is another account's username or email.
    fn create_user(
        &self,
        user: NewUser<'_>,
    ) -> impl Future<Output = Result<User, StoreError>> + Send;
    /// Registers an unverified account, replacing in the same transaction
    /// an unverified account holding its email (any age) and one holding
    /// its username created before `username_held_after`;
    /// `Duplicate("username" | "email")` when a name is still taken.
    fn register_user(
        &self,
        user: NewUser<'_>,
        username_held_after: i64,
    ) -> impl Future<Output = Result<Registration, StoreError>> + Send;
    /// Deletes up to `batch` unverified accounts created before `before`,
    /// with everything referring to them; how many were deleted.
    fn delete_unverified(
        &self,
        before: i64,
        batch: i64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// The account `identifier` (as a client would type it) names, by
    /// [`Self::user_by_identifier`]'s rule; `None` also for text that can
    /// name no account. For operator commands and tests.
    fn user_by_login(
        &self,
        identifier: &str,
    ) -> impl Future<Output = Result<Option<User>, StoreError>> + Send {
        async move {
            match crate::domain::LoginIdentifier::new(identifier).lookup() {
                Some(lookup) => self.user_by_identifier(&lookup).await,
                None => Ok(None),
            }
        }
    }
    /// The account a login identifier names: its email's account first,
    /// then an account by its pre-migration key, then by username.
    fn user_by_identifier(
        &self,
        lookup: &LoginLookup,
    ) -> impl Future<Output = Result<Option<User>, StoreError>> + Send;
    /// Migrates up to `batch` accounts that predate claimed names (one
    /// transaction); returns how many, 0 when all are done (then recorded).
    fn migrate_identities(
        &self,
        batch: i64,
        now: i64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Accounts whose names collided with an older account's at that
    /// migration.
    fn name_collisions(
        &self,
    ) -> impl Future<Output = Result<Vec<NameCollision>, StoreError>> + Send;
    /// The account with this lower-cased email.
    fn user_by_email(
        &self,
        email_lower: &str,
    ) -> impl Future<Output = Result<Option<User>, StoreError>> + Send;
    /// Replaces the account's password hash (an upgrade to current params).
    fn set_password_hash(
        &self,
        user_id: i64,
        password_hash: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The accounts holding a Django password hash (not yet replaced by
    /// argon2id; Django's unusable `!` markers aside), counted by the first
    /// characters after `pbkdf2_sha256$` (its iteration count, then salt),
    /// `""` for the other Django formats: see
    /// [`crate::hasher::django::decoy_iterations`].
    fn django_hash_census(
        &self,
    ) -> impl Future<Output = Result<Vec<(String, i64)>, StoreError>> + Send;
    /// The account with this id.
    fn user_by_id(&self, id: i64) -> impl Future<Output = Result<Option<User>, StoreError>> + Send;
    /// Makes the account an administrator (`is_staff`); its tokens say so
    /// from its next login or refresh.
    fn make_staff(&self, user_id: i64) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Replaces the account's code for `purpose` unless the current one was
    /// created after `resend_cutoff`; returns whether the new code was
    /// stored.
    fn put_code(
        &self,
        purpose: CodePurpose,
        user_id: i64,
        code: &StoredCode,
        resend_cutoff: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// The account's current code for `purpose`.
    fn code(
        &self,
        purpose: CodePurpose,
        user_id: i64,
    ) -> impl Future<Output = Result<Option<StoredCode>, StoreError>> + Send;
    /// Counts one try against the account's current code for `purpose`,
    /// unless it has had `max_tries` already, and returns the code as
    /// counted; `None` when there is no code or its tries are used up. The
    /// count comes first so parallel guesses cannot all be compared against
    /// one code.
    fn reserve_code_try(
        &self,
        purpose: CodePurpose,
        user_id: i64,
        max_tries: i32,
    ) -> impl Future<Output = Result<Option<StoredCode>, StoreError>> + Send;
    /// Deletes the code with this digest and activates the account (with
    /// `new_password_hash` as its password, when given), atomically; false
    /// when the code was already consumed.
    fn activate_with_code(
        &self,
        user_id: i64,
        code_hash: &[u8],
        now: i64,
        new_password_hash: Option<&str>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Counts one login try under all three keys as a failure and applies
    /// `policy`, in one transaction, unless a key is blocked at `now` (then
    /// nothing is counted). A client known to the account (a successful
    /// login from it within `policy.known_client_ttl`) skips the account key. The counter rows are locked while this runs, so
    /// tries from every replica at the same instant are counted one after
    /// another and each sees the blocks the earlier ones started.
    fn reserve_login(
        &self,
        keys: &LoginKeys,
        policy: &BruteForcePolicy,
        now: i64,
    ) -> impl Future<Output = Result<LoginReservation, StoreError>> + Send;
    /// Writes a login attempt to the outbox and its `effects`, in one
    /// transaction; a success also becomes the account's last login. False,
    /// and nothing written, when a success's account is no longer active
    /// (deactivated or deleted since its password was checked): the caller
    /// records the attempt again as refused.
    fn record_login(
        &self,
        attempt: &OutboxEntry,
        effects: LoginEffects<'_>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Counts one event under `key` in a fixed window of `window` seconds;
    /// returns the count so far and when the window began.
    fn rate_hit(
        &self,
        key: &str,
        now: i64,
        window: i64,
    ) -> impl Future<Output = Result<(i64, i64), StoreError>> + Send;
    /// Clears the account's lock and counters (all IPs) and writes the
    /// admin events `record` makes of the rows removed into the outbox, in
    /// one transaction; returns rows removed.
    fn unlock_account(
        &self,
        user_id: i64,
        record: impl FnOnce(u64) -> Vec<AdminEventEntry> + Send,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Accounts matching `filter`, newest (highest id) first.
    fn list_accounts(
        &self,
        filter: &AccountFilter,
    ) -> impl Future<Output = Result<Vec<AccountView>, StoreError>> + Send;
    /// The account with this id, with its lock, delayed clients and live
    /// sessions as of `now`.
    fn account_detail(
        &self,
        user_id: i64,
        now: i64,
    ) -> impl Future<Output = Result<Option<AccountDetail>, StoreError>> + Send;
    /// Applies an administrator's `change` to account `user_id` if `decide`
    /// allows it, shown the account as it is and the ids of every active
    /// administrator. One transaction that holds every active
    /// administrator's row and the target's while it decides and writes
    /// (PostgreSQL: rows locked `FOR UPDATE`, in id order; SQLite: the write
    /// lock, taken as it begins), so changes from every replica at one
    /// instant are decided one after another, each seeing the earlier ones.
    /// A change made also writes the admin events `record` makes of the
    /// account as it was and the sessions revoked into the outbox, in that
    /// transaction; a refused change writes none.
    fn change_account<E: Send>(
        &self,
        user_id: i64,
        change: AccountChange,
        now: i64,
        decide: impl FnOnce(&AccountView, &[i64]) -> Result<(), E> + Send,
        record: impl FnOnce(&AccountView, u64) -> Vec<AdminEventEntry> + Send,
    ) -> impl Future<Output = Result<ChangeOutcome<E>, StoreError>> + Send;
    /// Forgets counters whose window began before `before` and that block
    /// nothing any more, and clients last known before `known_before`.
    fn throttle_prune(
        &self,
        before: i64,
        now: i64,
        known_before: i64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Uses up refresh token `jti` and stores its successor `next` (whose
    /// family and owner are taken from the used token), unless the family
    /// refreshed more than `family_limit` allows. A token used at most
    /// `reuse_grace` seconds ago (0: never) whose successor is still live
    /// is [`Rotation::Replayed`]; any other used one revokes its family.
    fn rotate_refresh(
        &self,
        jti: &str,
        now: i64,
        next: &NewRefreshToken,
        family_limit: Limit,
        reuse_grace: i64,
    ) -> impl Future<Output = Result<Rotation, StoreError>> + Send;
    /// Revokes the family of live refresh token `jti`; false when the token
    /// is unknown, expired, used or revoked (a used one also revokes its
    /// family, as reuse does).
    fn logout_family(
        &self,
        jti: &str,
        now: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// The owner of live (unused, unrevoked, unexpired) refresh token `jti`.
    fn live_refresh_owner(
        &self,
        jti: &str,
        now: i64,
    ) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;
    /// Revokes every refresh token of the user and records `now` as the
    /// user's `sessions_revoked_at`, and writes the admin events `record`
    /// makes of the families revoked into the outbox, in one transaction;
    /// returns how many families.
    fn logout_user(
        &self,
        user_id: i64,
        now: i64,
        record: impl FnOnce(u64) -> Vec<AdminEventEntry> + Send,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Writes one admin event into the outbox on its own: for an action
    /// whose effect is outside the database (a mail sent).
    fn record_admin_event(
        &self,
        event: &AdminEventEntry,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Writes a password change or reset attempt to the outbox and sets the
    /// password with all that goes with it (see [`PasswordSet`]), in one
    /// transaction; false (and nothing written) when a reset's code was
    /// already used.
    fn record_password_set(
        &self,
        attempt: &OutboxEntry,
        set: PasswordSet<'_>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// The access token `jti` a password change kept alive in the second of
    /// the user's `sessions_revoked_at`.
    fn kept_access_jti(
        &self,
        user_id: i64,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
    /// All signing keys, latest `not_before` first.
    fn signing_keys(&self) -> impl Future<Output = Result<Vec<SigningKeyRow>, StoreError>> + Send;
    /// Adds a signing key; `false` (and nothing written) when a key
    /// superseding the same key is already there: another replica added
    /// one on the same state first.
    fn add_signing_key(
        &self,
        key: &SigningKeyRow,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// The oldest `limit` outbox rows ready to send, after closing the
    /// tallies due at `now` (so later refusals start a new row and none is
    /// counted into a row already sent). Tallies not yet due wait.
    fn outbox_oldest(
        &self,
        limit: i64,
        now: i64,
    ) -> impl Future<Output = Result<Vec<OutboxRow>, StoreError>> + Send;
    /// Moves outbox row `seq` (an attempt or an admin event, which keeps its
    /// kind) to `refused_attempts` with audit-service's
    /// `refusal`, in one transaction: kept for an operator, out of the way
    /// of the rows behind it.
    fn outbox_set_aside(
        &self,
        seq: i64,
        refusal: &str,
        now: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Attempts set aside as refused, for the backlog metric and tests.
    fn refused_len(&self) -> impl Future<Output = Result<i64, StoreError>> + Send;
    /// Deletes exactly these outbox rows (acknowledged by audit-service).
    fn outbox_remove(&self, seqs: &[i64]) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Rows waiting in the outbox.
    fn outbox_len(&self) -> impl Future<Output = Result<i64, StoreError>> + Send;
    /// Imports Django accounts (with their names, collisions and the
    /// record of what each became) in one transaction, in order; one
    /// imported before is [`DjangoImport::AlreadyThere`].
    fn import_django_users(
        &self,
        accounts: &[DjangoAccount],
        now: i64,
    ) -> impl Future<Output = Result<Vec<DjangoImport>, StoreError>> + Send;
    /// For those of `django_ids` whose account still exists: the Django
    /// id, the id here and the username.
    fn django_accounts(
        &self,
        django_ids: &[i64],
    ) -> impl Future<Output = Result<Vec<(i64, i64, String)>, StoreError>> + Send;
    /// The last `accounts_loginlog` id queued into the outbox (0: none).
    fn django_log_watermark(&self) -> impl Future<Output = Result<i64, StoreError>> + Send;
    /// Queues imported log rows into the outbox (an event already there is
    /// skipped) and moves the watermark from `from` to `through`, in one
    /// transaction; how many were queued, or `None` (and nothing written)
    /// when the watermark was no longer `from` (another run moved it).
    fn import_django_log(
        &self,
        attempts: &[OutboxEntry],
        from: i64,
        through: i64,
        now: i64,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;
    /// A write (an upsert of the heartbeat row at `now`), for readiness and
    /// the start-up check: a ping passes on a database that answers reads
    /// but refuses every write, and then every request that writes fails.
    fn check_writable(&self, now: i64) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A `record` argument for a change that is no administrator's action
/// (a user ending their own sessions): no admin event.
pub fn no_admin_events(_: u64) -> Vec<AdminEventEntry> {
    Vec::new()
}

/// Maps a unique violation to the request field it concerns.
fn unique_violation(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e
        && db.is_unique_violation()
    {
        let text = format!("{} {}", db.message(), db.constraint().unwrap_or(""));
        return StoreError::Duplicate(if text.contains("email") {
            "email"
        } else {
            "username"
        });
    }
    StoreError::Database(e)
}

#[cfg(test)]
mod key_tests;
#[cfg(test)]
mod tests;

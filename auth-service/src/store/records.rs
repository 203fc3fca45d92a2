//! The records the store reads and writes: account, code, token, attempt
//! and key rows, and what the login and refresh transactions decided.

use crate::throttle::LoginKeys;

/// A stored account.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct User {
    /// Primary key; the JWT `user_id`.
    pub id: i64,
    /// As registered.
    pub username: String,
    /// As registered (domain lower-cased).
    pub email: String,
    /// PHC string (argon2id).
    pub password_hash: String,
    /// Verified and not disabled.
    pub is_active: bool,
    /// Administrator.
    pub is_staff: bool,
    /// When the user last logged out everywhere (Unix seconds): access
    /// tokens issued up to then no longer introspect as active.
    pub sessions_revoked_at: Option<i64>,
    /// `password_hash` is of the password's NFKC form; false for hashes
    /// made before passwords were normalised (and for a query that does
    /// not read the column: such a row is then treated as legacy, which
    /// costs a second try at most, never a wrong answer).
    #[sqlx(default)]
    pub password_nfkc: bool,
    /// Unix seconds.
    pub created_at: i64,
    /// When the email was verified (Unix seconds); `None` while unverified.
    pub verified_at: Option<i64>,
}

impl User {
    /// Not verified yet: such an account holds its email only until a new
    /// registration of that email, and its username for the unverified
    /// TTL (a disabled account was verified and is not one).
    pub fn unverified(&self) -> bool {
        !self.is_active && self.verified_at.is_none()
    }

    /// Unverified and waiting for a code to verify it: created at most
    /// `ttl` seconds before `now` (older ones hold nothing and are swept).
    /// A verified account (active, or disabled by an operator) is never
    /// (re-)activated by a code.
    pub fn awaiting_verification(&self, now: i64, ttl: i64) -> bool {
        self.unverified() && self.created_at >= now - ttl
    }
}

/// What a registration did.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The new account.
    pub user: User,
    /// Unverified accounts it replaced (0 or 1, or 2 when one held the
    /// email and another the username).
    pub replaced: u64,
}

/// An account whose new name key was already claimed by an older account
/// when existing rows were migrated (issue #14).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NameCollision {
    /// The later account, which keeps its old keys.
    pub user_id: i64,
    /// Its username.
    pub username: String,
    /// Its email.
    pub email: String,
    /// Which of its names collided (`username`, `username_email`, `email`).
    pub kind: String,
    /// The key (a TR39 skeleton, or a folded name).
    pub name_key: String,
    /// The account holding the key.
    pub holder_id: i64,
    /// Its username.
    pub holder_username: String,
    /// Its email.
    pub holder_email: String,
}

/// An account to create.
#[derive(Debug)]
pub struct NewUser<'a> {
    /// Display form (NFKC).
    pub username: &'a str,
    /// The lookup key ([`crate::domain::Username::lookup_key`]), unique.
    pub username_lower: &'a str,
    /// Display form (NFC local part, IDNA ASCII domain).
    pub email: &'a str,
    /// The lookup key ([`crate::domain::EmailAddress::lookup_key`]), unique.
    pub email_lower: &'a str,
    /// PHC string of the password's NFKC form (what
    /// [`crate::hasher::PasswordHasher::hash`] makes).
    pub password_hash: &'a str,
    /// Active immediately (admins made by the CLI), else after verification.
    pub is_active: bool,
    /// Administrator.
    pub is_staff: bool,
    /// Unix seconds.
    pub now: i64,
}

/// An account of the Django service, as `auth-service import-django`
/// brings it over (see [`crate::import`]).
#[derive(Debug, Clone)]
pub struct DjangoAccount {
    /// `accounts_user.id` in the Django database.
    pub django_id: i64,
    /// As stored there.
    pub username: String,
    /// As stored there; may be empty.
    pub email: String,
    /// The Django hash as is (or its unusable `!` marker): verified at
    /// login and replaced by argon2id on the first success.
    pub password_hash: String,
    /// Can log in (verified and not disabled).
    pub is_active: bool,
    /// Administrator (Django's `is_staff`).
    pub is_staff: bool,
    /// `date_joined`, Unix seconds.
    pub created_at: i64,
    /// When it was verified, Unix seconds; `None` for an account still
    /// waiting for its code.
    pub verified_at: Option<i64>,
}

/// What importing one Django account did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DjangoImport {
    /// A new account was created.
    Imported {
        /// Its id here.
        user_id: i64,
        /// Names of it another account held (recorded as collisions).
        collisions: usize,
    },
    /// An earlier run imported it (it may have been deleted since).
    AlreadyThere,
}

/// What an emailed code is for. Each purpose keeps its own code per
/// account, so a reset never overwrites a pending verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodePurpose {
    /// Proving the mailbox of a new account.
    Verification,
    /// Setting a new password.
    PasswordReset,
}

impl CodePurpose {
    /// The table holding this purpose's codes (same columns in each).
    pub(crate) fn table(self) -> &'static str {
        match self {
            Self::Verification => "verification_codes",
            Self::PasswordReset => "password_reset_codes",
        }
    }
}

/// A verification code as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredCode {
    /// Salted SHA-256 of the code.
    pub code_hash: Vec<u8>,
    /// Per-code random salt.
    pub salt: Vec<u8>,
    /// Unix seconds; throttles re-sending.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// Wrong tries so far.
    pub tries: i32,
}

/// A refresh token to record.
#[derive(Debug, Clone)]
pub struct NewRefreshToken {
    /// The token's `jti`.
    pub jti: String,
    /// Rotation family: all tokens descended from one login.
    pub family_id: String,
    /// Owner.
    pub user_id: i64,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
}

/// What tokens say about their account, as read while rotating a refresh
/// token (the rest of the account row is not needed to sign).
#[derive(Debug, Clone)]
pub struct TokenOwner {
    /// The JWT `user_id`.
    pub id: i64,
    /// For display.
    pub username: String,
    /// Administrator.
    pub is_staff: bool,
}

impl From<&User> for TokenOwner {
    fn from(user: &User) -> Self {
        Self {
            id: user.id,
            username: user.username.clone(),
            is_staff: user.is_staff,
        }
    }
}

/// What presenting a refresh token did.
#[derive(Debug)]
pub enum Rotation {
    /// The token was live; it is now used and its successor is stored.
    Rotated(TokenOwner),
    /// The token was used moments ago (within the reuse grace) and the
    /// token that use issued is still live: nothing changed, and the caller
    /// answers with that same successor, as the first use did.
    Replayed {
        /// The account, as now.
        owner: TokenOwner,
        /// The successor as stored (its `jti`, `issued_at`, `expires_at`).
        successor: NewRefreshToken,
    },
    /// The token had been used before: its whole family is now revoked.
    Reused,
    /// Unknown, expired or revoked.
    Invalid,
    /// The owner is no longer active; the family is revoked.
    Inactive,
    /// The family refreshed more than its limit allows; nothing changed.
    /// Seconds to wait.
    Throttled(u64),
}

/// What a recorded login attempt writes besides its outbox row. A failure
/// writes nothing more: its try was counted when it was reserved.
#[derive(Debug, Clone, Copy)]
pub enum LoginEffects<'a> {
    /// Nothing more (a failure already reserved, a malformed or a refused
    /// attempt).
    Nothing,
    /// A success: the session's refresh token is stored, the account's and
    /// this pair's counts start over, and the reserved IP try is given back
    /// (successes are not stuffing).
    Success {
        /// The issued refresh token.
        refresh: &'a NewRefreshToken,
        /// The attempt's counters.
        keys: &'a LoginKeys,
        /// The reservation that let this try in.
        reserved: &'a ReservedTry,
    },
}

/// A login try that was counted before its password was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReservedTry {
    /// The client has logged in to this account before, so the account
    /// counter was left alone (and a success leaves it alone too).
    pub known_client: bool,
    /// This try started an account lock, so it is the one that tells the
    /// owner (once per lock) should it fail.
    pub lock_started: bool,
    /// When the IP counter's window began, so a success gives its try back
    /// to that window and no later one.
    pub ip_window_start: i64,
}

/// What reserving a login try decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginReservation {
    /// Counted; the password may be checked.
    Granted(ReservedTry),
    /// One of the keys is blocked; nothing was counted.
    Refused {
        /// The latest `blocked_until` among the blocked keys.
        until: i64,
        /// The account itself is locked (else: the pair or the IP).
        account_locked: bool,
    },
}

impl LoginReservation {
    /// The counted try, or the reason the attempt is refused (its account
    /// locked, else throttled) and the time the block lasts until.
    pub fn granted(self) -> Result<ReservedTry, (proto::audit::v1::RejectReason, i64)> {
        use proto::audit::v1::RejectReason;
        match self {
            Self::Granted(reserved) => Ok(reserved),
            Self::Refused {
                until,
                account_locked: true,
            } => Err((RejectReason::LockedOut, until)),
            Self::Refused { until, .. } => Err((RejectReason::RateLimited, until)),
        }
    }
}

/// One login attempt for the outbox (an encoded `audit.v1.Attempt`).
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    /// The attempt's UUIDv7.
    pub event_id: String,
    /// Protobuf encoding of the attempt.
    pub payload: Vec<u8>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix microseconds, the attempt's exact time (a tally's last time).
    pub occurred_micros: i64,
    /// Set for an attempt refused before any password work: it is counted
    /// into the open row of its key instead of getting a row of its own.
    pub tally: Option<Tally>,
}

/// Where a refused attempt is counted: attempts with one `key` (client,
/// reason, window) share one outbox row until the window ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    /// The key, window included.
    pub key: String,
    /// Unix seconds when the window ends and the row may be sent.
    pub due_at: i64,
}

/// An administrator's action for the outbox (an encoded
/// `audit.v1.AdminEvent`), written in the transaction of the change it
/// records: a committed change always has its event, a rolled-back one
/// never does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminEventEntry {
    /// The event's UUIDv7.
    pub event_id: String,
    /// Protobuf encoding of the event.
    pub payload: Vec<u8>,
    /// Unix seconds.
    pub created_at: i64,
}

/// What an outbox row's payload is (its `kind` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxKind {
    /// An `audit.v1.Attempt` (`attempt`, also every row from before kinds).
    Attempt,
    /// An `audit.v1.AdminEvent` (`admin_event`).
    AdminEvent,
}

impl OutboxKind {
    /// The spelling in the `kind` column.
    pub fn code(self) -> &'static str {
        match self {
            Self::Attempt => "attempt",
            Self::AdminEvent => "admin_event",
        }
    }
}

impl TryFrom<String> for OutboxKind {
    type Error = String;

    fn try_from(code: String) -> Result<Self, String> {
        match code.as_str() {
            "attempt" => Ok(Self::Attempt),
            "admin_event" => Ok(Self::AdminEvent),
            _ => Err(format!("unknown outbox kind {code:?}")),
        }
    }
}

/// An outbox row read for forwarding.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    /// Insertion order.
    pub seq: i64,
    /// What the payload is.
    #[sqlx(try_from = "String")]
    pub kind: OutboxKind,
    /// Protobuf encoding of the (first) attempt, or of the admin event.
    pub payload: Vec<u8>,
    /// How many attempts the row stands for.
    pub tally_count: i64,
    /// Unix microseconds of the last of them (set on tallied rows).
    pub last_at: Option<i64>,
}

/// A signing key as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SigningKeyRow {
    /// Key id (`kid`).
    pub kid: String,
    /// The private key: an Ed25519 seed (32 bytes), or PKCS#8 DER for
    /// ES256 and RS256.
    pub secret: Vec<u8>,
    /// The one algorithm it signs with.
    #[sqlx(try_from = "String")]
    pub alg: crate::tokens::KeyAlgorithm,
    /// The `kid` of the key added last before it (`""` for the first key;
    /// `None` for keys added before this was recorded). Unique: of two
    /// keys added on the same state, the store takes one.
    pub supersedes: Option<String>,
    /// Unix seconds: when it was added, and so published.
    pub created_at: i64,
    /// Unix seconds: when it starts signing (later than `created_at` by
    /// the publish delay, so cached key sets learn it first). The key with
    /// the latest `not_before` that has passed signs.
    pub not_before: i64,
}

/// A new password being set (a change or a reset), with everything that
/// goes with it in the one transaction that records its attempt: every
/// session of the user is revoked, access tokens issued up to `now` stop
/// introspecting as active, and, for a change, the caller's fresh session
/// is stored and its login counters are treated as after a login.
#[derive(Debug, Clone, Copy)]
pub struct PasswordSet<'a> {
    /// The account.
    pub user_id: i64,
    /// PHC string of the new password.
    pub password_hash: &'a str,
    /// Unix seconds.
    pub now: i64,
    /// A reset: the digest of the reset code it uses up. Nothing is written
    /// when that code is no longer stored (another request used it first).
    /// A reset also clears the account's lock and per-account counters: the
    /// password they protected is gone.
    pub reset_code: Option<&'a [u8]>,
    /// A change: the caller's fresh session, which survives the revocation.
    pub kept: Option<KeptSession<'a>>,
}

/// The session a password change hands back.
#[derive(Debug, Clone, Copy)]
pub struct KeptSession<'a> {
    /// Its refresh token (a new family).
    pub refresh: &'a NewRefreshToken,
    /// Its access token's `jti`, issued in the revocation's second.
    pub access_jti: &'a str,
    /// The change's login counters.
    pub keys: &'a LoginKeys,
    /// The reservation that let the current password be checked.
    pub reserved: &'a ReservedTry,
}

/// An account as administrators see it (issue #16): the row without its
/// secrets.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AccountView {
    /// Primary key; the JWT `user_id`.
    pub id: i64,
    /// As registered.
    pub username: String,
    /// As registered.
    pub email: String,
    /// May log in (verified and not deactivated).
    pub is_active: bool,
    /// Administrator.
    pub is_staff: bool,
    /// Registered at (Unix seconds).
    pub created_at: i64,
    /// Email verified at (Unix seconds); `None` while unverified.
    pub verified_at: Option<i64>,
    /// Last successful login (Unix seconds); `None`: never, or not since
    /// migration 0015 began recording it.
    pub last_login_at: Option<i64>,
}

impl AccountView {
    /// An active administrator: one of those the system must keep at
    /// least one of.
    pub fn is_active_admin(&self) -> bool {
        self.is_active && self.is_staff
    }

    /// Not verified yet (see [`User::unverified`]).
    pub fn unverified(&self) -> bool {
        !self.is_active && self.verified_at.is_none()
    }
}

/// One account with what other tables say about it, as of one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountDetail {
    /// The account.
    pub account: AccountView,
    /// Until when the account is locked (Unix seconds), if it is now.
    pub locked_until: Option<i64>,
    /// Client addresses whose account + address counter delays them now.
    pub delayed_clients: i64,
    /// Refresh token families with a live token.
    pub active_sessions: i64,
}

/// Which accounts a listing shows, newest (highest id) first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountFilter {
    /// A `LIKE` pattern (with `\` escaping) the username's or the email's
    /// lookup key must match; `None`: any.
    pub pattern: Option<String>,
    /// Only accounts whose `is_active` is this.
    pub is_active: Option<bool>,
    /// Only accounts whose `is_staff` is this.
    pub is_staff: Option<bool>,
    /// Only verified (`true`) or unverified (`false`) accounts.
    pub verified: Option<bool>,
    /// Only accounts with a lower id (the keyset position).
    pub before_id: Option<i64>,
    /// At most this many.
    pub limit: i64,
}

/// What an administrator changes about an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountChange {
    /// Sets the flags given. Clearing `is_active` also revokes every session
    /// of the account, in the same transaction.
    Update {
        /// New `is_active`; `None` leaves it.
        is_active: Option<bool>,
        /// New `is_staff`; `None` leaves it.
        is_staff: Option<bool>,
    },
    /// Deletes the account with everything that refers to it by foreign
    /// key (sessions, codes, names, known clients).
    Delete,
}

/// What [`crate::store::AuthStore::change_account`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeOutcome<E> {
    /// Done.
    Changed {
        /// The account as it was before.
        before: AccountView,
        /// Sessions (refresh token families) the change revoked.
        revoked_sessions: u64,
    },
    /// No account has this id.
    NotFound,
    /// The caller's rule refused the change; nothing was written.
    Refused(E),
}

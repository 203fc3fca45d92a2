//! The `auth.v1.AuthService` use cases, one module per concern, behind a
//! thin gRPC adapter ([`grpc`]); `admin` serves `auth.v1.AdminService`
//! over the use cases of [`crate::users`]. Each use case takes the instant
//! it runs at: the adapter reads the clock once per request, so one attempt
//! has one time in its counters, tokens and log record, and the rules can
//! be exercised at a fixed time.

mod admin;
mod codes;
mod grpc;
mod login;
mod password;
mod recording;
mod registration;
mod sessions;

use std::sync::Arc;

use lettre::message::Mailbox;
use tokio::sync::Notify;

use crate::{
    context::ClientContext,
    error::Error,
    hasher::PasswordHasher,
    mail::Mailer,
    store::AuthStore,
    throttle::{BruteForcePolicy, DEFAULT_IPV6_PREFIX, Limit, RateLimits, client_key},
    tokens::{Claims, TokenService},
    users::UserAdmin,
};

/// Shared state of the API.
pub struct AuthApi<S> {
    store: S,
    hasher: PasswordHasher,
    tokens: Arc<TokenService>,
    mailer: Mailer,
    mail_from: Mailbox,
    /// Wakes the outbox forwarder when an attempt is written.
    outbox_signal: Arc<Notify>,
    /// Login brute-force thresholds.
    brute_force: BruteForcePolicy,
    /// Per-IP and per-family limits.
    limits: RateLimits,
    /// The IPv6 prefix length every per-IP counter counts by.
    ipv6_prefix: u8,
    /// Seconds (at least 1) refused attempts of one key gather into one
    /// log record.
    refused_tally_window: i64,
    /// The mail relay speaks SMTPUTF8: non-ASCII local parts may register.
    smtputf8: bool,
    /// Seconds a used refresh token may be presented again and get its
    /// successor (0: never).
    refresh_reuse_grace: i64,
    /// Whether a refresh spends its token and issues a successor
    /// (`JWT_ROTATE_REFRESH_TOKENS`); otherwise it issues an access token
    /// only and the refresh token stays usable.
    rotate_refresh_tokens: bool,
    /// Seconds an unverified account holds its username against other
    /// registrations and can still be verified.
    unverified_ttl: i64,
    /// Verification by code alone, as the old service did (insecure: it
    /// activates a password the mailbox owner may not have chosen).
    verify_without_password: bool,
    /// User administration, served as `auth.v1.AdminService`.
    users: UserAdmin<S>,
}

/// Default `JWT_REFRESH_REUSE_GRACE`.
pub const DEFAULT_REFRESH_REUSE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
/// Default `AUTH_UNVERIFIED_TTL`.
pub const DEFAULT_UNVERIFIED_TTL: std::time::Duration = std::time::Duration::from_secs(86_400);

impl<S: AuthStore> AuthApi<S> {
    /// Assembles the API over its collaborators.
    pub fn new(
        store: S,
        hasher: PasswordHasher,
        tokens: Arc<TokenService>,
        mailer: Mailer,
        mail_from: Mailbox,
        outbox_signal: Arc<Notify>,
    ) -> Self {
        let users = UserAdmin::new(
            store.clone(),
            mailer.clone(),
            mail_from.clone(),
            DEFAULT_UNVERIFIED_TTL,
        );
        Self {
            store,
            hasher,
            tokens,
            mailer,
            mail_from,
            outbox_signal,
            brute_force: BruteForcePolicy::default(),
            limits: RateLimits::default(),
            ipv6_prefix: DEFAULT_IPV6_PREFIX,
            refused_tally_window: secs(crate::attempt::DEFAULT_REFUSED_TALLY_WINDOW),
            smtputf8: false,
            refresh_reuse_grace: crate::throttle::secs(DEFAULT_REFRESH_REUSE_GRACE),
            rotate_refresh_tokens: true,
            unverified_ttl: crate::throttle::secs(DEFAULT_UNVERIFIED_TTL),
            verify_without_password: false,
            users,
        }
    }

    /// The user-administration use cases (`auth.v1.AdminService` calls
    /// them once [`Self::admin_actor`] has authenticated the caller).
    pub fn users(&self) -> &UserAdmin<S> {
        &self.users
    }

    /// Lets addresses with a non-ASCII local part register (the relay
    /// speaks SMTPUTF8).
    pub fn with_smtputf8(mut self, smtputf8: bool) -> Self {
        self.smtputf8 = smtputf8;
        self
    }

    /// How long a used refresh token may be presented again and get the
    /// token its first use issued (zero: never).
    pub fn with_refresh_reuse_grace(mut self, grace: std::time::Duration) -> Self {
        self.refresh_reuse_grace = crate::throttle::secs(grace);
        self
    }

    /// Whether refresh tokens rotate (see
    /// [`crate::Config::rotate_refresh_tokens`]).
    pub fn with_refresh_rotation(mut self, rotate: bool) -> Self {
        self.rotate_refresh_tokens = rotate;
        self
    }

    /// How long an unverified account holds its username, and whether a
    /// code alone verifies (see [`crate::Config::verify_without_password`]).
    pub fn with_unverified_accounts(
        mut self,
        ttl: std::time::Duration,
        verify_without_password: bool,
    ) -> Self {
        self.unverified_ttl = crate::throttle::secs(ttl);
        self.verify_without_password = verify_without_password;
        self.users = self.users.with_unverified_ttl(ttl);
        self
    }

    /// Replaces the default thresholds.
    pub fn with_limits(mut self, brute_force: BruteForcePolicy, limits: RateLimits) -> Self {
        self.brute_force = brute_force;
        self.limits = limits;
        self
    }

    /// Counts IPv6 clients by networks of this prefix length.
    pub fn with_ipv6_prefix(mut self, prefix: u8) -> Self {
        self.ipv6_prefix = prefix;
        self
    }

    /// Logs refused attempts of one key and window of this length as one
    /// record with a count.
    pub fn with_refused_tally_window(mut self, window: std::time::Duration) -> Self {
        self.refused_tally_window = secs(window);
        self
    }

    /// The key a client is counted under (see [`client_key`]).
    fn client(&self, ctx: &ClientContext) -> String {
        client_key(&ctx.ip, self.ipv6_prefix)
    }

    /// Counts one `action` from the caller's network before any work is
    /// done for it; refuses past `limit`. Callers that send no address are
    /// counted together as one client, so leaving it out escapes nothing.
    async fn rate_limit(
        &self,
        action: &str,
        limit: Limit,
        ctx: &ClientContext,
        now: i64,
    ) -> Result<(), Error> {
        let (hits, start) = self
            .store
            .rate_hit(
                &format!("rl:{action}:{}", self.client(ctx)),
                now,
                limit.window,
            )
            .await?;
        match limit.retry_after(hits, start, now) {
            Some(retry_after) => {
                tracing::warn!(action, ip = %ctx.ip, "rate limit reached");
                Err(Error::Throttled { retry_after })
            }
            None => Ok(()),
        }
    }

    /// Verifies `token`, re-reading the signing keys first when it names
    /// a key this replica has not loaded (added by `rotate-keys`).
    async fn verify_token(&self, token: &str, token_type: &str) -> Result<Claims, Error> {
        if self.tokens.should_reload_for(token) {
            self.tokens.reload(&self.store).await?;
        }
        self.tokens.verify(token, token_type)
    }
}

/// A random id for a token (`jti`) or a refresh family.
fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Whole seconds of `window`, at least 1 (a window is never empty).
fn secs(window: std::time::Duration) -> i64 {
    i64::try_from(window.as_secs()).unwrap_or(i64::MAX).max(1)
}

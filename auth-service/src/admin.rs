//! Operator commands that act on the auth database directly.
//!
//! They open the configured database with [`Open::Existing`]: a missing
//! SQLite file (a relative path read from another working directory is the
//! usual cause) is an error naming `AUTH_DATABASE_URL` and the absolute
//! path, never a new empty database.

use crate::{
    config::Config,
    domain::{EmailAddress, FieldError, LoginLookup, Password, Username},
    hasher::PasswordHasher,
    store::{AuthStore, NameCollision, NewUser, StoreError, User},
};

/// The variable operator commands read the database from.
pub(crate) const DATABASE_URL: &str = "AUTH_DATABASE_URL";

/// Runs `$body` on the configured store, whichever backend it is, opened
/// with [`Open::Existing`]. Also used by [`crate::user_cli`].
macro_rules! with_store {
    ($config:expr, |$store:ident| $body:expr) => {{
        let url = $config.database_url.expose();
        if url.starts_with("sqlite:") {
            let $store = $crate::store::SqliteStore::open(url, $crate::store::Open::Existing)
                .await
                .map_err(|e| e.opening($crate::admin::DATABASE_URL, url))?;
            $body
        } else {
            let $store = $crate::store::PgStore::connect(url)
                .await
                .map_err(|e| e.opening($crate::admin::DATABASE_URL, url))?;
            $body
        }
    }};
}
pub(crate) use with_store;

fn describe(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Creates a verified administrator (`is_staff`) with the usual password policy.
pub async fn create_admin(
    config: &Config,
    username: &str,
    email: &str,
    password: &str,
) -> anyhow::Result<User> {
    let username = Username::parse(username).map_err(|e| anyhow::anyhow!(describe(&[e])))?;
    let email = EmailAddress::parse("email", email).map_err(|e| anyhow::anyhow!(describe(&[e])))?;
    if email.needs_smtputf8() && !config.mail_smtputf8 {
        anyhow::bail!("email: {}", crate::domain::SMTPUTF8_REFUSED);
    }
    let password = Password::parse_new(password, Some(&username), Some(&email))
        .map_err(|e| anyhow::anyhow!(describe(&e)))?;
    let hash = PasswordHasher::new(1)?
        .hash(password.expose().to_owned())
        .await?;
    let user = NewUser {
        username: username.as_str(),
        username_lower: &username.lookup_key(),
        email: email.as_str(),
        email_lower: &email.lookup_key(),
        password_hash: &hash,
        is_active: true,
        is_staff: true,
        now: time::OffsetDateTime::now_utc().unix_timestamp(),
    };
    let created = with_store!(config, |store| store.create_user(user).await);
    created.map_err(|e| match e {
        StoreError::Duplicate(field) => {
            let taken = if field == "email" {
                email.as_str()
            } else {
                username.as_str()
            };
            anyhow::anyhow!(
                "a user with that {field} already exists; to make that account an admin, run \
                 `auth-service create-admin --promote --username {taken}`"
            )
        }
        other => other.into(),
    })
}

/// Makes the existing account `login` (username or email) an
/// administrator and returns it as it now is. Its password and state are
/// left alone: an account that has not verified its email still cannot
/// log in.
pub async fn promote(config: &Config, login: &str) -> anyhow::Result<User> {
    let key = lookup_key(login)?;
    with_store!(config, |store| {
        let user = store
            .user_by_identifier(&key)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no account {login:?}"))?;
        // Through the user administration, so the grant is an admin event.
        let (users, actor, now) = crate::user_cli::as_operator(config, store)?;
        let change = crate::users::FlagChange {
            is_active: None,
            is_staff: Some(true),
        };
        users
            .update(&actor, user.id, change, now)
            .await
            .map_err(crate::user_cli::explain)?;
        Ok(User {
            is_staff: true,
            ..user
        })
    })
}

/// Lifts a brute-force lock early: clears the account's lock and its
/// per-IP delays (an admin event, as `auth-service user unlock`). Returns
/// how many counters were cleared.
pub async fn unlock(config: &Config, username: &str) -> anyhow::Result<u64> {
    let key = lookup_key(username)?;
    with_store!(config, |store| {
        let user = store
            .user_by_identifier(&key)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no account {username:?}"))?;
        let (users, actor, now) = crate::user_cli::as_operator(config, store)?;
        let done = users
            .unlock(&actor, user.id, now)
            .await
            .map_err(crate::user_cli::explain)?;
        Ok(done.count)
    })
}

/// The keys `login` is looked up by, as a login looks it up; text that
/// can name no account (NUL, too long) is "no account", not a database
/// error.
fn lookup_key(login: &str) -> anyhow::Result<LoginLookup> {
    crate::domain::LoginIdentifier::new(login)
        .lookup()
        .ok_or_else(|| anyhow::anyhow!("no account {login:?}"))
}

/// The accounts whose names collided with an older account's when
/// existing rows were migrated to normalised names (issue #14); running it
/// also finishes that migration if auth-service has not yet.
pub async fn name_collisions(config: &Config) -> anyhow::Result<Vec<NameCollision>> {
    with_store!(config, |store| {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        crate::identities::migrate(&store, now).await
    })
}

/// Imports the Django service's users and login log from the database at
/// `source_url` (read only) into the configured database, reading naive
/// times in `time_zone` (see [`crate::import`]). An unknown zone is a
/// usage error (exit 2) naming the option.
pub async fn import_django(
    config: &Config,
    source_url: &str,
    time_zone: &str,
) -> anyhow::Result<crate::import::report::Report> {
    let clock = crate::import::clock::LocalClock::new(time_zone)
        .map_err(|e| common::config::ConfigError::new("--time-zone", time_zone, e))?;
    let now = time::OffsetDateTime::now_utc();
    let settings = crate::import::Settings {
        clock,
        now: i64::try_from(now.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX),
        unverified_ttl: crate::throttle::secs(config.unverified_ttl),
    };
    let shown = common::database::location(source_url);
    let target = common::database::location(config.database_url.expose());
    let mut source = crate::import::source::Source::open(source_url).await?;
    let report = with_store!(config, |store| {
        crate::import::run(&store, &mut source, &settings, &shown, &target).await
    });
    source.close().await;
    report
}

/// A key added by [`rotate_keys`].
#[derive(Debug, Clone)]
pub struct RotatedKey {
    /// Its `kid`.
    pub kid: String,
    /// Its algorithm: `JWT_ALGORITHM`'s.
    pub alg: crate::tokens::KeyAlgorithm,
    /// When it starts signing (Unix seconds); published from now on.
    pub not_before: i64,
}

/// How `rotate-keys` schedules the new key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rollover {
    /// Published now, signing after `AUTH_KEY_PUBLISH_DELAY`: verifiers that
    /// cache the key set learn it before it signs anything.
    Scheduled,
    /// Signing at once (a leaked key): verifiers holding a cached key set
    /// reject new tokens until they refetch it (up to the publish delay).
    Immediate,
}

/// Most tries of [`rotate_keys`] when other keys are added meanwhile.
const ROTATE_TRIES: usize = 5;

/// Adds a fresh signing key of `JWT_ALGORITHM`'s algorithm. It is published
/// at once (auth-service reads the keys on every JWKS request) and signs
/// from its `not_before`, which every replica honours to the second
/// whenever it last read the keys; superseded keys keep verifying until
/// their tokens have expired.
pub async fn rotate_keys(config: &Config, rollover: Rollover) -> anyhow::Result<RotatedKey> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let delay = match rollover {
        Rollover::Scheduled => i64::try_from(config.key_publish_delay.as_secs())?,
        Rollover::Immediate => 0,
    };
    with_store!(config, |store| {
        for _ in 0..ROTATE_TRIES {
            let keys = store.signing_keys().await?;
            // Scheduled, after every key already scheduled, so it is the
            // one that ends up signing.
            let latest_start = keys.first().map_or(0, |k| k.not_before);
            let not_before = match rollover {
                Rollover::Scheduled => (now + delay).max(latest_start + 1),
                Rollover::Immediate => now,
            };
            let key = crate::tokens::next_key(&keys, config.jwt_algorithm, now, not_before).await?;
            // Another key was added since the read (a replica switching
            // algorithm, another rotation): read again and add after it.
            if store.add_signing_key(&key).await? {
                return Ok(RotatedKey {
                    kid: key.kid,
                    alg: key.alg,
                    not_before,
                });
            }
        }
        anyhow::bail!("other keys kept being added at the same time; run rotate-keys again")
    })
}

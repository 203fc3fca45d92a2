//! Operator commands that act on the auth database directly.

use crate::{
    config::Config,
    domain::{EmailAddress, FieldError, Password, Username},
    hasher::PasswordHasher,
    store::{AuthStore, NewUser, PgStore, SqliteStore, StoreError, User},
};

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
    let url = config.database_url.expose();
    let created = if url.starts_with("sqlite:") {
        SqliteStore::connect(url).await?.create_user(user).await
    } else {
        PgStore::connect(url).await?.create_user(user).await
    };
    created.map_err(|e| match e {
        StoreError::Duplicate(field) => anyhow::anyhow!("a user with that {field} already exists"),
        other => other.into(),
    })
}

/// Runs `f` on the configured store, whichever backend it is.
macro_rules! with_store {
    ($config:expr, |$store:ident| $body:expr) => {{
        let url = $config.database_url.expose();
        if url.starts_with("sqlite:") {
            let $store = SqliteStore::connect(url).await?;
            $body
        } else {
            let $store = PgStore::connect(url).await?;
            $body
        }
    }};
}

/// Lifts a brute-force lock early: clears the account's lock and its
/// per-IP delays. Returns how many counters were cleared.
pub async fn unlock(config: &Config, username: &str) -> anyhow::Result<u64> {
    let key = username.trim().to_lowercase();
    with_store!(config, |store| {
        let user = store
            .user_by_login(&key)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no account {username:?}"))?;
        Ok(store.unlock_account(user.id).await?)
    })
}

/// Adds a fresh signing key, which signs from now on (each running
/// replica picks it up within `AUTH_KEY_RELOAD_INTERVAL`, or at once when
/// it meets a token signed with it); older keys keep verifying.
pub async fn rotate_keys(config: &Config) -> anyhow::Result<String> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    with_store!(config, |store| {
        // Strictly newer than every existing key, even within one second.
        let newest = store
            .signing_keys()
            .await?
            .first()
            .map_or(0, |k| k.created_at);
        let key = crate::tokens::generate_key(now.max(newest + 1));
        store.add_signing_key(&key).await?;
        Ok(key.kid)
    })
}

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

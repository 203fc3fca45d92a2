//! auth-service configuration, read once from the environment.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use common::config::{ConfigError, Secret, duration_or, parse_or, var};

/// Everything auth-service needs to start. Names are in `env.sample`.
#[derive(Debug, Clone)]
pub struct Config {
    /// `AUTH_GRPC_ADDR`: where the gRPC API listens.
    pub grpc_addr: SocketAddr,
    /// `AUTH_DATABASE_URL`: `sqlite://…` (default) or `postgres://…`.
    pub database_url: Secret,
    /// `AUDIT_GRPC_URL`: where the outbox forwarder finds audit-service.
    pub audit_grpc_url: String,
    /// `SMTP_URL`: lettre SMTP URL; unset means mail goes to `.eml` files.
    pub smtp_url: Option<Secret>,
    /// `MAIL_DIR`: where `.eml` files go when there is no SMTP server.
    pub mail_dir: PathBuf,
    /// `MAIL_FROM`: the sender of verification emails.
    pub mail_from: String,
    /// `JWT_ACCESS_TTL`: lifetime of access tokens.
    pub access_ttl: Duration,
    /// `JWT_REFRESH_TTL`: lifetime of refresh tokens.
    pub refresh_ttl: Duration,
    /// `JWT_ISSUER`: the `iss` claim written and required.
    pub issuer: String,
    /// `INTERNAL_TOKEN`: shared secret internal callers must present.
    pub internal_token: Option<Secret>,
    /// `AUTH_HASH_CONCURRENCY`: most argon2 computations at once (each
    /// holds 19 MiB), so a login flood queues instead of exhausting memory.
    pub hash_concurrency: usize,
}

impl Config {
    /// Reads the environment; every variable has a working default.
    pub fn from_env() -> Result<Self, ConfigError> {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let config = Self {
            grpc_addr: parse_or("AUTH_GRPC_ADDR", SocketAddr::from(([127, 0, 0, 1], 50051)))?,
            database_url: Secret::new(
                var("AUTH_DATABASE_URL").unwrap_or_else(|| "sqlite://data/auth.db".into()),
            ),
            audit_grpc_url: var("AUDIT_GRPC_URL")
                .unwrap_or_else(|| "http://127.0.0.1:50052".into()),
            smtp_url: var("SMTP_URL").map(Secret::new),
            mail_dir: var("MAIL_DIR").map_or_else(|| PathBuf::from("data/mail"), PathBuf::from),
            mail_from: var("MAIL_FROM").unwrap_or_else(|| "Accounts <no-reply@example.com>".into()),
            access_ttl: duration_or("JWT_ACCESS_TTL", Duration::from_secs(300))?,
            refresh_ttl: duration_or("JWT_REFRESH_TTL", Duration::from_secs(86_400))?,
            issuer: var("JWT_ISSUER").unwrap_or_else(|| "auth-service".into()),
            internal_token: var("INTERNAL_TOKEN").map(Secret::new),
            hash_concurrency: parse_or("AUTH_HASH_CONCURRENCY", cpus)?,
        };
        config.validate()?;
        Ok(config)
    }

    /// A configuration for tests: port 0, the given database, mail to files
    /// under `mail_dir`, audit-service at `audit_grpc_url`.
    pub fn for_tests(database_url: &str, audit_grpc_url: &str, mail_dir: PathBuf) -> Self {
        Self {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url: Secret::new(database_url),
            audit_grpc_url: audit_grpc_url.to_owned(),
            smtp_url: None,
            mail_dir,
            mail_from: "Accounts <no-reply@example.com>".into(),
            access_ttl: Duration::from_secs(300),
            refresh_ttl: Duration::from_secs(86_400),
            issuer: "auth-service".into(),
            internal_token: None,
            hash_concurrency: 2,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let url = self.database_url.expose();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres:")
            || url.starts_with("postgresql:"))
        {
            return Err(ConfigError::new(
                "AUTH_DATABASE_URL",
                url.split(':').next().unwrap_or(""),
                "expected a sqlite:// or postgres:// URL",
            ));
        }
        if self.hash_concurrency == 0 {
            return Err(ConfigError::new(
                "AUTH_HASH_CONCURRENCY",
                "0",
                "must be at least 1",
            ));
        }
        if self.mail_from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(ConfigError::new(
                "MAIL_FROM",
                &self.mail_from,
                "not a valid mailbox",
            ));
        }
        Ok(())
    }
}

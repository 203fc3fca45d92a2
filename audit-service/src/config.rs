//! The service's configuration, read once from the environment at start-up.

use std::{fmt, net::SocketAddr};

use common::{
    config::{ConfigError, Secret, listen_addr_or, parse_or, redact_url, var},
    tls::ServerTls,
};

use crate::store::Backend;

/// Variable holding the listen address.
const GRPC_ADDR: &str = "AUDIT_GRPC_ADDR";
/// Variable holding the log database URL.
const DATABASE_URL: &str = "AUDIT_DATABASE_URL";
/// Variable holding the shared secret internal callers present.
const INTERNAL_TOKEN: &str = "INTERNAL_TOKEN";
/// Variable holding the suspicious-activity threshold.
const SUSPICIOUS_THRESHOLD: &str = "AUDIT_SUSPICIOUS_THRESHOLD";
/// Variable holding how many days attempts are kept.
const RETENTION_DAYS: &str = "AUDIT_RETENTION_DAYS";
/// Variable holding the admin address of `/metrics`.
const METRICS_ADDR: &str = "AUDIT_METRICS_ADDR";
/// Prefix of the TLS variables: `AUDIT_GRPC_TLS_CERT`, `_KEY`, `_CLIENT_CA`.
pub(crate) const TLS_PREFIX: &str = "AUDIT_GRPC";

/// Everything audit-service needs to start.
#[derive(Clone)]
pub struct Config {
    /// Where the gRPC server listens (`AUDIT_GRPC_ADDR`, default
    /// `127.0.0.1:50052`); port 0 picks a free port, as tests do.
    pub grpc_addr: SocketAddr,
    /// The log database (`AUDIT_DATABASE_URL`, default
    /// `sqlite://data/audit.db`); the scheme picks the backend. May hold a
    /// password, so `Debug` redacts it.
    pub database_url: String,
    /// Shared secret internal callers must present (`INTERNAL_TOKEN`); `None`
    /// lets every call through, which suits local development only.
    pub internal_token: Option<Secret>,
    /// How many failed attempts from one IP or one email within an hour make
    /// the latest of them suspicious (`AUDIT_SUSPICIOUS_THRESHOLD`, default
    /// 10, at least 1).
    pub suspicious_threshold: u32,
    /// Attempts older than this many days are deleted by a background task
    /// (`AUDIT_RETENTION_DAYS`, default 90; 0 keeps everything).
    pub retention_days: u32,
    /// How often the retention task looks for old attempts; a test knob,
    /// not read from the environment.
    pub retention_interval: std::time::Duration,
    /// `AUDIT_GRPC_TLS_CERT` / `_KEY` / `_CLIENT_CA`: serve gRPC over TLS,
    /// optionally requiring client certificates; `None`: plain HTTP/2.
    pub tls: Option<ServerTls>,
    /// The admin address serving `/metrics` (`AUDIT_METRICS_ADDR`, default
    /// `127.0.0.1:9102`); `None` (`off`): not served here.
    pub metrics_addr: Option<SocketAddr>,
}

impl Config {
    /// Default listen address, next to auth-service's 50051.
    pub const DEFAULT_GRPC_ADDR: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 50052);
    /// Default admin address of `/metrics`.
    pub const DEFAULT_METRICS_ADDR: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9102);
    /// Default database: an embedded SQLite file, so one machine needs no server.
    pub const DEFAULT_DATABASE_URL: &'static str = "sqlite://data/audit.db";
    /// Default threshold for the suspicious-activity rule.
    pub const DEFAULT_SUSPICIOUS_THRESHOLD: u32 = 10;
    /// Default retention: about a quarter.
    pub const DEFAULT_RETENTION_DAYS: u32 = 90;
    /// How often the retention task runs in production.
    pub const DEFAULT_RETENTION_INTERVAL: std::time::Duration =
        std::time::Duration::from_secs(3600);

    /// Reads and validates the environment, so a bad value stops start-up
    /// with one line naming the variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        let grpc_addr = listen_addr_or(GRPC_ADDR, Self::DEFAULT_GRPC_ADDR)?;
        let database_url = parse_database_url(
            var(DATABASE_URL).unwrap_or_else(|| Self::DEFAULT_DATABASE_URL.to_owned()),
        )?;
        let internal_token = var(INTERNAL_TOKEN).map(Secret::new);
        let suspicious_threshold = parse_threshold(parse_or(
            SUSPICIOUS_THRESHOLD,
            Self::DEFAULT_SUSPICIOUS_THRESHOLD,
        )?)?;
        let retention_days = parse_or(RETENTION_DAYS, Self::DEFAULT_RETENTION_DAYS)?;
        let tls = ServerTls::from_env(TLS_PREFIX)?;
        common::internal_auth::require_gate(
            GRPC_ADDR,
            grpc_addr,
            internal_token.as_ref(),
            tls.as_ref(),
        )?;
        let metrics_addr =
            common::metrics::addr_from_env(METRICS_ADDR, Self::DEFAULT_METRICS_ADDR)?;
        Ok(Self {
            grpc_addr,
            database_url,
            internal_token,
            suspicious_threshold,
            retention_days,
            retention_interval: Self::DEFAULT_RETENTION_INTERVAL,
            tls,
            metrics_addr,
        })
    }

    /// A configuration for tests: any free loopback port, the given
    /// database, no token, the default threshold, no retention (tests
    /// use fixed times long past) and no TLS.
    pub fn for_tests(database_url: impl Into<String>) -> Self {
        Self {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url: database_url.into(),
            internal_token: None,
            suspicious_threshold: Self::DEFAULT_SUSPICIOUS_THRESHOLD,
            retention_days: 0,
            retention_interval: Self::DEFAULT_RETENTION_INTERVAL,
            tls: None,
            metrics_addr: None,
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("grpc_addr", &self.grpc_addr)
            .field("database_url", &redact_url(&self.database_url))
            .field("internal_token", &self.internal_token)
            .field("suspicious_threshold", &self.suspicious_threshold)
            .field("retention_days", &self.retention_days)
            .field("retention_interval", &self.retention_interval)
            .field("tls", &self.tls)
            .field("metrics_addr", &self.metrics_addr)
            .finish()
    }
}

/// Accepts only URLs whose scheme names a backend this build supports.
pub(crate) fn parse_database_url(raw: String) -> Result<String, ConfigError> {
    match Backend::from_url(&raw) {
        Some(_) => Ok(raw),
        None => Err(ConfigError::new(
            DATABASE_URL,
            &redact_url(&raw),
            "expected a sqlite:, postgres:, postgresql: or mysql: URL",
        )),
    }
}

/// A threshold of 0 would flag nothing or everything depending on how one
/// reads it, so it is refused rather than guessed.
pub(crate) fn parse_threshold(n: u32) -> Result<u32, ConfigError> {
    if n == 0 {
        Err(ConfigError::new(
            SUSPICIOUS_THRESHOLD,
            "0",
            "must be at least 1",
        ))
    } else {
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supported_schemes_are_accepted() {
        for url in [
            "sqlite://data/audit.db",
            "sqlite::memory:",
            "postgres://u@h/db",
            "postgresql://u@h/db",
            "mysql://root@127.0.0.1:3306/test",
        ] {
            assert_eq!(parse_database_url(url.to_owned()).unwrap(), url);
        }
    }

    #[test]
    fn other_schemes_are_refused_naming_the_variable_without_the_password() {
        let err = parse_database_url("mongodb://user:hunter2@h/db".to_owned()).unwrap_err();
        assert_eq!(err.name, "AUDIT_DATABASE_URL");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn a_zero_threshold_is_refused() {
        assert_eq!(
            parse_threshold(0).unwrap_err().name,
            "AUDIT_SUSPICIOUS_THRESHOLD"
        );
        assert_eq!(parse_threshold(3).unwrap(), 3);
    }

    #[test]
    fn debug_hides_the_token_and_the_database_password() {
        let mut config = Config::for_tests("postgres://app:s3cret@db/audit");
        config.internal_token = Some(Secret::new("t0ken"));
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("t0ken"),
            "{shown}"
        );
    }
}

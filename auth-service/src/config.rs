//! auth-service configuration, read once from the environment.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use common::{
    compat::Compatibility,
    config::{ConfigError, Secret, duration_or, listen_addr_or, parse_duration, parse_or, var},
};

use crate::{
    attempt::DEFAULT_REFUSED_TALLY_WINDOW,
    throttle::{BruteForcePolicy, DEFAULT_IPV6_PREFIX, Limit, RateLimits, secs},
};

/// Default `AUTH_KEY_PUBLISH_DELAY`: the gateway's key cache (1 minute) plus
/// the JWKS `max-age` (5 minutes), with room to spare.
pub const DEFAULT_KEY_PUBLISH_DELAY: Duration = Duration::from_secs(600);

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
    /// `MAIL_SMTPUTF8` (default false): the mail relay accepts SMTPUTF8
    /// (RFC 6531), so addresses with a non-ASCII local part can be
    /// registered (lettre then sends them with the SMTPUTF8 parameter, and
    /// fails their mail if the relay does not announce it).
    pub mail_smtputf8: bool,
    /// `JWT_ACCESS_TTL`: lifetime of access tokens.
    pub access_ttl: Duration,
    /// `JWT_REFRESH_TTL`: lifetime of refresh tokens.
    pub refresh_ttl: Duration,
    /// `JWT_ROTATE_REFRESH_TOKENS` (default true, simplejwt's name): each
    /// refresh spends the presented token and issues a successor, and a
    /// spent token presented again revokes its session. `false` (simplejwt's
    /// default, the old service's behaviour): a refresh issues only an access
    /// token and the same refresh token keeps working until it expires or
    /// its session is revoked; no reuse detection.
    pub rotate_refresh_tokens: bool,
    /// `JWT_REFRESH_REUSE_GRACE`: how long after a refresh token's first
    /// use it may be presented again and get the same successor instead of
    /// revoking its family (default 5s; `0` disables).
    pub refresh_reuse_grace: Duration,
    /// `AUTH_UNVERIFIED_TTL`: how long an unverified account holds its
    /// username and can be verified; older ones are deleted (default 24h).
    pub unverified_ttl: Duration,
    /// `AUTH_VERIFY_WITHOUT_PASSWORD`: let a code alone verify, as the old
    /// service did (default false). Insecure: whoever registered chose the
    /// password that verification then activates (see SECURITY.md).
    pub verify_without_password: bool,
    /// `JWT_ISSUER`: the `iss` claim written and required.
    pub issuer: String,
    /// `JWT_ALGORITHM`: `EdDSA` (default), `ES256` or `RS256`, what new
    /// keys sign with. Changing it adds a key of the new algorithm at the
    /// next start, rolled over like `rotate-keys` (see SECURITY.md).
    pub jwt_algorithm: crate::tokens::KeyAlgorithm,
    /// `INTERNAL_TOKEN`: shared secret internal callers must present.
    pub internal_token: Option<Secret>,
    /// `AUTH_HASH_CONCURRENCY`: most argon2 computations at once (each
    /// holds 19 MiB), so a login flood queues instead of exhausting memory.
    pub hash_concurrency: usize,
    /// `AUTH_BF_*`: login brute-force thresholds.
    pub brute_force: BruteForcePolicy,
    /// `AUTH_RATE_*`: per-IP limits on register, verification codes and
    /// password resets, the per-address limit on reset requests, and the
    /// per-family refresh limit.
    pub rate_limits: RateLimits,
    /// `AUTH_IPV6_PREFIX`: IPv6 clients are counted by networks of this
    /// prefix length (default 64) in every per-IP limit and block.
    pub ipv6_prefix: u8,
    /// `AUTH_REFUSED_TALLY_WINDOW`: attempts refused before any password
    /// work from one client (and reason, and locked account) within a
    /// window of this length are logged as one record with a count
    /// (default 60 s; the shortest is 1 s).
    pub refused_tally_window: Duration,
    /// `AUTH_KEY_RELOAD_INTERVAL`: how often signing keys are re-read, so
    /// a key added by `rotate-keys` is used without a restart.
    pub key_reload_interval: Duration,
    /// `AUTH_KEY_PUBLISH_DELAY`: how long a key added by `rotate-keys` is
    /// published before it signs (default 10m). It must cover every cache of
    /// the key set: the gateway's (`GATEWAY_JWKS_CACHE_TTL`, 1m) plus the
    /// `max-age` of `/.well-known/jwks.json` (5m).
    pub key_publish_delay: Duration,
    /// `AUTH_GRPC_TLS_CERT` / `_KEY` / `_CLIENT_CA`: serve gRPC over TLS,
    /// optionally requiring client certificates; `None`: plain HTTP/2.
    pub tls: Option<common::tls::ServerTls>,
    /// TLS for an `https://` `AUDIT_GRPC_URL`: `INTERNAL_TLS_CA`, and the
    /// client certificate `INTERNAL_TLS_CLIENT_CERT` / `_KEY` when
    /// audit-service requires one (the same variables as the gateway's).
    pub internal_tls: common::tls::ClientTls,
    /// `AUTH_METRICS_ADDR`: the admin address serving `/metrics`
    /// (default `127.0.0.1:9101`); `None` (`off`): not served here.
    pub metrics_addr: Option<SocketAddr>,
    /// `COMPAT`, and which of the settings above it chose (warned about at
    /// start-up).
    pub compat: Compatibility,
}

/// What `JWT_ROTATE_REFRESH_TOKENS=false` costs, for the `COMPAT` warning.
const NO_ROTATION_COST: &str = "a refresh token works again and again until it expires or \
    its session is revoked: a stolen one is not detected by reuse";
/// What `AUTH_VERIFY_WITHOUT_PASSWORD=true` costs, for the `COMPAT` warning.
const CODE_ALONE_COST: &str = "a code alone activates an account with the password \
    whoever registered the address chose (pre-hijacking, SECURITY.md)";

fn secs_or(name: &str, default: i64) -> Result<i64, ConfigError> {
    let fallback = Duration::from_secs(u64::try_from(default).unwrap_or(1));
    Ok(secs(duration_or(name, fallback)?))
}

/// A duration that may be zero (`0` or `0s` turns the feature off).
fn duration_or_zero(name: &str, default: Duration) -> Result<Duration, ConfigError> {
    match var(name) {
        Some(raw) if raw.trim().trim_end_matches(['s', 'm', 'h', 'd']) == "0" => Ok(Duration::ZERO),
        _ => duration_or(name, default),
    }
}

fn limit_or(name: &str, default: Limit) -> Result<Limit, ConfigError> {
    match var(name) {
        None => Ok(default),
        Some(raw) => Limit::parse(&raw)
            .ok_or_else(|| ConfigError::new(name, &raw, "expected COUNT/DURATION like 20/1h")),
    }
}

fn positive_or(name: &str, default: i64) -> Result<i64, ConfigError> {
    let n: i64 = parse_or(name, default)?;
    if n < 1 {
        return Err(ConfigError::new(name, &n.to_string(), "must be at least 1"));
    }
    Ok(n)
}

impl BruteForcePolicy {
    /// The defaults, overridden by any `AUTH_BF_*` variable that is set.
    pub fn from_env() -> Result<Self, ConfigError> {
        let d = Self::default();
        let tiers = match var("AUTH_BF_ACCOUNT_LOCK_TIERS") {
            None => d.account_lock_tiers.clone(),
            Some(raw) => raw
                .split(',')
                .map(|t| parse_duration(t).map(secs))
                .collect::<Option<Vec<_>>>()
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    ConfigError::new(
                        "AUTH_BF_ACCOUNT_LOCK_TIERS",
                        &raw,
                        "expected durations like 5m,15m,1h",
                    )
                })?,
        };
        Ok(Self {
            pair_free_failures: positive_or("AUTH_BF_PAIR_FREE_FAILURES", d.pair_free_failures)?,
            pair_base_delay: secs_or("AUTH_BF_PAIR_BASE_DELAY", d.pair_base_delay)?,
            pair_max_delay: secs_or("AUTH_BF_PAIR_MAX_DELAY", d.pair_max_delay)?,
            account_lock_failures: positive_or(
                "AUTH_BF_ACCOUNT_LOCK_FAILURES",
                d.account_lock_failures,
            )?,
            account_lock_tiers: tiers,
            failure_reset: secs_or("AUTH_BF_FAILURE_RESET", d.failure_reset)?,
            ip_failures: positive_or("AUTH_BF_IP_FAILURES", d.ip_failures)?,
            ip_window: secs_or("AUTH_BF_IP_WINDOW", d.ip_window)?,
            ip_block: secs_or("AUTH_BF_IP_BLOCK", d.ip_block)?,
            known_client_ttl: secs_or("AUTH_BF_KNOWN_CLIENT_TTL", d.known_client_ttl)?,
        })
    }
}

impl RateLimits {
    /// The defaults, overridden by any `AUTH_RATE_*` variable that is set.
    pub fn from_env() -> Result<Self, ConfigError> {
        let d = Self::default();
        Ok(Self {
            register: limit_or("AUTH_RATE_REGISTER", d.register)?,
            code_request: limit_or("AUTH_RATE_CODE_REQUEST", d.code_request)?,
            code_verify: limit_or("AUTH_RATE_CODE_VERIFY", d.code_verify)?,
            refresh_family: limit_or("AUTH_RATE_REFRESH_FAMILY", d.refresh_family)?,
            reset_request: limit_or("AUTH_RATE_RESET_REQUEST", d.reset_request)?,
            reset_request_email: limit_or("AUTH_RATE_RESET_REQUEST_EMAIL", d.reset_request_email)?,
            reset_confirm: limit_or("AUTH_RATE_RESET_CONFIRM", d.reset_confirm)?,
        })
    }
}

impl Config {
    /// Reads the environment; every variable has a working default.
    pub fn from_env() -> Result<Self, ConfigError> {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut compat = Compatibility::from_lookup(var)?;
        let rotate_refresh_tokens = compat.setting(
            "JWT_ROTATE_REFRESH_TOKENS",
            var("JWT_ROTATE_REFRESH_TOKENS"),
            true,
            false,
            NO_ROTATION_COST,
        )?;
        let verify_without_password = compat.setting(
            "AUTH_VERIFY_WITHOUT_PASSWORD",
            var("AUTH_VERIFY_WITHOUT_PASSWORD"),
            false,
            true,
            CODE_ALONE_COST,
        )?;
        let config = Self {
            grpc_addr: listen_addr_or("AUTH_GRPC_ADDR", SocketAddr::from(([127, 0, 0, 1], 50051)))?,
            database_url: Secret::new(
                var("AUTH_DATABASE_URL").unwrap_or_else(|| "sqlite://data/auth.db".into()),
            ),
            audit_grpc_url: var("AUDIT_GRPC_URL")
                .unwrap_or_else(|| "http://127.0.0.1:50052".into()),
            smtp_url: var("SMTP_URL").map(Secret::new),
            mail_dir: var("MAIL_DIR").map_or_else(|| PathBuf::from("data/mail"), PathBuf::from),
            mail_from: var("MAIL_FROM").unwrap_or_else(|| "Accounts <no-reply@example.com>".into()),
            mail_smtputf8: parse_or("MAIL_SMTPUTF8", false)?,
            access_ttl: duration_or("JWT_ACCESS_TTL", Duration::from_secs(300))?,
            refresh_ttl: duration_or("JWT_REFRESH_TTL", Duration::from_secs(86_400))?,
            rotate_refresh_tokens,
            refresh_reuse_grace: duration_or_zero(
                "JWT_REFRESH_REUSE_GRACE",
                crate::api::DEFAULT_REFRESH_REUSE_GRACE,
            )?,
            unverified_ttl: duration_or("AUTH_UNVERIFIED_TTL", crate::api::DEFAULT_UNVERIFIED_TTL)?,
            verify_without_password,
            issuer: var("JWT_ISSUER").unwrap_or_else(|| "auth-service".into()),
            jwt_algorithm: match var("JWT_ALGORITHM") {
                None => crate::tokens::KeyAlgorithm::default(),
                Some(raw) => raw.parse().map_err(|_| {
                    ConfigError::new("JWT_ALGORITHM", &raw, "expected EdDSA, ES256 or RS256")
                })?,
            },
            internal_token: var("INTERNAL_TOKEN").map(Secret::new),
            hash_concurrency: parse_or("AUTH_HASH_CONCURRENCY", cpus)?,
            brute_force: BruteForcePolicy::from_env()?,
            rate_limits: RateLimits::from_env()?,
            ipv6_prefix: parse_or("AUTH_IPV6_PREFIX", DEFAULT_IPV6_PREFIX)?,
            refused_tally_window: duration_or(
                "AUTH_REFUSED_TALLY_WINDOW",
                DEFAULT_REFUSED_TALLY_WINDOW,
            )?,
            key_reload_interval: duration_or("AUTH_KEY_RELOAD_INTERVAL", Duration::from_secs(60))?,
            key_publish_delay: duration_or("AUTH_KEY_PUBLISH_DELAY", DEFAULT_KEY_PUBLISH_DELAY)?,
            tls: common::tls::ServerTls::from_env("AUTH_GRPC")?,
            internal_tls: common::tls::ClientTls::from_env()?,
            metrics_addr: common::metrics::addr_from_env(
                "AUTH_METRICS_ADDR",
                SocketAddr::from(([127, 0, 0, 1], 9101)),
            )?,
            compat,
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
            mail_smtputf8: false,
            access_ttl: Duration::from_secs(300),
            refresh_ttl: Duration::from_secs(86_400),
            rotate_refresh_tokens: true,
            refresh_reuse_grace: crate::api::DEFAULT_REFRESH_REUSE_GRACE,
            unverified_ttl: crate::api::DEFAULT_UNVERIFIED_TTL,
            verify_without_password: false,
            issuer: "auth-service".into(),
            jwt_algorithm: crate::tokens::KeyAlgorithm::default(),
            internal_token: None,
            hash_concurrency: 2,
            brute_force: BruteForcePolicy::default(),
            rate_limits: RateLimits::default(),
            ipv6_prefix: DEFAULT_IPV6_PREFIX,
            // Tallies reach the log within about two seconds.
            refused_tally_window: Duration::from_secs(1),
            key_reload_interval: Duration::from_secs(60),
            key_publish_delay: DEFAULT_KEY_PUBLISH_DELAY,
            tls: None,
            internal_tls: common::tls::ClientTls::default(),
            metrics_addr: None,
            compat: Compatibility::default(),
        }
    }

    /// What the token service needs from this configuration.
    pub fn token_policy(&self) -> crate::tokens::TokenPolicy {
        crate::tokens::TokenPolicy {
            issuer: self.issuer.clone(),
            access_ttl: self.access_ttl,
            refresh_ttl: self.refresh_ttl,
            key_reload_interval: self.key_reload_interval,
            algorithm: self.jwt_algorithm,
            publish_delay: self.key_publish_delay,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        common::internal_auth::require_gate(
            "AUTH_GRPC_ADDR",
            self.grpc_addr,
            self.internal_token.as_ref(),
            self.tls.as_ref(),
        )?;
        self.internal_tls
            .check_url("AUDIT_GRPC_URL", &self.audit_grpc_url)?;
        let url = self.database_url.expose();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres:")
            || url.starts_with("postgresql:"))
        {
            return Err(ConfigError::new(
                "AUTH_DATABASE_URL",
                &common::config::redact_url(url),
                "expected a sqlite:// or postgres:// URL",
            ));
        }
        if !(1..=128).contains(&self.ipv6_prefix) {
            return Err(ConfigError::new(
                "AUTH_IPV6_PREFIX",
                &self.ipv6_prefix.to_string(),
                "must be a prefix length from 1 to 128",
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

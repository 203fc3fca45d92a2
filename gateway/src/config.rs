//! The gateway's configuration: one typed struct read from the environment
//! once at start-up, so a bad value stops the process with one line naming
//! the variable instead of failing later on a request.

use std::{net::SocketAddr, time::Duration};

use axum::http::Uri;
use common::{
    compat::Compatibility,
    config::{ConfigError, Secret, duration_value, parse_value},
};
use tokio::sync::Semaphore;

use crate::{
    client_ip::{ForwardedHeader, TrustedProxies},
    compat::Shapes,
    server::{
        ConnectionLimits, DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_READ_TIMEOUT,
        DEFAULT_MAX_CONNECTIONS,
    },
};

/// Default location of auth-service.
pub const DEFAULT_AUTH_GRPC_URL: &str = "http://127.0.0.1:50051";
/// Default location of audit-service.
pub const DEFAULT_AUDIT_GRPC_URL: &str = "http://127.0.0.1:50052";
/// Default `iss` that access tokens must carry (auth-service's own default).
pub const DEFAULT_JWT_ISSUER: &str = "auth-service";

/// Default `GATEWAY_STREAM_RECHECK`: how often an open live tail asks
/// auth-service whether its admin may still read it. A demoted, disabled or
/// logged-out admin stops receiving events within this time; each check is
/// one indexed read in auth-service, and few admins tail at once.
pub const DEFAULT_STREAM_RECHECK: Duration = Duration::from_secs(10);

/// Everything the gateway needs to start.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the HTTP server listens (`GATEWAY_ADDR`); port 0 picks a free port.
    pub addr: SocketAddr,
    /// auth-service's gRPC URL (`AUTH_GRPC_URL`), `http(s)://host:port`.
    pub auth_grpc_url: String,
    /// audit-service's gRPC URL (`AUDIT_GRPC_URL`), `http(s)://host:port`.
    pub audit_grpc_url: String,
    /// Shared secret presented on every internal gRPC call (`INTERNAL_TOKEN`);
    /// `None` when the backends run without one (local development).
    pub internal_token: Option<Secret>,
    /// Peers whose forwarding header (below) is believed
    /// (`TRUSTED_PROXIES`); empty means the socket peer is always the client.
    pub trusted_proxies: TrustedProxies,
    /// The header those proxies append the client to
    /// (`TRUSTED_PROXY_HEADER`: `x-forwarded-for`, the default, or
    /// `forwarded`); only that one is read.
    pub forwarded_header: ForwardedHeader,
    /// The `iss` claim access tokens must carry (`JWT_ISSUER`).
    pub jwt_issuer: String,
    /// TLS for `https://` backend URLs: `INTERNAL_TLS_CA`, and the client
    /// certificate `INTERNAL_TLS_CLIENT_CERT` / `_KEY` when backends require one.
    pub internal_tls: common::tls::ClientTls,
    /// The admin address serving `/metrics` (`GATEWAY_METRICS_ADDR`,
    /// default `127.0.0.1:9100`), apart from the public port so scrapes
    /// never reach the internet; `None` (`off`): not served.
    pub metrics_addr: Option<SocketAddr>,
    /// Timeouts and the connection cap of the public listener
    /// (`GATEWAY_HEADER_READ_TIMEOUT`, `GATEWAY_BODY_TIMEOUT`,
    /// `GATEWAY_MAX_CONNECTIONS`).
    pub limits: ConnectionLimits,
    /// The URL clients reach the gateway at (`GATEWAY_PUBLIC_URL`, e.g.
    /// `https://api.example.com`), for absolute links such as the log
    /// listing's `next`; `None`: such links are relative paths. Never taken
    /// from the request's `Host`, which the client writes.
    pub public_url: Option<PublicUrl>,
    /// How often an open live tail re-checks its access token with
    /// auth-service (`GATEWAY_STREAM_RECHECK`, default 10s); the tail also
    /// ends at the token's expiry whatever this is.
    pub stream_recheck: Duration,
    /// How long the signing keys fetched from auth-service are used before
    /// the next use refetches them (`GATEWAY_JWKS_CACHE_TTL`, default 1m).
    /// auth-service's `AUTH_KEY_PUBLISH_DELAY` must exceed this plus the
    /// 5-minute `max-age` of `/.well-known/jwks.json`.
    pub jwks_cache_ttl: Duration,
    /// The old service's answer shapes for its clients
    /// (`LOG_LISTING_FORMAT`, `LOG_REASON_TEXT`, `VERIFY_FAILURE_STATUS`).
    pub shapes: Shapes,
    /// `COMPAT`, and which of those shapes it chose (warned about at
    /// start-up).
    pub compat: Compatibility,
}

/// An absolute `http(s)://host[:port][/prefix]` URL without user info,
/// query or fragment, kept without a trailing slash so paths append to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicUrl(String);

impl PublicUrl {
    /// Checks `raw`; the error says what is wrong with it.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let raw = raw.trim();
        let uri: Uri = raw
            .parse()
            .map_err(|_| "expected a URL such as https://api.example.com")?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err("expected an http:// or https:// URL");
        }
        let Some(authority) = uri.authority() else {
            return Err("the URL has no host");
        };
        if authority.as_str().contains('@') {
            return Err("the URL must not contain user info");
        }
        if authority.host().is_empty() {
            return Err("the URL has no host");
        }
        if raw.contains('?') || raw.contains('#') {
            return Err("the URL must not have a query or fragment");
        }
        Ok(Self(raw.trim_end_matches('/').to_owned()))
    }

    /// `path` (starting with `/`) under this URL.
    pub fn join(&self, path: &str) -> String {
        format!("{}{path}", self.0)
    }
}

impl Config {
    /// Reads the configuration from the process environment. Unset or blank
    /// variables take their defaults.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(common::config::var)
    }

    /// Reads the configuration through `lookup` (name ⇒ value, `None` when
    /// unset), so parsing is testable without touching the real environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());

        let addr = match get("GATEWAY_ADDR") {
            None => SocketAddr::from(([127, 0, 0, 1], 8585)),
            Some(raw) => common::config::parse_listen_addr("GATEWAY_ADDR", &raw)?,
        };
        let auth_grpc_url = grpc_url(
            "AUTH_GRPC_URL",
            get("AUTH_GRPC_URL")
                .as_deref()
                .unwrap_or(DEFAULT_AUTH_GRPC_URL),
        )?;
        let audit_grpc_url = grpc_url(
            "AUDIT_GRPC_URL",
            get("AUDIT_GRPC_URL")
                .as_deref()
                .unwrap_or(DEFAULT_AUDIT_GRPC_URL),
        )?;
        let internal_token = get("INTERNAL_TOKEN").map(Secret::new);
        // Refuse a token that cannot travel as a header now rather than on
        // every call.
        common::internal_auth::AttachToken::new(internal_token.as_ref())?;
        let trusted_proxies = parse_value(
            "TRUSTED_PROXIES",
            get("TRUSTED_PROXIES"),
            TrustedProxies::default(),
        )?;
        let forwarded_header = parse_value(
            "TRUSTED_PROXY_HEADER",
            get("TRUSTED_PROXY_HEADER"),
            ForwardedHeader::default(),
        )?;
        let internal_tls = common::tls::ClientTls::from_lookup(get)?;
        internal_tls.check_url("AUTH_GRPC_URL", &auth_grpc_url)?;
        internal_tls.check_url("AUDIT_GRPC_URL", &audit_grpc_url)?;
        let jwt_issuer = get("JWT_ISSUER")
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| DEFAULT_JWT_ISSUER.to_owned());

        let metrics_addr = common::metrics::parse_addr(
            "GATEWAY_METRICS_ADDR",
            get("GATEWAY_METRICS_ADDR").as_deref(),
            SocketAddr::from(([127, 0, 0, 1], 9100)),
        )?;

        let duration = |name: &str, default: Duration| duration_value(name, get(name), default);
        let max_connections = match get("GATEWAY_MAX_CONNECTIONS") {
            None => DEFAULT_MAX_CONNECTIONS,
            Some(raw) => raw
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=Semaphore::MAX_PERMITS).contains(n))
                .ok_or_else(|| {
                    ConfigError::new(
                        "GATEWAY_MAX_CONNECTIONS",
                        &raw,
                        "expected a positive number of connections",
                    )
                })?,
        };
        let limits = ConnectionLimits {
            header_read_timeout: duration(
                "GATEWAY_HEADER_READ_TIMEOUT",
                DEFAULT_HEADER_READ_TIMEOUT,
            )?,
            body_timeout: duration("GATEWAY_BODY_TIMEOUT", DEFAULT_BODY_TIMEOUT)?,
            max_connections,
        };

        let public_url = get("GATEWAY_PUBLIC_URL")
            .map(|raw| {
                PublicUrl::parse(&raw)
                    .map_err(|reason| ConfigError::new("GATEWAY_PUBLIC_URL", &raw, reason))
            })
            .transpose()?;
        let stream_recheck = duration("GATEWAY_STREAM_RECHECK", DEFAULT_STREAM_RECHECK)?;
        let jwks_cache_ttl = duration("GATEWAY_JWKS_CACHE_TTL", crate::auth::DEFAULT_KEY_MAX_AGE)?;
        let mut compat = Compatibility::from_lookup(get)?;
        let shapes = Shapes::read(get, &mut compat)?;

        Ok(Self {
            addr,
            auth_grpc_url,
            audit_grpc_url,
            internal_token,
            trusted_proxies,
            forwarded_header,
            jwt_issuer,
            internal_tls,
            metrics_addr,
            limits,
            public_url,
            stream_recheck,
            jwks_cache_ttl,
            shapes,
            compat,
        })
    }

    /// A configuration for tests: listens on `127.0.0.1:0` (a free port),
    /// talks to the given backend URLs, no internal token, no trusted
    /// proxies, the default issuer.
    pub fn for_tests(auth_grpc_url: impl Into<String>, audit_grpc_url: impl Into<String>) -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            auth_grpc_url: auth_grpc_url.into(),
            audit_grpc_url: audit_grpc_url.into(),
            internal_token: None,
            trusted_proxies: TrustedProxies::default(),
            forwarded_header: ForwardedHeader::default(),
            jwt_issuer: DEFAULT_JWT_ISSUER.to_owned(),
            internal_tls: common::tls::ClientTls::default(),
            metrics_addr: None,
            limits: ConnectionLimits::default(),
            public_url: None,
            stream_recheck: DEFAULT_STREAM_RECHECK,
            jwks_cache_ttl: crate::auth::DEFAULT_KEY_MAX_AGE,
            shapes: Shapes::default(),
            compat: Compatibility::default(),
        }
    }
}

/// Checks that `raw` is an `http://` or `https://` gRPC URL with a host.
/// (`https://` also needs `INTERNAL_TLS_CA`, checked by the caller: no
/// public root store is built in.)
fn grpc_url(name: &str, raw: &str) -> Result<String, ConfigError> {
    let raw = raw.trim();
    let uri: Uri = raw.parse().map_err(|_| {
        ConfigError::new(name, raw, "expected a URL such as http://127.0.0.1:50051")
    })?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(ConfigError::new(
            name,
            raw,
            "expected an http:// or https:// URL",
        ));
    }
    if uri.authority().is_none() {
        return Err(ConfigError::new(name, raw, "the URL has no host"));
    }
    Ok(raw.to_owned())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn an_empty_environment_gives_the_documented_defaults() {
        let c = from(&[]).unwrap();
        assert_eq!(c.addr.to_string(), "127.0.0.1:8585");
        assert_eq!(c.auth_grpc_url, "http://127.0.0.1:50051");
        assert_eq!(c.audit_grpc_url, "http://127.0.0.1:50052");
        assert!(c.internal_token.is_none());
        assert!(c.trusted_proxies.is_empty());
        assert_eq!(c.forwarded_header, ForwardedHeader::XForwardedFor);
        assert_eq!(c.jwt_issuer, "auth-service");
        assert_eq!(c.limits.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.limits.body_timeout, Duration::from_secs(15));
        assert_eq!(c.limits.max_connections, 10_000);
        assert_eq!(c.public_url, None);
        assert_eq!(c.stream_recheck, Duration::from_secs(10));
    }

    #[test]
    fn the_public_url_is_validated_and_joined_without_a_double_slash() {
        let c = from(&[("GATEWAY_PUBLIC_URL", "https://api.example.com/")]).unwrap();
        assert_eq!(
            c.public_url.unwrap().join("/x/?a=1"),
            "https://api.example.com/x/?a=1"
        );
        let c = from(&[("GATEWAY_PUBLIC_URL", "http://h:8080/prefix")]).unwrap();
        assert_eq!(c.public_url.unwrap().join("/x/"), "http://h:8080/prefix/x/");
        for bad in [
            "api.example.com",
            "/relative",
            "ftp://h",
            "https://user:pw@h",
            "https://h/?q=1",
            "https://h/#f",
            "javascript:alert(1)",
        ] {
            let err = from(&[("GATEWAY_PUBLIC_URL", bad)]).unwrap_err();
            assert_eq!(err.name, "GATEWAY_PUBLIC_URL", "{bad}");
        }
    }

    #[test]
    fn every_variable_is_read() {
        let c = from(&[
            ("GATEWAY_ADDR", "0.0.0.0:9000"),
            ("AUTH_GRPC_URL", "http://auth:1"),
            ("AUDIT_GRPC_URL", "http://audit:2"),
            ("INTERNAL_TOKEN", "s3cret"),
            ("TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.1"),
            ("TRUSTED_PROXY_HEADER", "Forwarded"),
            ("JWT_ISSUER", "me"),
            ("GATEWAY_HEADER_READ_TIMEOUT", "3s"),
            ("GATEWAY_BODY_TIMEOUT", "1m"),
            ("GATEWAY_MAX_CONNECTIONS", "500"),
            ("GATEWAY_STREAM_RECHECK", "30s"),
        ])
        .unwrap();
        assert_eq!(c.addr.to_string(), "0.0.0.0:9000");
        assert_eq!(c.auth_grpc_url, "http://auth:1");
        assert_eq!(c.audit_grpc_url, "http://audit:2");
        assert_eq!(c.internal_token.unwrap().expose(), "s3cret");
        assert!(c.trusted_proxies.contains("10.1.2.3".parse().unwrap()));
        assert!(c.trusted_proxies.contains("192.168.1.1".parse().unwrap()));
        assert_eq!(c.forwarded_header, ForwardedHeader::Forwarded);
        assert_eq!(c.jwt_issuer, "me");
        assert_eq!(c.limits.header_read_timeout, Duration::from_secs(3));
        assert_eq!(c.limits.body_timeout, Duration::from_secs(60));
        assert_eq!(c.limits.max_connections, 500);
        assert_eq!(c.stream_recheck, Duration::from_secs(30));
    }

    #[test]
    fn compat_django_sets_the_old_shapes_and_an_unknown_compat_stops_start_up() {
        let c = from(&[("COMPAT", "django"), ("VERIFY_FAILURE_STATUS", "400")]).unwrap();
        assert_eq!(c.shapes.listing, crate::compat::ListingFormat::Django);
        assert_eq!(
            c.shapes.verify_failure,
            crate::compat::VerifyFailureStatus::BadRequest,
            "an explicit setting wins"
        );
        let err = from(&[("COMPAT", "djnago")]).unwrap_err();
        assert_eq!(err.name, "COMPAT");
        assert_eq!(
            err.to_string(),
            "invalid configuration: COMPAT=\"djnago\": expected django, or off (the default) for none"
        );
    }

    #[test]
    fn a_host_name_listen_address_is_resolved() {
        let c = from(&[("GATEWAY_ADDR", "localhost:8586")]).unwrap();
        assert!(c.addr.ip().is_loopback(), "{}", c.addr);
        assert_eq!(c.addr.port(), 8586);
    }

    #[test]
    fn blank_values_count_as_unset() {
        let c = from(&[("GATEWAY_ADDR", "  "), ("TRUSTED_PROXIES", "")]).unwrap();
        assert_eq!(c.addr.to_string(), "127.0.0.1:8585");
        assert!(c.trusted_proxies.is_empty());
    }

    #[test]
    fn https_backends_need_the_internal_ca() {
        let url = [("AUTH_GRPC_URL", "https://auth:50051")];
        assert_eq!(from(&url).unwrap_err().name, "AUTH_GRPC_URL");
        let c = from(&[url[0], ("INTERNAL_TLS_CA", "/etc/ca.pem")]).unwrap();
        assert_eq!(c.auth_grpc_url, "https://auth:50051");
        let half = from(&[("INTERNAL_TLS_CLIENT_CERT", "/etc/client.pem")]).unwrap_err();
        assert_eq!(half.name, "INTERNAL_TLS_CLIENT_KEY");
    }

    #[test]
    fn errors_name_the_variable() {
        for (name, value) in [
            ("GATEWAY_ADDR", "localhost"),
            ("AUTH_GRPC_URL", "not a url"),
            ("AUDIT_GRPC_URL", "https://audit:443"),
            ("TRUSTED_PROXIES", "10.0.0.0/33"),
            ("TRUSTED_PROXY_HEADER", "x-real-ip"),
            ("GATEWAY_HEADER_READ_TIMEOUT", "0s"),
            ("GATEWAY_BODY_TIMEOUT", "soon"),
            ("GATEWAY_MAX_CONNECTIONS", "0"),
            ("GATEWAY_STREAM_RECHECK", "0s"),
            ("INTERNAL_TOKEN", "bad\ntoken"),
        ] {
            let err = from(&[(name, value)]).unwrap_err();
            assert_eq!(err.name, name);
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn the_internal_token_never_shows_in_debug_output() {
        let c = from(&[("INTERNAL_TOKEN", "hunter2")]).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn the_test_configuration_binds_a_free_loopback_port() {
        let c = Config::for_tests("http://127.0.0.1:1", "http://127.0.0.1:2");
        assert_eq!(c.addr.to_string(), "127.0.0.1:0");
        assert_eq!(c.auth_grpc_url, "http://127.0.0.1:1");
    }
}

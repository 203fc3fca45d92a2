//! Reading typed configuration from the environment.
//!
//! Every reader returns a [`ConfigError`] naming the variable, so a bad value
//! stops start-up with one line an operator can act on.

use std::{
    fmt,
    net::{SocketAddr, ToSocketAddrs as _},
    path::PathBuf,
    str::FromStr,
    time::Duration,
};

/// A configuration value that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {name}={value:?}: {reason}")]
pub struct ConfigError {
    /// The environment variable.
    pub name: String,
    /// What it held (secrets are never put here).
    pub value: String,
    /// Why it was refused.
    pub reason: String,
}

impl ConfigError {
    /// Builds an error for `name` holding `value`.
    pub fn new(name: &str, value: &str, reason: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            value: value.to_owned(),
            reason: reason.into(),
        }
    }
}

/// The variable's value, or `None` when unset or empty.
pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The listen address in variable `name`, or `default` when unset; see
/// [`parse_listen_addr`].
pub fn listen_addr_or(name: &str, default: SocketAddr) -> Result<SocketAddr, ConfigError> {
    var(name).map_or(Ok(default), |raw| parse_listen_addr(name, &raw))
}

/// `IP:PORT` (`127.0.0.1:8585`, `[::]:8585`) or `HOST:PORT`
/// (`localhost:8585`), the host resolved once, here, so a name that does
/// not resolve stops start-up naming the variable. Of several addresses the
/// first IPv4 one is taken (`localhost` is `127.0.0.1`, as clients dialling
/// `localhost` usually try first), else the first.
pub fn parse_listen_addr(name: &str, raw: &str) -> Result<SocketAddr, ConfigError> {
    let raw = raw.trim();
    if let Ok(addr) = raw.parse() {
        return Ok(addr);
    }
    let usage = "expected HOST:PORT such as 127.0.0.1:8585, [::1]:8585 or localhost:8585";
    let Some((host, port)) = raw.rsplit_once(':') else {
        return Err(ConfigError::new(name, raw, usage));
    };
    let Ok(port) = port.parse::<u16>() else {
        return Err(ConfigError::new(name, raw, usage));
    };
    if host.is_empty() {
        return Err(ConfigError::new(name, raw, usage));
    }
    let found: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| ConfigError::new(name, raw, format!("cannot resolve {host}: {e}")))?
        .collect();
    found
        .iter()
        .find(|a| a.is_ipv4())
        .or(found.first())
        .copied()
        .ok_or_else(|| ConfigError::new(name, raw, format!("{host} has no address")))
}

/// A URL cut at its authority, for messages about it (never for
/// connecting: the drivers parse URLs themselves).
pub(crate) struct UrlParts<'a> {
    pub scheme: &'a str,
    /// `user` or `user:password`, when the URL has an `@`.
    pub userinfo: Option<&'a str>,
    /// `host`, `host:port` or `[v6]:port`; empty for a socket or a file.
    pub host: &'a str,
    /// Path, query and fragment, as written.
    pub tail: &'a str,
}

impl<'a> UrlParts<'a> {
    /// `None` when `url` has no `scheme://`.
    pub fn split(url: &'a str) -> Option<Self> {
        let (scheme, rest) = url.split_once("://")?;
        let (authority, tail) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
        let (userinfo, host) = match authority.rsplit_once('@') {
            Some((userinfo, host)) => (Some(userinfo), host),
            None => (None, authority),
        };
        Some(Self {
            scheme,
            userinfo,
            host,
            tail,
        })
    }

    /// The user and the password, when the URL carries a password.
    pub fn credentials(&self) -> Option<(&'a str, &'a str)> {
        self.userinfo?.split_once(':')
    }
}

/// `url` with any password replaced by `***`, safe for logs and errors.
pub fn redact_url(url: &str) -> String {
    match UrlParts::split(url) {
        Some(
            parts @ UrlParts {
                scheme, host, tail, ..
            },
        ) => match parts.credentials() {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// The `host:port` a server URL points at (the scheme's usual port when
/// none is written), for messages; `None` when the URL names no host
/// (a Unix socket given as a query parameter, a file).
pub fn url_host_port(url: &str) -> Option<String> {
    let UrlParts { scheme, host, .. } = UrlParts::split(url)?;
    if host.is_empty() {
        return None;
    }
    let has_port = match host.rfind(']') {
        Some(end) => host[end..].contains(':'),
        None => host.contains(':'),
    };
    if has_port {
        return Some(host.to_owned());
    }
    let port = match scheme {
        "postgres" | "postgresql" => 5432,
        "mysql" | "mariadb" => 3306,
        _ => return Some(host.to_owned()),
    };
    Some(format!("{host}:{port}"))
}

/// The variable parsed with `FromStr`, or `default` when unset.
pub fn parse_or<T>(name: &str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    parse_value(name, var(name), default)
}

/// [`parse_or`] for a value already looked up (`None` when unset), for
/// configurations read through a lookup function in tests.
pub fn parse_value<T>(name: &str, raw: Option<String>, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    match raw {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|e: T::Err| ConfigError::new(name, &raw, e.to_string())),
    }
}

/// The variable as a duration such as `90s`, `5m`, `12h`, `1d` (a bare number
/// is seconds), or `default` when unset.
pub fn duration_or(name: &str, default: Duration) -> Result<Duration, ConfigError> {
    duration_value(name, var(name), default)
}

/// [`duration_or`] for a value already looked up (`None` when unset).
pub fn duration_value(
    name: &str,
    raw: Option<String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match raw {
        None => Ok(default),
        Some(raw) => parse_duration(&raw).ok_or_else(|| {
            ConfigError::new(name, &raw, "expected a duration like 30s, 5m, 12h or 1d")
        }),
    }
}

/// Parses `30s`, `5m`, `12h`, `1d` or a bare number of seconds; zero is refused.
pub fn parse_duration(raw: &str) -> Option<Duration> {
    let raw = raw.trim();
    let (digits, unit) = match raw.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => raw.split_at(i),
        None => (raw, "s"),
    };
    let n: u64 = digits.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    (secs > 0).then(|| Duration::from_secs(secs))
}

/// A secret string that never shows in `Debug` or `Display` output, so it
/// cannot leak into logs by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is used, never to log.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The file of a SQLite URL, as given (maybe relative); `None` for an
/// in-memory database or another scheme.
pub fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = &rest[..rest.find('?').unwrap_or(rest.len())];
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

/// Where a database URL points, for messages: a SQLite file as an
/// absolute path (a relative one is read from the working directory, which
/// is easy to get wrong), a server as `host:port/database`.
pub fn location(url: &str) -> String {
    if let Some(file) = sqlite_file(url) {
        return std::path::absolute(&file)
            .unwrap_or(file)
            .display()
            .to_string();
    }
    if url.starts_with("sqlite:") {
        return "memory".to_owned();
    }
    let Some(server) = url_host_port(url) else {
        return redact_url(url);
    };
    // The database on that server, when the URL names one.
    let tail = UrlParts::split(url).map_or("", |parts| parts.tail);
    let path = tail.split(['?', '#']).next().unwrap_or("");
    format!("{server}{}", path.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1d"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("45"), Some(Duration::from_secs(45)));
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn listen_addresses_take_ips_and_host_names() {
        assert_eq!(
            parse_listen_addr("X", "0.0.0.0:80").unwrap().to_string(),
            "0.0.0.0:80"
        );
        assert_eq!(
            parse_listen_addr("X", "[::1]:80").unwrap().to_string(),
            "[::1]:80"
        );
        assert!(
            parse_listen_addr("X", "localhost:8585")
                .unwrap()
                .ip()
                .is_loopback()
        );
        for bad in [
            "localhost",
            "localhost:http",
            ":80",
            "no-such-host.invalid:80",
        ] {
            let err = parse_listen_addr("GATEWAY_ADDR", bad).unwrap_err();
            assert_eq!(err.name, "GATEWAY_ADDR", "{bad}");
        }
    }

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/audit?sslmode=require"),
            "postgres://app:***@db:5432/audit?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://app@db/audit"),
            "postgres://app@db/audit"
        );
        assert_eq!(
            redact_url("sqlite://data/audit.db"),
            "sqlite://data/audit.db"
        );
    }

    #[test]
    fn server_urls_name_their_host_and_port() {
        assert_eq!(
            url_host_port("postgres://u:p@db/x").as_deref(),
            Some("db:5432")
        );
        assert_eq!(
            url_host_port("mysql://root@127.0.0.1:3307/t").as_deref(),
            Some("127.0.0.1:3307")
        );
        assert_eq!(
            url_host_port("postgres://[::1]/x").as_deref(),
            Some("[::1]:5432")
        );
        assert_eq!(url_host_port("postgres:///x?host=/run/pg"), None);
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn database_locations_leave_out_credentials_and_parameters() {
        let here = std::env::current_dir().unwrap();
        assert_eq!(
            location("sqlite://data/auth.db?mode=rwc"),
            here.join("data/auth.db").display().to_string()
        );
        assert_eq!(location("sqlite:///var/lib/a.db"), "/var/lib/a.db");
        assert_eq!(location("sqlite::memory:"), "memory");
        assert_eq!(
            location("postgres://app:s3cret@db.internal:5432/auth?sslmode=require"),
            "db.internal:5432/auth"
        );
        assert_eq!(
            location("mysql://root@127.0.0.1:3306/test"),
            "127.0.0.1:3306/test"
        );
        assert_eq!(location("postgres://db"), "db:5432");
        assert!(!location("nonsense://a:s3cret@").contains("s3cret"));
    }
}

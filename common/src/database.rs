//! Opening a service's database so that a failure says, once and within
//! seconds, which variable, which server or file, and why.
//!
//! sqlx's pool retries a failing first connection until its acquire
//! timeout (30 s by default) and then reports only "pool timed out",
//! losing the cause; its database errors print the server's message twice
//! (once in its own text, once as the source) with the server's internal C
//! source line appended. So start-up first opens one plain connection with
//! [`probe`] and words errors with [`describe`].

use std::{
    fmt,
    time::{Duration, Instant},
};

use sqlx::ConnectOptions;

use crate::config::{ConfigError, redact_url};
pub use crate::config::{location, sqlite_file};

/// How long start-up keeps retrying a server that refuses or does not
/// answer (one that is still starting, as under docker compose) before
/// giving up with the cause.
pub const CONNECT_PATIENCE: Duration = Duration::from_secs(5);
/// Longest single connection attempt (a host that drops packets never
/// refuses).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
/// First pause between attempts; it doubles, up to a second.
const FIRST_PAUSE: Duration = Duration::from_millis(250);

/// A database error in an operator's words: the server's message and
/// SQLSTATE (without sqlx's prefix or the server's source line), the
/// socket error, or sqlx's text for anything else.
pub fn describe(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(e) => match e.code() {
            Some(code) => format!("{} (SQLSTATE {code})", e.message()),
            None => e.message().to_owned(),
        },
        sqlx::Error::Io(e) => e.to_string(),
        sqlx::Error::Tls(e) => format!("TLS: {e}"),
        other => other.to_string(),
    }
}

/// A migration failure in an operator's words (see [`describe`]).
pub fn describe_migration(error: &sqlx::migrate::MigrateError) -> String {
    use sqlx::migrate::MigrateError;
    match error {
        MigrateError::Execute(e) => format!("while migrating: {}", describe(e)),
        MigrateError::ExecuteMigration(e, version) => {
            format!("while applying migration {version}: {}", describe(e))
        }
        other => other.to_string(),
    }
}

/// Why the first connection could not be opened.
#[derive(Debug)]
pub struct ConnectError {
    /// [`describe`] of the last attempt's error.
    cause: String,
    /// Attempts made.
    tries: u32,
    /// From the first attempt to giving up.
    waited: Duration,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.cause)?;
        if self.tries > 1 {
            write!(
                f,
                " (still failing after {} tries over {:.1} s)",
                self.tries,
                self.waited.as_secs_f64()
            )?;
        }
        Ok(())
    }
}

// No `source()`: the cause is already in the message.
impl std::error::Error for ConnectError {}

/// Opens one connection with `options` and closes it again, retrying for
/// up to [`CONNECT_PATIENCE`] while the server refuses or does not answer;
/// an answer that will not change (wrong password, unknown database, TLS)
/// fails at once.
pub async fn probe<O>(options: &O) -> Result<(), ConnectError>
where
    O: ConnectOptions,
    O::Connection: Sized,
{
    let start = Instant::now();
    let deadline = start + CONNECT_PATIENCE;
    let mut pause = FIRST_PAUSE;
    let mut tries = 0;
    loop {
        tries += 1;
        let patience = deadline
            .saturating_duration_since(Instant::now())
            .min(ATTEMPT_TIMEOUT);
        let (cause, retry, answered) = match tokio::time::timeout(patience, options.connect()).await
        {
            Ok(Ok(connection)) => {
                let _ = sqlx::Connection::close(connection).await;
                return Ok(());
            }
            Ok(Err(e)) => (describe(&e), transient(&e), true),
            Err(_) => (
                format!("no answer within {:.1} s", patience.as_secs_f64()),
                true,
                false,
            ),
        };
        if !retry || Instant::now() + pause >= deadline {
            return Err(ConnectError {
                cause,
                tries,
                waited: start.elapsed(),
            });
        }
        // An attempt that timed out has waited already.
        if answered {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }
}

/// Errors a server that is starting (or a network that is settling) gives.
fn transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
        // PostgreSQL: "the database system is starting up" / "shutting down".
        sqlx::Error::Database(e) => matches!(e.code().as_deref(), Some("57P03" | "57P01")),
        _ => false,
    }
}

/// Failing to open the database in variable `var` holding `url`, as one
/// error naming both and [`location`]; the URL's password never appears
/// (also scrubbed from `cause`, should a driver echo it).
pub fn open_error(var: &str, url: &str, cause: impl fmt::Display) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot open the database at {} ({var}={}): {}",
        location(url),
        redact_url(url),
        scrub(&cause.to_string(), url)
    )
}

/// A configuration error for variable `var` holding `url`, the password
/// redacted.
pub fn config_error(var: &str, url: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::new(var, &redact_url(url), reason)
}

/// `text` with the password of `url` (if any) replaced by `***`.
fn scrub(text: &str, url: &str) -> String {
    let password = crate::config::UrlParts::split(url)
        .and_then(|parts| parts.credentials())
        .map(|(_, password)| password)
        .filter(|p| !p.is_empty());
    match password {
        Some(p) => text.replace(p, "***"),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(
            sqlite_file("sqlite://data/auth.db"),
            Some("data/auth.db".into())
        );
        assert_eq!(
            sqlite_file("sqlite:///var/a.db?mode=rwc"),
            Some("/var/a.db".into())
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://h/db"), None);
        assert!(location("sqlite://data/auth.db").ends_with("/data/auth.db"));
        assert!(location("sqlite://data/auth.db").starts_with('/'));
    }

    #[test]
    fn open_errors_never_show_the_password() {
        let url = "postgres://app:hunter2@db:5433/auth";
        let err = open_error("AUTH_DATABASE_URL", url, "login for app:hunter2 refused");
        let text = err.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            text.contains("AUTH_DATABASE_URL") && text.contains("db:5433"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_closed_port_fails_within_the_patience_naming_the_cause() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(1);
        let options: sqlx::postgres::PgConnectOptions = format!("postgres://u@127.0.0.1:{port}/x")
            .parse()
            .unwrap_or_default();
        let start = Instant::now();
        let err = probe(&options).await.err().map(|e| e.to_string());
        let text = err.unwrap_or_default();
        assert!(text.to_lowercase().contains("refused"), "{text}");
        assert!(start.elapsed() < CONNECT_PATIENCE + Duration::from_secs(2));
    }
}

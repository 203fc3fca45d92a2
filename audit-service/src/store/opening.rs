//! Opening a backend: its connection limits and errors in an operator's words.

use std::time::Duration;

/// How long a request waits for a pooled connection before failing, so an
/// unreachable database surfaces as `unavailable` instead of a hang.
pub(super) const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// What failed while opening the log database, as one error naming
/// `AUDIT_DATABASE_URL`, the file or server, and `cause`; never the password.
pub(super) fn open_error(url: &str, cause: impl std::fmt::Display) -> anyhow::Error {
    common::database::open_error("AUDIT_DATABASE_URL", url, cause)
}

/// Opening steps' errors in an operator's words.
pub(super) trait Opening<T> {
    /// A database error of step `step` ("" for the connection itself).
    fn opening(self, url: &str, step: &str) -> anyhow::Result<T>;
}

impl<T> Opening<T> for Result<T, sqlx::Error> {
    fn opening(self, url: &str, step: &str) -> anyhow::Result<T> {
        self.map_err(|e| open_error(url, format!("{step}{}", common::database::describe(&e))))
    }
}

impl<T> Opening<T> for Result<T, sqlx::migrate::MigrateError> {
    fn opening(self, url: &str, _step: &str) -> anyhow::Result<T> {
        self.map_err(|e| open_error(url, common::database::describe_migration(&e)))
    }
}

impl<T> Opening<T> for Result<T, common::database::ConnectError> {
    fn opening(self, url: &str, _step: &str) -> anyhow::Result<T> {
        self.map_err(|e| open_error(url, e))
    }
}

//! Readiness that follows the database.
//!
//! A gRPC service reports two health entries: the overall one (`""`), which
//! liveness probes read and which stays `SERVING` while the process works,
//! and the named service (e.g. `auth.v1.AuthService`), which readiness
//! probes and the gateway's `/readyz` read. Only the named entry follows the
//! database, so a database outage takes replicas out of rotation without
//! making the orchestrator restart them in a loop.
//!
//! The check is a write (each service upserts a heartbeat row), not a ping:
//! a database that answers reads but refuses writes (files made read-only, a
//! PostgreSQL standby after a failover, a role without INSERT) fails every
//! register, login and stored attempt, so the service is not ready. The same
//! check runs once at start-up ([`require_writable`]), which refuses to
//! start rather than serve 503s behind a green readiness probe.

use std::time::Duration;

use tonic_health::{ServingStatus, server::HealthReporter};

/// How often the database is checked.
pub const PING_INTERVAL: Duration = Duration::from_secs(2);
/// A check slower than this counts as "not answering".
pub const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// The start-up write check failed: the service cannot do its job.
#[derive(Debug, thiserror::Error)]
#[error(
    "{variable}: the database at {location} cannot be written ({reason}); \
     refusing to start: readiness would fail and so would every request that writes"
)]
pub struct NotWritable {
    /// The variable holding the database URL.
    pub variable: &'static str,
    /// Where it points, without credentials ([`crate::config::location`]).
    pub location: String,
    /// The database's answer, or that it timed out.
    pub reason: String,
}

/// Runs the service's write `check` once, at start-up, within
/// [`PING_TIMEOUT`] (plus slack for a first connection); an error names
/// `variable` and where `url` points, never its credentials.
pub async fn require_writable<F, E>(
    variable: &'static str,
    url: &str,
    check: F,
) -> Result<(), NotWritable>
where
    F: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let reason = match tokio::time::timeout(PING_TIMEOUT * 5, check).await {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(error)) => error.to_string(),
        Err(_) => format!("no answer within {:?}", PING_TIMEOUT * 5),
    };
    Err(NotWritable {
        variable,
        location: crate::config::location(url),
        reason,
    })
}

/// Runs the write check every [`PING_INTERVAL`] and sets `service`'s health
/// to `SERVING` when it succeeded within [`PING_TIMEOUT`], `NOT_SERVING`
/// otherwise. Runs until the task is aborted (at shutdown, before the
/// service marks itself `NOT_SERVING` for the drain).
pub async fn follow_database<P, F, E>(reporter: HealthReporter, service: &'static str, mut ping: P)
where
    P: FnMut() -> F,
    F: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut last = None;
    let mut ticks = tokio::time::interval(PING_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let status = match tokio::time::timeout(PING_TIMEOUT, ping()).await {
            Ok(Ok(())) => ServingStatus::Serving,
            Ok(Err(error)) => {
                if last != Some(ServingStatus::NotServing) {
                    tracing::warn!(%error, service, "database check failed (cannot write or does not answer); not ready");
                }
                ServingStatus::NotServing
            }
            Err(_) => {
                if last != Some(ServingStatus::NotServing) {
                    tracing::warn!(timeout = ?PING_TIMEOUT, service, "database check timed out; not ready");
                }
                ServingStatus::NotServing
            }
        };
        if last != Some(status) {
            if last.is_some() && status == ServingStatus::Serving {
                tracing::info!(service, "database writable again; ready");
            }
            reporter.set_service_status(service, status).await;
            last = Some(status);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };

    use tonic_health::pb::{HealthCheckRequest, health_check_response, health_server::Health as _};

    use super::*;

    async fn status(service: &tonic_health::server::HealthService, name: &str) -> i32 {
        service
            .check(tonic::Request::new(HealthCheckRequest {
                service: name.to_owned(),
            }))
            .await
            .map(|r| r.into_inner().status)
            .unwrap_or(-1)
    }

    #[tokio::test(start_paused = true)]
    async fn named_service_follows_the_database_and_overall_stays_serving() {
        let reporter = HealthReporter::new();
        let service = tonic_health::server::HealthService::from_health_reporter(reporter.clone());
        let up = Arc::new(AtomicBool::new(true));
        let flag = up.clone();
        let task = tokio::spawn(follow_database(reporter, "x.v1.X", move || {
            let ok = flag.load(Ordering::SeqCst);
            async move { if ok { Ok(()) } else { Err("down") } }
        }));
        let serving = health_check_response::ServingStatus::Serving as i32;
        let not_serving = health_check_response::ServingStatus::NotServing as i32;

        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(status(&service, "x.v1.X").await, serving);

        up.store(false, Ordering::SeqCst);
        tokio::time::sleep(PING_INTERVAL * 2).await;
        assert_eq!(status(&service, "x.v1.X").await, not_serving);
        assert_eq!(
            status(&service, "").await,
            serving,
            "liveness must not follow the database"
        );

        up.store(true, Ordering::SeqCst);
        tokio::time::sleep(PING_INTERVAL * 2).await;
        assert_eq!(status(&service, "x.v1.X").await, serving);
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_ping_that_hangs_counts_as_down() {
        let reporter = HealthReporter::new();
        let service = tonic_health::server::HealthService::from_health_reporter(reporter.clone());
        let task = tokio::spawn(follow_database(reporter, "x.v1.X", || {
            std::future::pending::<Result<(), &str>>()
        }));
        tokio::time::sleep(PING_TIMEOUT + Duration::from_millis(100)).await;
        assert_eq!(
            status(&service, "x.v1.X").await,
            health_check_response::ServingStatus::NotServing as i32
        );
        task.abort();
    }

    #[tokio::test]
    #[allow(clippy::unwrap_used)]
    async fn a_failed_start_up_check_names_the_variable_and_the_place_not_the_password() {
        let error = require_writable(
            "AUTH_DATABASE_URL",
            "postgres://app:s3cret@db:5432/auth",
            async { Err::<(), _>("cannot execute INSERT in a read-only transaction") },
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(error.starts_with("AUTH_DATABASE_URL: the database at db:5432/auth cannot be written (cannot execute INSERT in a read-only transaction)"), "{error}");
        assert!(!error.contains("s3cret"));
        assert!(
            require_writable("X", "sqlite://a.db", async { Ok::<(), &str>(()) })
                .await
                .is_ok()
        );
    }
}

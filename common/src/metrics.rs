//! Prometheus metrics: one process-wide recorder, served as text at
//! `/metrics` on an admin address that is never the public one.
//!
//! The `metrics` facade allows one global recorder per process, while the
//! all-in-one launcher and the tests run several services in one process.
//! So [`install`] is idempotent: the first caller installs the recorder and
//! everyone after shares it. Every endpoint then shows the whole process;
//! the all-in-one launcher therefore opens only one.
//!
//! Label values are always from fixed sets (route templates, gRPC method
//! names of the served services, status codes, reasons): never raw input,
//! which would let a client grow the series without bound.
//!
//! Every metric is described (`# HELP`, with its unit) by the service that
//! records it, right after [`install`], and counters a healthy service may
//! never touch are registered at zero, so a scrape lists every series an
//! alert may refer to and `promtool check metrics` passes. Registering is
//! `increment(0)`, never `absolute(0)`: a service restarted inside one
//! process (tests, the all-in-one launcher) must not reset its counts.
//!
//! - [`grpc`]: the tower layer counting and timing gRPC calls.

pub mod grpc;

use std::{
    collections::BTreeMap,
    future::Future,
    net::SocketAddr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{Router, http::header, response::IntoResponse, routing::get};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

/// Latency buckets in seconds: 1 ms (a cached call) to 10 s (a stuck one);
/// an argon2 login lands around 20-50 ms.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Row-count buckets for batches; the forwarder sends at most 500.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0];
/// How often histogram samples are folded into their buckets; without it
/// they pile up in memory between scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Why metrics could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Something else in the process installed a `metrics` recorder.
    #[error("another metrics recorder is already installed")]
    OtherRecorder,
    /// The exporter refused its configuration (a bug here).
    #[error("metrics exporter: {0}")]
    Build(#[from] metrics_exporter_prometheus::BuildError),
    /// The admin address could not be bound.
    #[error("cannot listen on {name}={addr}: {source}")]
    Bind {
        /// The variable naming the address.
        name: String,
        /// The address.
        addr: SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
}

static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// Installs the process-wide recorder on first call and returns the handle
/// that renders it; later calls return the same handle. Services call it
/// while building, before they record anything (samples recorded before a
/// recorder exists are dropped).
pub fn install() -> Result<PrometheusHandle, MetricsError> {
    let mut slot = HANDLE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(handle) = &*slot {
        return Ok(handle.clone());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Suffix("batch_size".into()), BATCH_BUCKETS)?
        .build_recorder();
    let handle = recorder.handle();
    ::metrics::set_global_recorder(recorder).map_err(|_| MetricsError::OtherRecorder)?;
    let upkeep = handle.clone();
    // A plain thread: the recorder outlives any one Tokio runtime (tests
    // start a runtime per test).
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                upkeep.run_upkeep();
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "metrics upkeep thread not started; histograms fold at scrape only");
    }
    *slot = Some(handle.clone());
    Ok(handle)
}

type Hook = Arc<dyn Fn() + Send + Sync>;

static HOOKS: Mutex<BTreeMap<u64, Hook>> = Mutex::new(BTreeMap::new());
static NEXT_HOOK: AtomicU64 = AtomicU64::new(0);

/// Registers `sample` to run just before every scrape, for values that are
/// cheaper to read than to track (a pool's open and idle connections).
/// It stays registered until the returned guard is dropped, so a service
/// stopped in a test stops reporting.
#[must_use = "the hook is removed when the guard is dropped"]
pub fn on_scrape(sample: impl Fn() + Send + Sync + 'static) -> ScrapeHook {
    let id = NEXT_HOOK.fetch_add(1, Ordering::Relaxed);
    HOOKS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(id, Arc::new(sample));
    ScrapeHook(id)
}

/// Keeps an [`on_scrape`] hook registered while alive.
#[derive(Debug)]
pub struct ScrapeHook(u64);

impl Drop for ScrapeHook {
    fn drop(&mut self) {
        HOOKS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.0);
    }
}

/// The text exposition of everything recorded so far, after running the
/// scrape hooks.
pub fn render(handle: &PrometheusHandle) -> String {
    // Cloned out so a hook never runs under the lock.
    let hooks: Vec<Hook> = HOOKS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .values()
        .cloned()
        .collect();
    for hook in hooks {
        hook();
    }
    handle.run_upkeep();
    handle.render()
}

/// Describes the pool gauges of [`record_pool`], for services with a
/// database.
pub fn describe_pools() {
    ::metrics::describe_gauge!(
        "db_pool_connections",
        ::metrics::Unit::Count,
        "Database pool connections at scrape time (count), by service and state \
         (in_use: held by a request or task; idle: open and free)."
    );
    ::metrics::describe_gauge!(
        "db_pool_max_connections",
        ::metrics::Unit::Count,
        "The most connections the service's database pool opens (count); in_use at this \
         ceiling means requests queue for a connection."
    );
}

/// A connection pool's state at one moment, as sqlx reports it.
#[derive(Debug, Clone, Copy)]
pub struct PoolUsage {
    /// Open connections, idle or in use.
    pub open: u32,
    /// Open connections nobody holds.
    pub idle: u32,
    /// The most the pool will open.
    pub max: u32,
}

/// Publishes `usage` as `db_pool_connections{service,state="idle"|"in_use"}`
/// and `db_pool_max_connections{service}`: a pool at its maximum with no
/// idle connection is where requests start queueing.
pub fn record_pool(service: &'static str, usage: PoolUsage) {
    let in_use = usage.open.saturating_sub(usage.idle);
    ::metrics::gauge!("db_pool_connections", "service" => service, "state" => "in_use")
        .set(f64::from(in_use));
    ::metrics::gauge!("db_pool_connections", "service" => service, "state" => "idle")
        .set(f64::from(usage.idle));
    ::metrics::gauge!("db_pool_max_connections", "service" => service).set(f64::from(usage.max));
}

/// The admin address in `name`: `default` when unset, `None` for `off`
/// (metrics are still recorded, just not served from this service).
pub fn addr_from_env(
    name: &str,
    default: SocketAddr,
) -> Result<Option<SocketAddr>, crate::config::ConfigError> {
    parse_addr(name, crate::config::var(name).as_deref(), default)
}

/// Parses an admin address `raw` read from `name` (see [`addr_from_env`]).
pub fn parse_addr(
    name: &str,
    raw: Option<&str>,
    default: SocketAddr,
) -> Result<Option<SocketAddr>, crate::config::ConfigError> {
    match raw.map(str::trim).filter(|r| !r.is_empty()) {
        None => Ok(Some(default)),
        Some(r) if r.eq_ignore_ascii_case("off") => Ok(None),
        // The same HOST:PORT rules as the service's own listen address.
        Some(r) => crate::config::parse_listen_addr(name, r).map(Some),
    }
}

/// The admin listener serving `/metrics`, bound at build time so a busy
/// port stops start-up and tests can learn the port.
#[derive(Debug)]
pub struct Endpoint {
    listener: TcpListener,
    handle: PrometheusHandle,
}

impl Endpoint {
    /// Installs the recorder (if needed) and binds `addr`; `name` is the
    /// variable it came from, for the error.
    pub async fn bind(name: &str, addr: SocketAddr) -> Result<Self, MetricsError> {
        let handle = install()?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| MetricsError::Bind {
                name: name.to_owned(),
                addr,
                source,
            })?;
        Ok(Self { listener, handle })
    }

    /// The bound address (the real port when 0 was asked for).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves `GET /metrics` until `shutdown` resolves. Errors are logged:
    /// a broken metrics endpoint must not take the service down with it.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let handle = self.handle;
        let app = Router::new().route(
            "/metrics",
            get(move || {
                let handle = handle.clone();
                async move {
                    // Rendering walks every series: keep it off the reactor.
                    let body = tokio::task::spawn_blocking(move || render(&handle))
                        .await
                        .unwrap_or_default();
                    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
                }
            }),
        );
        if let Err(e) = axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "metrics endpoint failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_addresses_follow_the_listen_address_rules() {
        let default = SocketAddr::from(([127, 0, 0, 1], 9100));
        assert_eq!(parse_addr("M", None, default).unwrap(), Some(default));
        assert_eq!(parse_addr("M", Some("off"), default).unwrap(), None);
        let named = parse_addr("M", Some("localhost:9200"), default)
            .unwrap()
            .unwrap();
        assert!(named.ip().is_loopback() && named.port() == 9200, "{named}");
        let err = parse_addr("M", Some("9200"), default).unwrap_err();
        assert!(err.to_string().contains('M'), "{err}");
    }
}

//! audit-service: the only owner of the login-attempt log and of the admin
//! events (administrators' actions on accounts).
//!
//! Producers (auth-service's outbox forwarder) stream batches of attempts in
//! over `audit.v1.AuditService/Ingest`; each batch is committed in one
//! transaction (with any batches already queued behind it; PostgreSQL
//! spreads a large group over two) before it is acked,
//! and duplicates by `event_id` are skipped,
//! so at-least-once delivery yields exactly-once storage. Readers page
//! through the log newest first with `ListAttempts`, and count it per time
//! bucket with `CountAttempts` (a chart's data). Administrators'
//! actions (admin events) ride the same stream into a table of their own,
//! listed with `ListAdminEvents`.
//!
//! Layout:
//! - [`config`]: the environment-derived [`Config`].
//! - `attempt`: domain types and their conversion from and to protobuf.
//! - `admin_event`: administrators' actions (admin events), which arrive
//!   on the same stream and are listed with `ListAdminEvents`, validated
//!   and converted as attempts are; stored in a table of their own.
//! - `store`: the database behind one `Store` enum: listing, counting,
//!   insert and the suspicious-activity rule shared, one module per backend
//!   (map in `store/mod.rs`).
//! - `service`: the gRPC handlers.
//! - `ingest`: one producer's stream, group-committed and acked in order.
//! - `tail`: the fan-out of committed attempts to live tails.
//! - `retention`: deleting what is older than the configured days.
//! - `error`: the one error enum and its mapping to gRPC status.
//!
//! [`Application`] is what `main`, the all-in-one launcher and the tests
//! start, so all three run the same code.

mod admin_event;
mod attempt;
pub mod config;
mod error;
mod ingest;
mod retention;
mod service;
mod store;
mod tail;

use std::{future::Future, net::SocketAddr, time::Duration};

use anyhow::Context as _;
use common::{
    config::Secret,
    internal_auth::RequireToken,
    metrics::{Endpoint, ScrapeHook, grpc::GrpcMetricsLayer},
};
use proto::audit::v1::audit_service_server::{AuditServiceServer, SERVICE_NAME};
use tokio::net::TcpListener;
use tonic::transport::ServerTlsConfig;
use tonic_health::ServingStatus;

pub use config::Config;
pub use tail::TailHub;

use crate::{
    service::AuditApi,
    store::{Store, SuspicionRule},
    tail::TAIL_CAPACITY,
};

/// How long shutdown waits for in-flight calls before closing connections.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A built, bound, not yet serving audit-service.
///
/// Building and serving are separate so callers learn the bound address
/// (port 0 in tests) before the server runs.
#[derive(Debug)]
pub struct Application {
    /// The bound listener, handed to the server in [`Application::run_until`].
    listener: TcpListener,
    /// The listener's address, with the real port when 0 was asked for.
    local_addr: SocketAddr,
    /// The migrated log database.
    store: Store,
    /// The secret internal callers must present, if any.
    internal_token: Option<Secret>,
    /// Fan-out of committed attempts to live tails.
    hub: TailHub,
    /// Days attempts are kept (0: forever).
    retention_days: u32,
    /// How often the retention task runs.
    retention_interval: Duration,
    /// TLS (and client-certificate) settings, loaded at build time so a bad
    /// file stops start-up; `None`: plain HTTP/2.
    tls: Option<ServerTlsConfig>,
    /// The `/metrics` listener, when this service serves one.
    metrics: Option<Endpoint>,
    /// Samples the pool at each scrape while the service lives.
    pool_metrics: ScrapeHook,
}

impl Application {
    /// Reads the TLS files (if any), opens and migrates the database
    /// (creating a SQLite file and its directory if missing) and binds the
    /// listen address.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let tls = config
            .tls
            .as_ref()
            .map(|tls| tls.load(config::TLS_PREFIX))
            .transpose()?;
        if let Some(tls) = &tls {
            // Parses the certificate and key now, so a bad pair stops
            // start-up instead of the server.
            server_builder(Some(tls.clone()))?;
        }
        // Before anything is recorded: samples taken earlier would be lost.
        let metrics = match config.metrics_addr {
            Some(addr) => Some(Endpoint::bind("AUDIT_METRICS_ADDR", addr).await?),
            None => {
                common::metrics::install()?;
                None
            }
        };
        common::metrics::grpc::describe();
        common::metrics::describe_pools();
        ingest::describe();
        let threshold = config::parse_threshold(config.suspicious_threshold)?;
        let database_url = config::parse_database_url(config.database_url)?;
        // Its errors name the variable and the file or server already.
        let store = Store::connect(&database_url, SuspicionRule::per_hour(threshold)).await?;
        common::health::require_writable(
            "AUDIT_DATABASE_URL",
            &database_url,
            store.check_writable(unix_now()),
        )
        .await?;
        let listener = TcpListener::bind(config.grpc_addr)
            .await
            .with_context(|| format!("cannot listen on AUDIT_GRPC_ADDR={}", config.grpc_addr))?;
        let local_addr = listener.local_addr()?;
        tracing::info!(
            backend = ?store.backend(),
            database = %common::database::location(&database_url),
            tls = tls.is_some(),
            "log database ready"
        );
        let pool_metrics = {
            let store = store.clone();
            common::metrics::on_scrape(move || {
                common::metrics::record_pool("audit", store.pool_usage());
            })
        };
        Ok(Self {
            listener,
            local_addr,
            store,
            internal_token: config.internal_token,
            hub: TailHub::new(TAIL_CAPACITY),
            retention_days: config.retention_days,
            retention_interval: config.retention_interval,
            tls,
            metrics,
            pool_metrics,
        })
    }

    /// Where `/metrics` is served, if this service serves it.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(Endpoint::local_addr)
    }

    /// The address the server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The live-tail fan-out, to watch its subscriber count.
    pub fn tail_hub(&self) -> TailHub {
        self.hub.clone()
    }

    /// Serves until `shutdown` resolves, then ends open ingest streams, lets
    /// in-flight calls finish (for at most a few seconds) and closes the
    /// database.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let builder = server_builder(self.tls)?;
        let (stop_tx, stop_rx) = common::shutdown::channel();
        let _pool_metrics = self.pool_metrics;
        if let Some(endpoint) = self.metrics {
            // Stops with the gRPC server (the `stop_tx` start below, or its drop).
            tokio::spawn(endpoint.serve(stop_rx.clone().into_started()));
        }

        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_service_status(SERVICE_NAME, ServingStatus::Serving)
            .await;
        let store = self.store.clone();
        let readiness = tokio::spawn(common::health::follow_database(
            health.clone(),
            SERVICE_NAME,
            move || {
                let store = store.clone();
                async move { store.check_writable(unix_now()).await }
            },
        ));
        let reflection =
            || common::reflection::builder(proto::FILE_DESCRIPTOR_SET, &[SERVICE_NAME]);
        let reflection_v1 = reflection()?.build_v1()?;
        // grpcurl 1.8 speaks only v1alpha.
        let reflection_v1alpha = reflection()?.build_v1alpha()?;
        let audit = AuditServiceServer::with_interceptor(
            AuditApi::new(self.store.clone(), self.hub.clone(), stop_rx.clone()),
            RequireToken(self.internal_token),
        );

        let retention = (self.retention_days > 0).then(|| {
            tokio::spawn(retention::run(
                self.store.clone(),
                self.retention_days,
                self.retention_interval,
                stop_rx.clone(),
            ))
        });
        let incoming = common::net::incoming_nodelay(self.listener);
        let server = builder
            .layer(GrpcMetricsLayer)
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(audit)
            .serve_with_incoming_shutdown(incoming, stop_rx.into_started());
        tokio::pin!(server);
        tracing::info!(addr = %self.local_addr, "audit-service serving");

        tokio::select! {
            result = &mut server => {
                readiness.abort();
                stop_tx.start();
                if let Some(task) = retention {
                    let _ = task.await;
                }
                self.store.close().await;
                return result.context("gRPC server failed");
            }
            () = shutdown => {}
        }

        tracing::info!("draining connections");
        readiness.abort();
        health
            .set_service_status(SERVICE_NAME, ServingStatus::NotServing)
            .await;
        stop_tx.start();
        let result = match tokio::time::timeout(DRAIN_TIMEOUT, &mut server).await {
            Ok(result) => result.context("gRPC server failed"),
            Err(_) => {
                // Whatever is still open (a health watch, a reflection
                // stream) is abandoned; it ends with the process.
                tracing::warn!(timeout = ?DRAIN_TIMEOUT, "calls still open after the drain timeout; not waiting for them");
                Ok(())
            }
        };
        if let Some(task) = retention {
            let _ = task.await;
        }
        self.store.close().await;
        tracing::info!("audit-service stopped");
        result
    }
}

/// A server builder, speaking TLS when `tls` is set.
fn server_builder(tls: Option<ServerTlsConfig>) -> anyhow::Result<tonic::transport::Server> {
    let builder = tonic::transport::Server::builder().trace_fn(common::trace_context::server_span);
    match tls {
        None => Ok(builder),
        Some(tls) => builder.tls_config(tls).context(
            "invalid configuration: AUDIT_GRPC_TLS_CERT / AUDIT_GRPC_TLS_KEY: not a usable certificate and key",
        ),
    }
}

/// Builds the service and serves until SIGTERM or Ctrl-C.
pub async fn run(config: Config) -> anyhow::Result<()> {
    Application::build(config)
        .await?
        .run_until(common::shutdown::signal())
        .await
}

/// Now, in Unix seconds (for the heartbeat row).
fn unix_now() -> i64 {
    attempt::now_micros() / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreadable_tls_file_stops_start_up_naming_its_variable() {
        let mut config = Config::for_tests("sqlite::memory:");
        config.tls = Some(common::tls::ServerTls {
            cert: "/nonexistent/audit.crt".into(),
            key: "/nonexistent/audit.key".into(),
            client_ca: None,
        });
        let err = Application::build(config).await.unwrap_err();
        assert!(err.to_string().contains("AUDIT_GRPC_TLS_CERT"), "{err}");
    }
}

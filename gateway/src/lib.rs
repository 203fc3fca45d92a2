//! The public REST gateway.
//!
//! It keeps the old Django service's paths and JSON shapes, owns no data,
//! and turns each request into one gRPC call to auth-service or
//! audit-service, carrying the client's request id, IP and User-Agent as
//! metadata. Being stateless, it scales by adding replicas.
//!
//! Layout:
//! - [`config`]: the environment, parsed once.
//! - [`compat`]: the old service's answer shapes (`COMPAT=django`).
//! - [`context`]: request id, client IP and User-Agent; the per-request span.
//! - [`client_ip`]: trusted proxies, `X-Forwarded-For` and `Forwarded`.
//! - [`body`]: the one body extractor (JSON, form, multipart), and
//!   `FromFields`: how a documented body type is read from it.
//! - [`auth`]: access tokens verified locally: `keys` (the JWKS cache),
//!   `token` (verification), `extract` (the user and admin extractors).
//! - [`error`]: every error response, and gRPC status ⇒ HTTP in one place.
//! - [`grpc`]: lazily connecting backend clients.
//! - [`headers`]: `nosniff`, CSP, frame and cache headers.
//! - [`readiness`]: `/readyz`, from the backends' gRPC health.
//! - [`openapi`]: the OpenAPI document's shared parts.
//! - [`metrics`]: request counts and latencies by route template.
//! - [`server`]: the accept loop: timeouts and the connection cap.
//! - `state`: [`AppState`], what every handler can reach.
//! - `routes`: the router and the handlers, one folder per resource:
//!   `accounts/` (`forms`: the request bodies, documented and read as one
//!   type each; `replies`; `signup`; `session`), `logs/` (`query`,
//!   `item`, `export`, `stream`, `list`, `counts`) and `admin/` (`query`, `item`,
//!   `forms`, `users`: user administration). Each module imports only those
//!   before it, so `gateway/src` has no import cycle.

pub mod auth;
pub mod body;
pub mod client_ip;
pub mod compat;
pub mod config;
pub mod context;
pub mod error;
pub mod grpc;
pub mod headers;
pub mod metrics;
pub mod openapi;
pub mod readiness;
mod routes;
pub mod server;
mod state;

pub use crate::routes::document as openapi_document;

use std::{any::Any, net::SocketAddr};

use anyhow::Context;
use axum::{Router, middleware, response::IntoResponse, response::Response};
use common::metrics::Endpoint;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;

pub use crate::config::Config;
use crate::error::ApiError;
pub use crate::state::{AppState, Shared};

/// The complete HTTP service: routes, JSON 404/405, the request context
/// (id, client, span) on every response, and panics turned into a JSON 500.
/// Serve it with connection info (as [`server::serve`] does, or
/// `into_make_service_with_connect_info`) so the client IP is known.
pub fn router(state: AppState) -> Router {
    let trusted = state.trusted.clone();
    routes::routes()
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn_with_state(trusted, context::layer))
        .layer(middleware::from_fn(metrics::track))
        .layer(middleware::map_response(headers::add))
        .with_state(state)
}

fn panic_response(_: Box<dyn Any + Send + 'static>) -> Response {
    ApiError::Internal(anyhow::anyhow!("a handler panicked")).into_response()
}

/// A bound, not yet serving gateway. Binding happens in [`Self::build`], so
/// a test can read the port before serving.
pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    router: Router,
    /// The `/metrics` listener, when configured.
    metrics: Option<Endpoint>,
    /// Timeouts and the connection cap.
    limits: server::ConnectionLimits,
}

impl Application {
    /// Binds `config.addr` and prepares the service. Backends are not
    /// contacted yet.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.compat.warn("gateway");
        let state = AppState::new(&config)?;
        let listener = TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("cannot listen on GATEWAY_ADDR={}", config.addr))?;
        let local_addr = listener.local_addr()?;
        let metrics = match config.metrics_addr {
            Some(addr) => Some(Endpoint::bind("GATEWAY_METRICS_ADDR", addr).await?),
            None => {
                common::metrics::install()?;
                None
            }
        };
        crate::metrics::describe();
        Ok(Self {
            listener,
            local_addr,
            router: router(state),
            metrics,
            limits: config.limits,
        })
    }

    /// The address actually bound (the real port when configured with 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where `/metrics` is served, if configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(Endpoint::local_addr)
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets
    /// in-flight requests finish.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(addr = %self.local_addr, "gateway listening");
        let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        let metrics = self.metrics.map(|endpoint| {
            tracing::info!(addr = ?endpoint.local_addr(), "gateway metrics at /metrics");
            tokio::spawn(endpoint.serve(async {
                let _ = metrics_stopped.await;
            }))
        });
        server::serve(self.listener, self.router, self.limits, shutdown).await;
        let _ = stop_metrics.send(());
        if let Some(metrics) = metrics {
            let _ = metrics.await;
        }
        tracing::info!("gateway stopped");
        Ok(())
    }
}

/// Builds and serves until Ctrl-C or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    Application::build(config)
        .await?
        .run_until(common::shutdown::signal())
        .await
}

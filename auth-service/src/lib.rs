//! auth-service: accounts, email verification, login and JWTs over gRPC.
//!
//! Layout: [`domain`] parses raw input; [`api`] implements `auth.v1`
//! (`AuthService`, and `AdminService` over the use cases of [`users`]);
//! [`store`] persists (SQLite or PostgreSQL); [`forwarder`] streams the
//! outbox (login attempts and admin events) to audit-service; [`tokens`] signs and verifies
//! JWTs; [`hasher`] runs argon2id (and verifies imported Django hashes); [`mail`] sends verification codes;
//! [`import`] brings the Django service's users and login log over (`import-django`).
//! [`Application`] wires them and is what `main`, the all-in-one launcher
//! and the tests all start.

pub mod admin;
pub mod api;
pub mod attempt;
pub mod codes;
pub mod config;
pub mod context;
pub mod domain;
pub mod error;
pub mod forwarder;
pub mod hasher;
pub mod identities;
pub mod import;
pub mod mail;
pub mod store;
pub mod throttle;
pub mod tokens;
pub mod user_cli;
pub mod users;

use std::{future::Future, net::SocketAddr, pin::Pin, sync::Arc, time::Duration};

use anyhow::Context as _;

use common::{
    internal_auth::{AttachToken, RequireToken},
    metrics::{Endpoint, ScrapeHook, grpc::GrpcMetricsLayer},
    shutdown::Shutdown,
};
use proto::auth::v1::{
    admin_service_server::{self, AdminServiceServer},
    auth_service_server::{AuthServiceServer, SERVICE_NAME},
};
use tokio::{net::TcpListener, sync::Notify};
use tonic::{
    service::interceptor::InterceptedService,
    transport::{Server, server::Router},
};
use tower::layer::util::{Identity, Stack};

pub use config::Config;

use crate::{
    api::AuthApi,
    forwarder::Forwarder,
    hasher::PasswordHasher,
    mail::Mailer,
    store::{AuthStore, PgStore, SqliteStore},
    tokens::TokenService,
};

/// How long shutdown waits for the outbox to drain to audit-service.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The gRPC router with the metrics layer around every service.
type MeteredRouter = Router<Stack<GrpcMetricsLayer, Identity>>;

/// A built, bound, not yet serving auth-service.
pub struct Application {
    listener: TcpListener,
    router: MeteredRouter,
    /// The `/metrics` listener, when this service serves one.
    metrics: Option<Endpoint>,
    /// Samples the pool at each scrape while the service lives.
    _pool_metrics: ScrapeHook,
    forwarder: Pin<Box<dyn Future<Output = ()> + Send>>,
    upkeep: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// Keeps the named health entry in step with the database.
    readiness: Pin<Box<dyn Future<Output = ()> + Send>>,
    health: tonic_health::server::HealthReporter,
    stop_forwarder: common::shutdown::Trigger,
}

impl Application {
    /// Connects and migrates the database, loads or creates the signing
    /// keys, and binds the gRPC port.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let url = config.database_url.expose().to_owned();
        config.compat.warn("auth-service");
        // Before anything is recorded: samples taken earlier would be lost.
        let metrics = match config.metrics_addr {
            Some(addr) => Some(Endpoint::bind("AUTH_METRICS_ADDR", addr).await?),
            None => {
                common::metrics::install()?;
                None
            }
        };
        common::metrics::grpc::describe();
        common::metrics::describe_pools();
        attempt::describe();
        forwarder::describe();
        describe_sweeps();
        let opening = |e: store::StoreError| e.opening("AUTH_DATABASE_URL", &url);
        if url.starts_with("sqlite:") {
            let store = SqliteStore::connect(&url).await.map_err(opening)?;
            let hook = pool_hook(store.clone());
            Self::assemble(config, store, metrics, hook).await
        } else {
            let store = PgStore::connect(&url).await.map_err(opening)?;
            let hook = pool_hook(store.clone());
            Self::assemble(config, store, metrics, hook).await
        }
    }

    async fn assemble<S: AuthStore>(
        config: Config,
        store: S,
        metrics: Option<Endpoint>,
        pool_metrics: ScrapeHook,
    ) -> anyhow::Result<Self> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        common::health::require_writable(
            "AUTH_DATABASE_URL",
            config.database_url.expose(),
            store.check_writable(now),
        )
        .await?;
        identities::migrate(&store, now).await?;
        let tokens = Arc::new(TokenService::load(&store, &config.token_policy(), now).await?);
        let mailer = Mailer::new(
            config.smtp_url.as_ref().map(|s| s.expose()),
            config.mail_dir.clone(),
        )?;
        let signal = Arc::new(Notify::new());
        let hasher = PasswordHasher::new(config.hash_concurrency)?;
        refresh_django_decoy(&store, &hasher).await?;
        let api = AuthApi::new(
            store.clone(),
            hasher.clone(),
            tokens.clone(),
            mailer,
            config.mail_from.parse()?,
            signal.clone(),
        )
        .with_limits(config.brute_force.clone(), config.rate_limits)
        .with_ipv6_prefix(config.ipv6_prefix)
        .with_smtputf8(config.mail_smtputf8)
        .with_refused_tally_window(config.refused_tally_window)
        .with_refresh_reuse_grace(config.refresh_reuse_grace)
        .with_refresh_rotation(config.rotate_refresh_tokens)
        .with_unverified_accounts(config.unverified_ttl, config.verify_without_password);
        // One API behind two services: the account API and its administration.
        let api = Arc::new(api);

        let (stop_forwarder, stop_rx) = common::shutdown::channel();
        let upkeep = Box::pin(upkeep(
            store.clone(),
            tokens.clone(),
            hasher,
            config.key_reload_interval,
            Retention {
                known_client_ttl: config.brute_force.known_client_ttl,
                unverified_ttl: throttle::secs(config.unverified_ttl),
            },
            stop_rx.clone(),
        ));
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<AuthServiceServer<AuthApi<S>>>().await;
        health.set_serving::<AdminServiceServer<AuthApi<S>>>().await;
        let pinged = store.clone();
        let readiness = Box::pin(common::health::follow_database(
            health.clone(),
            SERVICE_NAME,
            move || {
                let store = pinged.clone();
                async move {
                    let now = time::OffsetDateTime::now_utc().unix_timestamp();
                    store.check_writable(now).await
                }
            },
        ));
        let forwarder = Forwarder::new(
            store,
            config.audit_grpc_url.clone(),
            AttachToken::new(config.internal_token.as_ref())?,
            signal,
        )
        .with_tls(config.internal_tls.for_url(&config.audit_grpc_url)?);

        let reflection = || {
            common::reflection::builder(
                proto::FILE_DESCRIPTOR_SET,
                &[SERVICE_NAME, admin_service_server::SERVICE_NAME],
            )
        };
        let mut server = Server::builder().trace_fn(common::trace_context::server_span);
        if let Some(tls) = &config.tls {
            server = server.tls_config(tls.load("AUTH_GRPC")?)?;
        }
        let router = server
            .layer(GrpcMetricsLayer)
            .add_service(health_service)
            .add_service(reflection()?.build_v1()?)
            .add_service(reflection()?.build_v1alpha()?)
            .add_service(InterceptedService::new(
                AuthServiceServer::from_arc(api.clone()),
                RequireToken(config.internal_token.clone()),
            ))
            .add_service(InterceptedService::new(
                AdminServiceServer::from_arc(api),
                RequireToken(config.internal_token.clone()),
            ));

        let listener = TcpListener::bind(config.grpc_addr)
            .await
            .with_context(|| format!("cannot listen on AUTH_GRPC_ADDR={}", config.grpc_addr))?;
        tracing::info!(
            addr = %listener.local_addr()?,
            database = %common::database::location(config.database_url.expose()),
            "auth-service listening"
        );
        if let Some(addr) = metrics.as_ref().and_then(Endpoint::local_addr) {
            tracing::info!(%addr, "auth-service metrics at /metrics");
        }
        Ok(Self {
            listener,
            router,
            metrics,
            _pool_metrics: pool_metrics,
            forwarder: Box::pin(forwarder.run(stop_rx)),
            upkeep,
            readiness,
            health,
            stop_forwarder,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        // The listener was bound in `build`; a bound socket has an address.
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Where `/metrics` is served, if this service serves it.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(Endpoint::local_addr)
    }

    /// Serves until `shutdown` resolves, then stops accepting, finishes
    /// in-flight calls and drains the outbox (bounded by a timeout).
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let forwarder = tokio::spawn(self.forwarder);
        let upkeep = tokio::spawn(self.upkeep);
        let readiness = tokio::spawn(self.readiness);
        let health = self.health;
        let abort = readiness.abort_handle();
        let shutdown = async move {
            shutdown.await;
            // Out of rotation first, so balancers stop sending new calls
            // while the in-flight ones finish.
            abort.abort();
            health
                .set_service_status(SERVICE_NAME, tonic_health::ServingStatus::NotServing)
                .await;
        };
        // Kept up until the outbox is drained, so the drain can be watched.
        let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        let metrics = self.metrics.map(|endpoint| {
            tokio::spawn(endpoint.serve(async {
                let _ = metrics_stopped.await;
            }))
        });
        let served = self
            .router
            .serve_with_incoming_shutdown(common::net::incoming_nodelay(self.listener), shutdown)
            .await;
        readiness.abort();
        self.stop_forwarder.start();
        if tokio::time::timeout(DRAIN_TIMEOUT, forwarder)
            .await
            .is_err()
        {
            tracing::warn!("outbox not drained before shutdown; it will be sent on next start");
        }
        let _ = upkeep.await;
        let _ = stop_metrics.send(());
        if let Some(metrics) = metrics {
            let _ = metrics.await;
        }
        served?;
        Ok(())
    }
}

/// Publishes `store`'s pool as `db_pool_connections{service="auth"}` at
/// each scrape.
fn pool_hook<DB: sqlx::Database>(store: store::SqlStore<DB>) -> ScrapeHook {
    common::metrics::on_scrape(move || common::metrics::record_pool("auth", store.pool_usage()))
}

/// Oldest throttle window worth keeping (longer than any default window).
const THROTTLE_RETENTION_SECS: i64 = 2 * 86_400;

/// How long upkeep keeps what it prunes, in seconds.
struct Retention {
    /// Known clients last seen longer ago are forgotten.
    known_client_ttl: i64,
    /// Unverified accounts created longer ago are deleted.
    unverified_ttl: i64,
}

/// Unverified accounts deleted per statement, so a backlog never holds the
/// writer for long.
const UNVERIFIED_SWEEP_BATCH: i64 = 500;
/// Most batches per upkeep round; the rest waits for the next round.
const UNVERIFIED_SWEEP_BATCHES: usize = 20;

fn describe_sweeps() {
    metrics::describe_gauge!(
        "django_password_hashes",
        metrics::Unit::Count,
        "Accounts still holding a password hash imported from Django (count); each is \
         replaced by argon2id at its owner's next login, and while any remain every \
         login pays a PBKDF2 timing decoy."
    );
    metrics::describe_counter!(
        "unverified_accounts_removed_total",
        metrics::Unit::Count,
        "Unverified accounts deleted by upkeep once older than AUTH_UNVERIFIED_TTL (count)."
    );
}

/// Deletes unverified accounts created before `before`, batch by batch;
/// how many.
async fn sweep_unverified<S: AuthStore>(store: &S, before: i64) -> Result<u64, store::StoreError> {
    let mut removed = 0;
    for _ in 0..UNVERIFIED_SWEEP_BATCHES {
        let n = store
            .delete_unverified(before, UNVERIFIED_SWEEP_BATCH)
            .await?;
        removed += n;
        metrics::counter!("unverified_accounts_removed_total").increment(n);
        if n < UNVERIFIED_SWEEP_BATCH.unsigned_abs() {
            break;
        }
    }
    Ok(removed)
}

/// Counts the Django hashes left and sets the hasher's decoy to match
/// (see [`PasswordHasher::set_django_decoy`]).
async fn refresh_django_decoy<S: AuthStore>(
    store: &S,
    hasher: &PasswordHasher,
) -> Result<(), store::StoreError> {
    let census = store.django_hash_census().await?;
    let left: i64 = census.iter().map(|(_, n)| n).sum();
    metrics::gauge!("django_password_hashes").set(left as f64);
    let decoy = hasher::django::decoy_iterations(&census);
    if decoy.is_some() {
        tracing::debug!(
            iterations = decoy,
            "Django hashes remain: every login pays a PBKDF2 decoy"
        );
    }
    hasher.set_django_decoy(decoy);
    Ok(())
}

/// Periodic chores: re-reads the signing keys (so `rotate-keys` takes
/// effect without a restart), recounts the Django hashes left, forgets
/// stale throttle counters and deletes unverified accounts past
/// `AUTH_UNVERIFIED_TTL`.
async fn upkeep<S: AuthStore>(
    store: S,
    tokens: Arc<TokenService>,
    hasher: PasswordHasher,
    every: Duration,
    retention: Retention,
    mut stop: Shutdown,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.started() => return,
        }
        if let Err(e) = tokens.reload(&store).await {
            tracing::warn!(error = %e, "signing keys not reloaded");
        }
        if let Err(e) = refresh_django_decoy(&store, &hasher).await {
            tracing::warn!(error = %e, "Django hash census failed; the decoy is unchanged");
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        match store
            .throttle_prune(
                now - THROTTLE_RETENTION_SECS,
                now,
                now - retention.known_client_ttl,
            )
            .await
        {
            Ok(n) if n > 0 => tracing::debug!(removed = n, "stale throttle counters pruned"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "throttle prune failed"),
        }
        match sweep_unverified(&store, now - retention.unverified_ttl).await {
            Ok(n) if n > 0 => tracing::info!(removed = n, "expired unverified accounts deleted"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "unverified account sweep failed"),
        }
    }
}

/// Builds and serves until SIGTERM / Ctrl-C.
pub async fn run(config: Config) -> anyhow::Result<()> {
    Application::build(config)
        .await?
        .run_until(common::shutdown::signal())
        .await
}

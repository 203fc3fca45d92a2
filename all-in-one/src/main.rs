//! One process, three services: the local quick start. Each service is the
//! same `Application` its own binary runs, bound to its configured address,
//! and they talk gRPC over loopback exactly as separate processes would.
//!
//! Where one service dials another (gateway -> auth-service, gateway and
//! auth-service -> audit-service) follows the addresses they are bound to,
//! unless `AUTH_GRPC_URL` / `AUDIT_GRPC_URL` are set: changing
//! `AUTH_GRPC_ADDR` alone moves both ends. A wildcard listen address
//! (`0.0.0.0`, `[::]`) is dialled on loopback.
//!
//! Shutdown order matters: the gateway stops first (no new requests), then
//! auth-service (which drains its attempt outbox into audit-service), then
//! audit-service.

use std::process::ExitCode;

use clap::Parser;

/// The three services (gateway, auth-service, audit-service) in one
/// process for local use, still speaking gRPC to each other over loopback.
#[derive(Parser)]
#[command(version, about, long_about = None, after_help = common::cli::AFTER_HELP)]
struct Cli {}

async fn run() -> anyhow::Result<()> {
    let mut audit_config = audit_service::Config::from_env()?;
    let mut auth_config = auth_service::Config::from_env()?;
    let mut gateway_config = gateway::Config::from_env()?;
    // One process has one metrics registry: served once (at
    // GATEWAY_METRICS_ADDR), or a scraper of all three would count it thrice.
    audit_config.metrics_addr = None;
    auth_config.metrics_addr = None;

    let audit_tls = audit_config.tls.is_some();
    let auth_tls = auth_config.tls.is_some();

    let audit = audit_service::Application::build(audit_config).await?;
    if common::config::var("AUDIT_GRPC_URL").is_none() {
        let url = common::net::dial_url(audit.local_addr(), audit_tls);
        auth_config.internal_tls.check_url("AUDIT_GRPC_URL", &url)?;
        auth_config.audit_grpc_url.clone_from(&url);
        gateway_config.audit_grpc_url = url;
    }
    let auth = auth_service::Application::build(auth_config).await?;
    if common::config::var("AUTH_GRPC_URL").is_none() {
        let url = common::net::dial_url(auth.local_addr(), auth_tls);
        gateway_config
            .internal_tls
            .check_url("AUTH_GRPC_URL", &url)?;
        gateway_config.auth_grpc_url = url;
    }
    let auth_url = gateway_config.auth_grpc_url.clone();
    let audit_url = gateway_config.audit_grpc_url.clone();
    let gateway = gateway::Application::build(gateway_config).await?;
    tracing::info!(
        gateway = %gateway.local_addr(),
        auth = %auth.local_addr(),
        audit = %audit.local_addr(),
        auth_url,
        audit_url,
        metrics = ?gateway.metrics_addr(),
        "all services up"
    );

    let (stop_gateway, gateway_rx) = common::shutdown::channel();
    let (stop_auth, auth_rx) = common::shutdown::channel();
    let (stop_audit, audit_rx) = common::shutdown::channel();
    let mut audit_task = tokio::spawn(audit.run_until(audit_rx.into_started()));
    let mut auth_task = tokio::spawn(auth.run_until(auth_rx.into_started()));
    let mut gateway_task = tokio::spawn(gateway.run_until(gateway_rx.into_started()));

    // A service that ends by itself is a failure: report it instead of
    // lingering half-alive.
    tokio::select! {
        () = common::shutdown::signal() => {}
        r = &mut audit_task => return Err(stopped_early("audit-service", r?)),
        r = &mut auth_task => return Err(stopped_early("auth-service", r?)),
        r = &mut gateway_task => return Err(stopped_early("gateway", r?)),
    }
    stop_gateway.start();
    gateway_task.await??;
    stop_auth.start();
    auth_task.await??;
    stop_audit.start();
    audit_task.await??;
    Ok(())
}

/// A service that ended before shutdown was asked for, as an error.
fn stopped_early(service: &str, result: anyhow::Result<()>) -> anyhow::Error {
    match result {
        Ok(()) => anyhow::anyhow!("{service} stopped by itself"),
        Err(e) => e.context(format!("{service} stopped")),
    }
}

fn main() -> ExitCode {
    let Cli {} = Cli::parse();
    common::cli::run("all-in-one", run)
}

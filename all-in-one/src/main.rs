//! One process, three services: the local quick start. Each service is the
//! same `Application` its own binary runs, bound to its configured address,
//! and they talk gRPC over loopback exactly as separate processes would.
//!
//! Shutdown order matters: the gateway stops first (no new requests), then
//! auth-service (which drains its attempt outbox into audit-service), then
//! audit-service.

use tokio::sync::watch;

fn stopped(rx: &watch::Receiver<bool>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

async fn run() -> anyhow::Result<()> {
    let mut audit_config = audit_service::Config::from_env()?;
    let mut auth_config = auth_service::Config::from_env()?;
    let gateway_config = gateway::Config::from_env()?;
    // One process has one metrics registry: served once (at
    // GATEWAY_METRICS_ADDR), or a scraper of all three would count it thrice.
    audit_config.metrics_addr = None;
    auth_config.metrics_addr = None;

    let audit = audit_service::Application::build(audit_config).await?;
    let auth = auth_service::Application::build(auth_config).await?;
    let gateway = gateway::Application::build(gateway_config).await?;
    tracing::info!(
        gateway = %gateway.local_addr(),
        auth = %auth.local_addr(),
        audit = %audit.local_addr(),
        metrics = ?gateway.metrics_addr(),
        "all services up"
    );

    let (stop_gateway, gateway_rx) = watch::channel(false);
    let (stop_auth, auth_rx) = watch::channel(false);
    let (stop_audit, audit_rx) = watch::channel(false);
    let mut audit_task = tokio::spawn(audit.run_until(stopped(&audit_rx)));
    let mut auth_task = tokio::spawn(auth.run_until(stopped(&auth_rx)));
    let mut gateway_task = tokio::spawn(gateway.run_until(stopped(&gateway_rx)));

    // A service that ends by itself is a failure: report it instead of
    // lingering half-alive.
    tokio::select! {
        () = common::shutdown::signal() => {}
        r = &mut audit_task => return Err(anyhow::anyhow!("audit-service stopped: {:?}", r?.err())),
        r = &mut auth_task => return Err(anyhow::anyhow!("auth-service stopped: {:?}", r?.err())),
        r = &mut gateway_task => return Err(anyhow::anyhow!("gateway stopped: {:?}", r?.err())),
    }
    let _ = stop_gateway.send(true);
    gateway_task.await??;
    let _ = stop_auth.send(true);
    auth_task.await??;
    let _ = stop_audit.send(true);
    audit_task.await??;
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let telemetry = common::telemetry::init("all-in-one");
    let result = run().await;
    telemetry.shutdown().await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

//! audit-service binary: reads the environment and runs the service.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let telemetry = common::telemetry::init("audit-service");
    let config = match audit_service::Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(2);
        }
    };
    let result = audit_service::run(config).await;
    telemetry.shutdown().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "audit-service failed");
            ExitCode::FAILURE
        }
    }
}

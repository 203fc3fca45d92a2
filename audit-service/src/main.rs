//! audit-service binary: reads the environment and runs the service.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    common::telemetry::init();
    let config = match audit_service::Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(2);
        }
    };
    match audit_service::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "audit-service failed");
            ExitCode::FAILURE
        }
    }
}

//! `gateway`: the public REST API. Configuration comes from the environment
//! (see `env.sample`); an invalid value exits with status 2 and one line.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let telemetry = common::telemetry::init("gateway");
    let config = match gateway::Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("gateway: {e}");
            return ExitCode::from(2);
        }
    };
    let result = gateway::run(config).await;
    telemetry.shutdown().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "gateway failed");
            eprintln!("gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

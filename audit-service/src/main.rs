//! audit-service binary: reads the environment and runs the service.

use std::process::ExitCode;

use clap::Parser;

/// The only owner of the login-attempt log: ingest from auth-service's
/// outbox, paged and filtered queries, and a live tail (audit.v1 over gRPC).
#[derive(Parser)]
#[command(version, about, long_about = None, after_help = common::cli::AFTER_HELP)]
struct Cli {}

fn main() -> ExitCode {
    let Cli {} = Cli::parse();
    common::cli::run("audit-service", || async {
        let config = audit_service::Config::from_env()?;
        audit_service::run(config).await
    })
}

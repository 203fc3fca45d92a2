//! `gateway`: the public REST API. Configuration comes from the environment
//! (see `env.sample`); `common::cli` maps failures to exit statuses.

use std::process::ExitCode;

use clap::Parser;

/// The public REST API (registration, verification, login, the
/// login-attempt log) in front of auth-service and audit-service.
#[derive(Parser)]
#[command(version, about, long_about = None, after_help = common::cli::AFTER_HELP)]
struct Cli {}

fn main() -> ExitCode {
    let Cli {} = Cli::parse();
    common::cli::run("gateway", || async {
        let config = gateway::Config::from_env()?;
        gateway::run(config).await
    })
}

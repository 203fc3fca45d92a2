//! auth-service binary: serves by default; operator subcommands otherwise.

use std::io::Read;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    version,
    about = "Accounts, verification, login and JWTs over gRPC (auth.v1)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the gRPC API (the default).
    Serve,
    /// Create a verified administrator in the configured auth database.
    CreateAdmin {
        /// The admin's username.
        #[arg(long)]
        username: String,
        /// The admin's email.
        #[arg(long)]
        email: String,
        /// Read the password from standard input (required: passwords never go on the command line).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Lift a brute-force lock on an account (all IPs) before it expires.
    Unlock {
        /// The account's username or email.
        #[arg(long)]
        username: String,
    },
    /// Add a new signing key: published now, signing after
    /// AUTH_KEY_PUBLISH_DELAY (default 10m); older keys keep verifying
    /// until their tokens expire.
    RotateKeys {
        /// Sign with the new key at once (a leaked key). Breaks verifiers
        /// holding a cached key set until they refetch it.
        #[arg(long)]
        now: bool,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let telemetry = common::telemetry::init("auth-service");
    let cli = Cli::parse();
    let config = match auth_service::Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => auth_service::run(config).await,
        Command::CreateAdmin {
            username, email, ..
        } => create_admin(&config, &username, &email).await,
        Command::Unlock { username } => auth_service::admin::unlock(&config, &username)
            .await
            .map(|n| println!("unlocked {username} ({n} counters cleared)")),
        Command::RotateKeys { now } => rotate_keys(&config, now).await,
    };
    telemetry.shutdown().await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn create_admin(
    config: &auth_service::Config,
    username: &str,
    email: &str,
) -> anyhow::Result<()> {
    let mut password = String::new();
    std::io::stdin().read_to_string(&mut password)?;
    let password = password.trim_end_matches(['\r', '\n']);
    let user = auth_service::admin::create_admin(config, username, email, password).await?;
    println!("created admin {} (id {})", user.username, user.id);
    Ok(())
}

async fn rotate_keys(config: &auth_service::Config, now: bool) -> anyhow::Result<()> {
    use auth_service::admin::Rollover;
    let rollover = if now {
        Rollover::Immediate
    } else {
        Rollover::Scheduled
    };
    let key = auth_service::admin::rotate_keys(config, rollover).await?;
    let starts = time::OffsetDateTime::from_unix_timestamp(key.not_before)?
        .format(&time::format_description::well_known::Rfc3339)?;
    println!(
        "added signing key {}: published now, signs from {starts}",
        key.kid
    );
    Ok(())
}

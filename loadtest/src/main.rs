//! Load benchmark for the whole system.
//!
//! Starts the real `audit-service`, `auth-service` and `gateway` binaries
//! (separate processes, so each one's peak RSS can be read) on SQLite or a
//! fresh PostgreSQL database, drives the REST API over loopback with a
//! bounded number of workers for a bounded time per scenario, and prints a
//! Markdown table: requests/s, p50, p99, errors and peak RSS.
//!
//! ```sh
//! cargo build --release --bins
//! target/release/loadtest --backend sqlite
//! target/release/loadtest --backend postgres --postgres-url postgres://postgres@127.0.0.1:5432/test
//! target/release/loadtest --scenarios refresh --seconds 5              # peak refresh rate
//! target/release/loadtest --scenarios refresh --refresh-rate 2500      # latency at a fixed rate
//! target/release/loadtest --scenarios refresh,logs --jwt-algorithm RS256  # per signing algorithm
//! ```

mod calibrate;
mod driver;
mod scenarios;
mod system;

use std::{path::PathBuf, time::Duration};

use clap::{Parser, ValueEnum};

/// Which database both services use.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Backend {
    /// Files in a temporary folder.
    Sqlite,
    /// Fresh databases created on `--postgres-url`.
    Postgres,
}

/// One part of the benchmark (`--scenarios`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Raw argon2id hashes/s on all cores.
    Calibrate,
    /// Logins with the right password.
    Login,
    /// Logins as unknown users.
    LoginUnknown,
    /// Refresh-token rotation.
    Refresh,
    /// Seeding the login log, then the admin's log page.
    Logs,
    /// Many logins at once.
    Flood,
}

/// Command-line options.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "Drive the running system over loopback and report throughput and latency"
)]
pub struct Args {
    /// Database engine for both services.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub backend: Backend,
    /// Server on which fresh databases are created (PostgreSQL backend).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub postgres_url: String,
    /// Folder holding the service binaries.
    #[arg(long, default_value = "target/release")]
    pub bin_dir: PathBuf,
    /// Seconds per scenario.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Concurrent HTTP workers for the cheap scenarios (refresh, log page).
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Concurrent workers for logins (argon2-bound; more only queues).
    #[arg(long, default_value_t = 16)]
    pub login_concurrency: usize,
    /// Rows seeded into the login-attempt log before the log-page scenario.
    #[arg(long, default_value_t = 1_000_000)]
    pub log_rows: u64,
    /// Concurrent logins in the flood scenario.
    #[arg(long, default_value_t = 1000)]
    pub flood: usize,
    /// Scenarios to run (comma-separated), always in the order listed here.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "calibrate,login,login-unknown,refresh,logs,flood"
    )]
    pub scenarios: Vec<Scenario>,
    /// Send refreshes at this fixed total rate (requests/s) instead of back
    /// to back; latency then counts from each request's scheduled start, so
    /// queueing shows up in p99 (latency at a given load, not peak rate).
    #[arg(long)]
    pub refresh_rate: Option<f64>,
    /// `JWT_ALGORITHM` for auth-service (`EdDSA`, `ES256`, `RS256`); unset:
    /// its default.
    #[arg(long)]
    pub jwt_algorithm: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let duration = Duration::from_secs(args.seconds);
    let system = system::System::start(&args).await?;
    let report = scenarios::run_all(&args, &system, duration).await;
    let rss = system.peak_rss();
    system.stop().await;
    let report = report?;
    println!(
        "\n## {:?} backend, {} s per scenario\n",
        args.backend, args.seconds
    );
    println!("{report}");
    println!("Peak RSS: {rss}");
    Ok(())
}

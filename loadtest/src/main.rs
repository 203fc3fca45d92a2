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

/// Command-line options.
#[derive(Debug, Parser)]
#[command(about = "Drive the running system over loopback and report throughput and latency")]
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

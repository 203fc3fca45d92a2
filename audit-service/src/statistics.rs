//! Planner statistics upkeep for SQLite.
//!
//! PostgreSQL (autovacuum) and MariaDB (InnoDB persistent statistics) keep
//! their own statistics current; SQLite gathers none unless asked. Without
//! them its planner cannot tell a CIDR filter matching half the log from
//! one matching a handful of rows, and served a `/16` page by sorting every
//! matching row (37 ms at 1 M rows, growing with the log) instead of reading
//! the newest rows first (0.8 ms). `PRAGMA optimize=0x10002` re-analyzes,
//! with a bounded sample, only tables whose size changed a lot since the
//! last analysis, so running it often costs almost nothing.

use std::time::Duration;

use tokio::sync::watch;

use crate::store::Store;

/// How often statistics are checked: soon enough that a log filling up
/// from empty is re-planned within minutes.
pub(crate) const INTERVAL: Duration = Duration::from_secs(600);

/// Refreshes statistics now and then every [`INTERVAL`] until shutdown.
pub(crate) async fn run(store: Store, mut stopping: watch::Receiver<bool>) {
    loop {
        if let Err(error) = store.refresh_statistics().await {
            // The next round retries; only plan quality suffers meanwhile.
            tracing::warn!(%error, "refreshing planner statistics failed");
        }
        tokio::select! {
            () = tokio::time::sleep(INTERVAL) => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
    }
}

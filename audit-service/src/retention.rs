//! Retention: deletes attempts older than `AUDIT_RETENTION_DAYS`.
//!
//! Each statement deletes a bounded batch and the task pauses between
//! batches, so no statement holds locks for long and ingest keeps flowing
//! while a large backlog drains.

use common::shutdown::Shutdown;
use std::time::Duration;

use crate::{
    attempt::{Micros, now_micros},
    store::Store,
};

/// Rows one DELETE removes at most.
pub(crate) const BATCH: u32 = 1000;
/// Pause between two full batches, leaving the database to other work.
const PAUSE: Duration = Duration::from_millis(50);
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The oldest time kept when `days` are retained, as of `now`.
pub(crate) fn cutoff(now: Micros, days: u32) -> Micros {
    now.saturating_sub(i64::from(days).saturating_mul(MICROS_PER_DAY))
}

/// Deletes everything before `cutoff`, batch by batch; returns the count.
/// Stops early (returning what it did) when `stopping` turns true.
pub(crate) async fn purge(
    store: &Store,
    cutoff: Micros,
    stopping: &Shutdown,
) -> Result<u64, sqlx::Error> {
    let mut total = 0u64;
    loop {
        let deleted = store.delete_before(cutoff, BATCH).await?;
        total = total.saturating_add(deleted);
        if deleted < u64::from(BATCH) || stopping.is_started() {
            return Ok(total);
        }
        tokio::time::sleep(PAUSE).await;
    }
}

/// Purges now and then every `interval` until shutdown.
pub(crate) async fn run(store: Store, days: u32, interval: Duration, mut stopping: Shutdown) {
    loop {
        match purge(&store, cutoff(now_micros(), days), &stopping).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, days, "old login attempts deleted"),
            // Next round retries; the log only grows a little meanwhile.
            Err(error) => tracing::warn!(%error, "retention pass failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = stopping.started() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cutoff_is_whole_days_back() {
        assert_eq!(cutoff(10 * MICROS_PER_DAY, 3), 7 * MICROS_PER_DAY);
        assert_eq!(cutoff(i64::MIN + 1, u32::MAX), i64::MIN);
    }
}

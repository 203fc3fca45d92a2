//! Live tails: committed attempts fanned out to every open `Tail` stream,
//! each filtered on its own, none allowed to hold memory without bound.

use std::sync::Arc;

use common::shutdown::Shutdown;
use proto::audit::v1::TailEvent;
use tokio::sync::{broadcast, mpsc};
use tonic::Status;

use crate::attempt::{Filter, StoredAttempt};

/// Tail events buffered per subscriber ahead of its connection.
pub(crate) const TAIL_BUFFER: usize = 64;
/// Committed attempts the tail fan-out holds for its slowest subscriber;
/// past that, the subscriber gets a skip notice instead of more memory.
pub(crate) const TAIL_CAPACITY: usize = 4096;

/// The fan-out of committed attempts to live tails.
#[derive(Debug, Clone)]
pub struct TailHub {
    /// Fed after each committed ingest batch.
    sender: broadcast::Sender<Arc<StoredAttempt>>,
}

impl TailHub {
    /// A hub holding at most `capacity` attempts for a slow subscriber.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            sender: broadcast::channel(capacity).0,
        }
    }

    /// How many tails are open right now; lets tests (and operators) see
    /// that a client that went away released its subscription.
    pub fn subscribers(&self) -> usize {
        self.sender.receiver_count()
    }

    /// Announces committed attempts; nobody listening is fine.
    pub(crate) fn publish(&self, attempts: Vec<StoredAttempt>) {
        if self.sender.receiver_count() == 0 {
            return;
        }
        for a in attempts {
            let _ = self.sender.send(Arc::new(a));
        }
    }
}

impl TailHub {
    /// A subscription to what is committed from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<StoredAttempt>> {
        self.sender.subscribe()
    }
}

/// Serves one tail: forwards matching attempts until the client goes away
/// (then the subscription is dropped at once, not at the next attempt),
/// the server stops, or the hub closes.
pub(crate) async fn tail_stream(
    filter: Filter,
    mut updates: broadcast::Receiver<Arc<StoredAttempt>>,
    events: mpsc::Sender<Result<TailEvent, Status>>,
    stopping: Shutdown,
) {
    let stop = stopping.into_started();
    tokio::pin!(stop);
    loop {
        let event = tokio::select! {
            biased;
            () = &mut stop => break,
            () = events.closed() => break,
            update = updates.recv() => match update {
                Ok(attempt) if filter.matches(&attempt) => TailEvent {
                    attempt: Some(StoredAttempt::clone(&attempt).into()),
                    skipped: 0,
                },
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    tracing::warn!(skipped, "tail subscriber fell behind");
                    TailEvent { attempt: None, skipped }
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
        };
        if events.send(Ok(event)).await.is_err() {
            break;
        }
    }
    tracing::debug!("tail closed");
}

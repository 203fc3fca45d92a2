//! The `audit.v1.AuditService` gRPC handlers.

use std::sync::Arc;

use proto::audit::v1::{
    IngestAck, IngestBatch, ListAttemptsRequest, ListAttemptsResponse, TailEvent, TailRequest,
    audit_service_server::AuditService,
};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument as _;

use crate::{
    attempt::{Cursor, Filter, NewAttempt, StoredAttempt, parse_limit},
    error::Error,
    store::Store,
};

/// Acks buffered ahead of a slow reader; the producer waits for acks
/// anyway, so a small buffer suffices.
const ACK_BUFFER: usize = 16;
/// Tail events buffered per subscriber ahead of its connection.
const TAIL_BUFFER: usize = 64;
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
    fn publish(&self, attempts: Vec<StoredAttempt>) {
        if self.sender.receiver_count() == 0 {
            return;
        }
        for a in attempts {
            let _ = self.sender.send(Arc::new(a));
        }
    }
}

/// Handles the RPCs over the shared store.
#[derive(Debug, Clone)]
pub(crate) struct AuditApi {
    /// The log database.
    store: Store,
    /// Where committed attempts go for live tails.
    hub: TailHub,
    /// Turns `true` when the server starts shutting down, so long-lived
    /// ingest and tail streams end and graceful shutdown does not wait on
    /// them.
    stopping: watch::Receiver<bool>,
}

impl AuditApi {
    pub(crate) fn new(store: Store, hub: TailHub, stopping: watch::Receiver<bool>) -> Self {
        Self {
            store,
            hub,
            stopping,
        }
    }
}

/// The request id from the edge, for the request's span.
fn request_id<T>(req: &Request<T>) -> String {
    common::metadata::get(req.metadata(), common::metadata::REQUEST_ID)
        .unwrap_or_default()
        .to_owned()
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    type IngestStream = ReceiverStream<Result<IngestAck, Status>>;
    type TailStream = ReceiverStream<Result<TailEvent, Status>>;

    async fn tail(
        &self,
        request: Request<TailRequest>,
    ) -> Result<Response<Self::TailStream>, Status> {
        let span = tracing::info_span!("tail", request_id = %request_id(&request));
        let filter = Filter::parse(request.get_ref())?;
        // Subscribe before answering, so nothing committed after the client
        // sees the response headers is missed.
        let updates = self.hub.sender.subscribe();
        let (tx, rx) = mpsc::channel(TAIL_BUFFER);
        tokio::spawn(tail_stream(filter, updates, tx, self.stopping.clone()).instrument(span));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn ingest(
        &self,
        request: Request<Streaming<IngestBatch>>,
    ) -> Result<Response<Self::IngestStream>, Status> {
        let span = tracing::info_span!(
            "ingest",
            request_id = %request_id(&request),
            peer = ?request.remote_addr(),
        );
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(ACK_BUFFER);
        tokio::spawn(
            ingest_stream(
                self.store.clone(),
                self.hub.clone(),
                inbound,
                tx,
                self.stopping.clone(),
            )
            .instrument(span),
        );
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn list_attempts(
        &self,
        request: Request<ListAttemptsRequest>,
    ) -> Result<Response<ListAttemptsResponse>, Status> {
        let span = tracing::info_span!("list_attempts", request_id = %request_id(&request));
        async move {
            let req = request.into_inner();
            let limit = parse_limit(req.limit)?;
            let cursor = match req.cursor.as_str() {
                "" => None,
                raw => Some(Cursor::decode(raw)?),
            };
            let filter = Filter::parse(&req)?;
            let page = self.store.list(&filter, limit, cursor).await?;
            Ok(Response::new(ListAttemptsResponse {
                attempts: page.attempts.into_iter().map(Into::into).collect(),
                next_cursor: page.next.map(|c| c.encode()).unwrap_or_default(),
            }))
        }
        .instrument(span)
        .await
        .map_err(|e: Error| e.into())
    }
}

/// Resolves once shutdown has begun; never, if the server side is gone
/// (then the stream ends with its connection instead).
async fn stopped(mut stopping: watch::Receiver<bool>) {
    if stopping.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Serves one producer's stream: batches strictly in order, each committed
/// before its ack. Any failure ends the stream without acking the failed
/// batch, so the producer resends it and nothing is lost.
async fn ingest_stream(
    store: Store,
    hub: TailHub,
    mut inbound: Streaming<IngestBatch>,
    acks: mpsc::Sender<Result<IngestAck, Status>>,
    stopping: watch::Receiver<bool>,
) {
    let stop = stopped(stopping);
    tokio::pin!(stop);
    loop {
        let next = tokio::select! {
            biased;
            () = &mut stop => {
                let _ = acks
                    .send(Err(Status::unavailable("audit-service is shutting down; reconnect")))
                    .await;
                break;
            }
            () = acks.closed() => break,
            next = inbound.message() => next,
        };
        let batch = match next {
            Ok(Some(batch)) => batch,
            Ok(None) => break,
            Err(status) => {
                // Usually the producer hung up; if it is still there (say its
                // message did not decode), it learns why the stream ends.
                tracing::debug!(%status, "producer stream broke");
                let _ = acks.send(Err(status)).await;
                break;
            }
        };
        let reply = ingest_batch(&store, &hub, batch).await;
        let failed = reply.is_err();
        if acks.send(reply.map_err(Status::from)).await.is_err() || failed {
            break;
        }
    }
}

/// Validates and commits one batch, returning its ack.
async fn ingest_batch(
    store: &Store,
    hub: &TailHub,
    batch: IngestBatch,
) -> Result<IngestAck, Error> {
    let recording = recording_spans(&batch.attempts);
    let attempts = NewAttempt::parse_batch(batch.attempts)?;
    let stored = store.insert_batch(&attempts).await?;
    // Closing them marks each attempt's commit in its login's trace.
    drop(recording);
    // Only the count fits a u32 ack; a batch is far smaller than that.
    let inserted = u32::try_from(stored.len()).unwrap_or(u32::MAX);
    hub.publish(stored);
    tracing::debug!(
        batch_seq = batch.batch_seq,
        received = attempts.len(),
        inserted,
        "batch committed"
    );
    Ok(IngestAck {
        batch_seq: batch.batch_seq,
        inserted,
    })
}

/// One span per attempt that carries its login's trace context, each a
/// child of that login's span, open until the batch is committed; empty
/// when the producer does not export traces.
fn recording_spans(attempts: &[proto::audit::v1::Attempt]) -> Vec<tracing::Span> {
    attempts
        .iter()
        .filter_map(|a| a.trace_parent.as_deref())
        .map(|traceparent| {
            let span = tracing::info_span!("record_attempt", otel.kind = "consumer");
            common::trace_context::set_remote_parent(&span, traceparent);
            span
        })
        .collect()
}

/// Serves one tail: forwards matching attempts until the client goes away
/// (then the subscription is dropped at once, not at the next attempt),
/// the server stops, or the hub closes.
async fn tail_stream(
    filter: Filter,
    mut updates: broadcast::Receiver<Arc<StoredAttempt>>,
    events: mpsc::Sender<Result<TailEvent, Status>>,
    stopping: watch::Receiver<bool>,
) {
    let stop = stopped(stopping);
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

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
    attempt::{Cursor, Filter, StoredAttempt, parse_limit},
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
    pub(crate) fn publish(&self, attempts: Vec<StoredAttempt>) {
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
        let filter = Filter::parse(request.get_ref().filter.as_ref())?;
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
            crate::ingest::serve(
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
            let filter = Filter::parse(req.filter.as_ref())?;
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
pub(crate) async fn stopped(mut stopping: watch::Receiver<bool>) {
    if stopping.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
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

//! The `audit.v1.AuditService` gRPC handlers.

use common::shutdown::Shutdown;
use proto::audit::v1::{
    CountAttemptsRequest, CountAttemptsResponse, IngestAck, IngestBatch, ListAdminEventsRequest,
    ListAdminEventsResponse, ListAttemptsRequest, ListAttemptsResponse, TailEvent, TailRequest,
    audit_service_server::AuditService,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument as _;

use crate::{
    admin_event::AdminFilter,
    attempt::{CountQuery, Filter, PageRequest, now_micros},
    error::Error,
    store::Store,
    tail::{TAIL_BUFFER, TailHub, tail_stream},
};

/// Acks buffered ahead of a slow reader; the producer waits for acks
/// anyway, so a small buffer suffices.
const ACK_BUFFER: usize = 16;

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
    stopping: Shutdown,
}

impl AuditApi {
    pub(crate) fn new(store: Store, hub: TailHub, stopping: Shutdown) -> Self {
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
        let updates = self.hub.subscribe();
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
            let at = PageRequest::parse(req.limit, &req.cursor, req.oldest_first)?;
            let filter = Filter::parse(req.filter.as_ref())?;
            let page = self
                .store
                .list(&filter, at.limit, at.cursor, at.order)
                .await?;
            Ok(Response::new(ListAttemptsResponse {
                attempts: page.attempts.into_iter().map(Into::into).collect(),
                next_cursor: page.next.map(|c| c.encode()).unwrap_or_default(),
            }))
        }
        .instrument(span)
        .await
        .map_err(|e: Error| e.into())
    }

    async fn list_admin_events(
        &self,
        request: Request<ListAdminEventsRequest>,
    ) -> Result<Response<ListAdminEventsResponse>, Status> {
        let span = tracing::info_span!("list_admin_events", request_id = %request_id(&request));
        async move {
            let req = request.into_inner();
            let at = PageRequest::parse(req.limit, &req.cursor, req.oldest_first)?;
            let filter = AdminFilter::parse(req.filter.as_ref())?;
            let page = self
                .store
                .list_admin_events(&filter, at.limit, at.cursor, at.order)
                .await?;
            Ok(Response::new(ListAdminEventsResponse {
                events: page.events.into_iter().map(Into::into).collect(),
                next_cursor: page.next.map(|c| c.encode()).unwrap_or_default(),
            }))
        }
        .instrument(span)
        .await
        .map_err(|e: Error| e.into())
    }

    async fn count_attempts(
        &self,
        request: Request<CountAttemptsRequest>,
    ) -> Result<Response<CountAttemptsResponse>, Status> {
        let span = tracing::info_span!("count_attempts", request_id = %request_id(&request));
        async move {
            let query = CountQuery::parse(request.get_ref(), now_micros())?;
            let counted = self.store.count(&query).await?;
            Ok(Response::new(query.response(&counted)))
        }
        .instrument(span)
        .await
        .map_err(|e: Error| e.into())
    }
}

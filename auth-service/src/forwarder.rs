//! Streams the outbox (login attempts and admin events) to audit-service.
//!
//! One long-lived bidirectional `Ingest` stream; batches go out oldest
//! first, one at a time, and their rows are deleted only after the ack says
//! audit-service has committed them. Any failure drops the stream and
//! reconnects with capped exponential backoff; unacknowledged rows are simply
//! sent again (audit-service ignores duplicate event ids). So delivery is
//! at-least-once on the wire and exactly-once in the log, and logins never
//! wait for any of this.
//!
//! A batch audit-service refuses as invalid (`InvalidArgument`: a row with
//! an unknown reason, a time outside its window, ...) would be refused
//! again on every resend and hold up everything behind it. So its rows are
//! then sent one at a time, and a row refused on its own is moved to the
//! `refused_attempts` table (kept for an operator to fix and re-queue, never
//! dropped) with an error log naming its event and the refusal, counted in
//! `forwarder_rows_refused_total`; the rest go on to the log.
//!
//! Admin events (outbox rows of kind `admin_event`) travel in the same
//! batches (`IngestBatch.admin_events`) under the same rules. An
//! audit-service from before admin events acks a batch without them
//! (`admin_events_stored` 0): those rows then stay in the outbox and are
//! sent again, paced, while attempts go on; they are taken once
//! audit-service is upgraded.

use std::{sync::Arc, time::Duration};

use common::internal_auth::AttachToken;
use common::shutdown::Shutdown;
use prost::Message;
use proto::audit::v1::{
    AdminEvent, Attempt, IngestBatch, audit_service_client::AuditServiceClient,
};
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{
    Code, Status,
    transport::{ClientTlsConfig, Endpoint},
};

use crate::store::{AuthStore, OutboxKind, OutboxRow};

/// Most attempts per batch.
const BATCH: i64 = 500;
/// How long an ack may take before the stream is considered dead.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle re-check interval (rows written by other replicas do not notify us).
const IDLE_POLL: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// After a batch that did not fill up, how long attempts gather before the
/// next read. Every batch is a durable commit in audit-service (~0.8 ms of
/// its CPU) plus an outbox read and delete here, so under a steady stream
/// of logins one batch per login took ~8% of the CPU that argon2 needs;
/// an attempt reaches the log at most this much later.
const LINGER: Duration = Duration::from_millis(50);

/// Describes the forwarder's metrics and registers them at zero, so a
/// healthy service shows `forwarder_reconnects_total 0` and an empty
/// backlog before the first login. Called once the recorder is installed.
pub fn describe() {
    metrics::describe_gauge!(
        "outbox_backlog",
        metrics::Unit::Count,
        "Login attempts and admin events in auth-service's outbox not yet acknowledged by \
         audit-service (count); growing means the audit stream is down or slow."
    );
    metrics::describe_counter!(
        "forwarder_reconnects_total",
        metrics::Unit::Count,
        "Times the outbox stream to audit-service failed and was reopened (count)."
    );
    metrics::describe_histogram!(
        "forwarder_batch_size",
        metrics::Unit::Count,
        "Login attempts per batch sent to audit-service and acknowledged (count)."
    );
    metrics::describe_counter!(
        "forwarder_rows_refused_total",
        metrics::Unit::Count,
        "Login attempts and admin events audit-service refused as invalid, moved from the \
         outbox to refused_attempts and logged as errors (count); should stay 0."
    );
    metrics::counter!("forwarder_reconnects_total").increment(0);
    metrics::counter!("forwarder_rows_refused_total").increment(0);
    // Registered, not recorded: an empty histogram (count 0).
    let _ = metrics::histogram!("forwarder_batch_size");
}

/// The forwarder task's state.
pub struct Forwarder<S> {
    store: S,
    audit_url: String,
    /// Set for an `https://` URL; `None`: plain HTTP/2.
    tls: Option<ClientTlsConfig>,
    token: AttachToken,
    signal: Arc<Notify>,
}

enum Exit {
    /// Shutdown was asked for and the outbox is empty.
    Drained,
}

impl<S: AuthStore> Forwarder<S> {
    /// A forwarder from `store`'s outbox to audit-service at `audit_url`
    /// (plain HTTP/2; see [`Forwarder::with_tls`]).
    pub fn new(store: S, audit_url: String, token: AttachToken, signal: Arc<Notify>) -> Self {
        Self {
            store,
            audit_url,
            tls: None,
            token,
            signal,
        }
    }

    /// Connects with TLS (used for `https://` URLs); the files are read
    /// by the caller at start-up, so a bad one stops it there.
    #[must_use]
    pub fn with_tls(mut self, tls: Option<ClientTlsConfig>) -> Self {
        self.tls = tls;
        self
    }

    /// Runs until `stop` turns true and the outbox is drained (or the
    /// caller gives up waiting and drops this future).
    pub async fn run(self, mut stop: Shutdown) {
        let mut backoff = Duration::from_millis(100);
        // The last outbox seq of a refused batch: rows up to it go one at a
        // time, to find the invalid one.
        let mut isolating: Option<i64> = None;
        loop {
            match self.session(&mut stop, &mut backoff, &mut isolating).await {
                Ok(Exit::Drained) => return,
                Err(e) => {
                    metrics::counter!("forwarder_reconnects_total").increment(1);
                    let backlog = self.store.outbox_len().await.unwrap_or(-1);
                    if backlog >= 0 {
                        metrics::gauge!("outbox_backlog").set(backlog as f64);
                    }
                    tracing::warn!(error = %e, backlog, retry_in_ms = backoff.as_millis() as u64, "audit stream down");
                }
            }
            // While stopping, the backoff still paces the retries: the
            // drain keeps trying until the caller gives up.
            if stop.is_started() {
                tokio::time::sleep(backoff).await;
            } else {
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stop.started() => {}
                }
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Sets `outbox_backlog` to the rows waiting. A read shorter than a
    /// batch returned the whole outbox, so only a full one costs a count.
    async fn report_backlog(&self, fetched: usize) {
        let backlog = if i64::try_from(fetched).is_ok_and(|n| n < BATCH) {
            Some(fetched as f64)
        } else {
            self.store.outbox_len().await.ok().map(|n| n as f64)
        };
        if let Some(backlog) = backlog {
            metrics::gauge!("outbox_backlog").set(backlog);
        }
    }

    /// Handles an `InvalidArgument` reply to `rows`: a batch of several
    /// rows is resent one row at a time; a row refused on its own is set
    /// aside in `refused_attempts`, loudly, since no resend of it can be
    /// accepted until someone fixes the cause.
    async fn refused(
        &self,
        rows: &[OutboxRow],
        status: &Status,
        isolating: &mut Option<i64>,
    ) -> anyhow::Result<()> {
        match rows {
            [row] => {
                metrics::counter!("forwarder_rows_refused_total").increment(1);
                // It decoded to be sent; decoding again here is cheaper
                // than keeping a copy of every batch.
                match row.kind {
                    OutboxKind::Attempt => {
                        let attempt = Attempt::decode(row.payload.as_slice()).unwrap_or_default();
                        tracing::error!(
                            seq = row.seq,
                            event_id = %attempt.event_id,
                            occurred_at = ?attempt.occurred_at,
                            successful = attempt.successful,
                            reason = attempt.reason().code(),
                            ip = %attempt.ip,
                            refusal = %status.message(),
                            "audit-service refused an attempt as invalid; \
                             set aside in refused_attempts, it is NOT in the log until re-queued"
                        );
                    }
                    OutboxKind::AdminEvent => {
                        let event = AdminEvent::decode(row.payload.as_slice()).unwrap_or_default();
                        tracing::error!(
                            seq = row.seq,
                            event_id = %event.event_id,
                            occurred_at = ?event.occurred_at,
                            action = event.action().code(),
                            target_id = event.target_id,
                            refusal = %status.message(),
                            "audit-service refused an admin event as invalid; \
                             set aside in refused_attempts, it is NOT in the log until re-queued"
                        );
                    }
                }
                let now = time::OffsetDateTime::now_utc().unix_timestamp();
                self.store
                    .outbox_set_aside(row.seq, status.message(), now)
                    .await?;
            }
            _ => {
                let through = rows.iter().map(|r| r.seq).max();
                tracing::warn!(
                    rows = rows.len(),
                    refusal = %status.message(),
                    "audit-service refused a batch as invalid; resending its rows one at a time"
                );
                *isolating = (*isolating).max(through);
            }
        }
        Ok(())
    }

    async fn session(
        &self,
        stop: &mut Shutdown,
        backoff: &mut Duration,
        isolating: &mut Option<i64>,
    ) -> anyhow::Result<Exit> {
        let mut endpoint = Endpoint::from_shared(self.audit_url.clone())?
            .connect_timeout(Duration::from_secs(3))
            .tcp_nodelay(true);
        if let Some(tls) = &self.tls {
            endpoint = endpoint.tls_config(tls.clone())?;
        }
        let channel = endpoint.connect().await?;
        let mut client = AuditServiceClient::with_interceptor(channel, self.token.clone());
        let (tx, rx) = mpsc::channel(1);
        let mut acks = client.ingest(ReceiverStream::new(rx)).await?.into_inner();
        *backoff = Duration::from_millis(100);
        tracing::info!(url = %self.audit_url, "audit stream open");
        let mut batch_seq = 0u64;
        let mut warned_old_audit = false;
        loop {
            let limit = if isolating.is_some() { 1 } else { BATCH };
            // Stopping sends open tallies too, rather than keep them
            // waiting for a window nobody here will see end.
            let now = if stop.is_started() {
                i64::MAX
            } else {
                time::OffsetDateTime::now_utc().unix_timestamp()
            };
            let rows = self.store.outbox_oldest(limit, now).await?;
            match *isolating {
                // Only a full read tells the backlog without a count.
                None => self.report_backlog(rows.len()).await,
                Some(through) if rows.first().is_none_or(|r| r.seq > through) => {
                    tracing::info!("refused batch sorted out; back to full batches");
                    *isolating = None;
                }
                Some(_) => {}
            }
            if rows.is_empty() {
                if stop.is_started() {
                    return Ok(Exit::Drained);
                }
                tokio::select! {
                    () = self.signal.notified() => {}
                    () = tokio::time::sleep(IDLE_POLL) => {}
                    () = stop.started() => {}
                }
                continue;
            }
            let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
            let Decoded {
                attempts,
                admin_events,
                admin_seqs,
            } = decode(&rows);
            let sent_admin_events = admin_events.len();
            batch_seq += 1;
            tx.send(IngestBatch {
                batch_seq,
                attempts,
                admin_events,
            })
            .await
            .map_err(|_| anyhow::anyhow!("audit stream closed"))?;
            let reply = tokio::time::timeout(ACK_TIMEOUT, acks.message())
                .await
                .map_err(|_| anyhow::anyhow!("no ack within {ACK_TIMEOUT:?}"))?;
            let ack = match reply {
                Ok(Some(ack)) => ack,
                Ok(None) => anyhow::bail!("audit stream ended"),
                Err(status) if status.code() == Code::InvalidArgument => {
                    // audit-service ended the stream; the next one resends.
                    self.refused(&rows, &status, isolating).await?;
                    anyhow::bail!("audit-service refused a batch: {}", status.message());
                }
                Err(status) => return Err(status.into()),
            };
            anyhow::ensure!(
                ack.batch_seq == batch_seq,
                "ack for batch {} while waiting for {batch_seq}",
                ack.batch_seq
            );
            // Admin events count as taken only when the ack says they are
            // stored: an audit-service from before them ignores them.
            let admin_taken = usize::try_from(ack.admin_events_stored)
                .is_ok_and(|stored| stored >= sent_admin_events);
            let taken: Vec<i64> = if admin_taken {
                seqs
            } else {
                if !warned_old_audit {
                    tracing::warn!(
                        admin_events = sent_admin_events,
                        "audit-service did not store the admin events sent (it predates them?); \
                         they stay in the outbox and are sent again"
                    );
                    warned_old_audit = true;
                }
                seqs.into_iter()
                    .filter(|seq| !admin_seqs.contains(seq))
                    .collect()
            };
            self.store.outbox_remove(&taken).await?;
            metrics::histogram!("forwarder_batch_size").record(taken.len() as f64);
            tracing::debug!(
                sent = rows.len(),
                inserted = ack.inserted,
                admin_events_stored = ack.admin_events_stored,
                "batch acknowledged"
            );
            if !admin_taken && taken.is_empty() {
                // Only events audit-service cannot take are left: when
                // stopping, they wait for the next start; else wait as an
                // idle outbox does, so the stream is not spun on them.
                if stop.is_started() {
                    return Ok(Exit::Drained);
                }
                tokio::select! {
                    () = self.signal.notified() => {}
                    () = tokio::time::sleep(IDLE_POLL) => {}
                    () = stop.started() => {}
                }
                continue;
            }
            // A short batch means the outbox is drained: let attempts gather.
            // While isolating a refused batch, reads are one row by design,
            // and each would otherwise wait (25 s for a refused 500).
            if rows.len() < BATCH as usize && isolating.is_none() && !stop.is_started() {
                tokio::select! {
                    () = tokio::time::sleep(LINGER) => {}
                    () = stop.started() => {}
                }
            }
        }
    }
}

/// A batch's rows decoded for the wire.
struct Decoded {
    attempts: Vec<Attempt>,
    admin_events: Vec<AdminEvent>,
    /// The outbox seqs of `admin_events`.
    admin_seqs: Vec<i64>,
}

/// Decodes each row as its kind says. A row that does not decode was
/// written by this service, so that means corruption: it is said loudly
/// and dropped (removed with the batch) rather than block the stream
/// forever.
fn decode(rows: &[OutboxRow]) -> Decoded {
    let mut out = Decoded {
        attempts: Vec::new(),
        admin_events: Vec::new(),
        admin_seqs: Vec::new(),
    };
    for r in rows {
        let decoded = match r.kind {
            OutboxKind::Attempt => {
                Attempt::decode(r.payload.as_slice()).map(|a| out.attempts.push(with_tally(a, r)))
            }
            OutboxKind::AdminEvent => AdminEvent::decode(r.payload.as_slice()).map(|e| {
                out.admin_events.push(e);
                out.admin_seqs.push(r.seq);
            }),
        };
        if let Err(e) = decoded {
            tracing::error!(seq = r.seq, kind = r.kind.code(), error = %e, "undecodable outbox row dropped");
        }
    }
    out
}

/// `attempt` as the record of its outbox `row`: a tally's count and last
/// time are kept in columns (the payload is the first attempt's).
fn with_tally(mut attempt: Attempt, row: &OutboxRow) -> Attempt {
    if row.tally_count > 1 {
        attempt.count = u32::try_from(row.tally_count).unwrap_or(u32::MAX);
        attempt.last_occurred_at = row.last_at.map(|micros| prost_types::Timestamp {
            seconds: micros.div_euclid(1_000_000),
            nanos: i32::try_from(micros.rem_euclid(1_000_000) * 1_000).unwrap_or(0),
        });
    }
    attempt
}

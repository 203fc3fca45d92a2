//! One producer's `Ingest` stream: batches committed in order, each acked
//! only after its rows are durable.
//!
//! Batches already waiting in the stream when a commit starts are merged
//! into that commit (group commit): a producer that sends ahead pays one
//! durable commit (one fsync on SQLite) per group instead of per batch,
//! while acks still go out one per batch, in order, after the commit. The
//! next group is read and parsed while one commits.
//!
//! A batch's admin events (few: a person's actions) are validated with its
//! attempts and committed ahead of them in a transaction of their own;
//! should the attempts then fail, nothing is acked and the resend finds
//! the events stored (duplicates are skipped).

use std::collections::{HashMap, HashSet};

use common::shutdown::Shutdown;
use futures::FutureExt as _;
use proto::audit::v1::{IngestAck, IngestBatch};
use tokio::sync::mpsc;
use tonic::{Status, Streaming};
use tracing::Instrument as _;

use crate::{
    admin_event::NewAdminEvent,
    attempt::{NewAttempt, now_micros},
    error::Error,
    store::Store,
    tail::TailHub,
};

/// Most rows merged into one commit; bounds a transaction's size and the
/// memory a fast producer can make this stream hold.
pub(crate) const GROUP_ROWS: usize = 5_000;

/// Batches stop being merged once a group's attempts span this much time
/// (microseconds). The suspicious rule counts stored failures for a whole
/// commit with one query per key kind, which is exact only for the part of
/// the window every attempt shares; live traffic spans seconds, but a
/// backfill of old attempts would otherwise make most rows need a count
/// of their own.
const GROUP_SPAN_MICROS: i64 = 5 * 60 * 1_000_000;

/// Describes the ingest metrics and registers them at zero, so a healthy
/// service shows `ingest_batches_refused_total 0` before its first batch.
/// Called once the recorder is installed.
pub(crate) fn describe() {
    metrics::describe_counter!(
        "ingest_batches_refused_total",
        metrics::Unit::Count,
        "Ingest batches refused as invalid with InvalidArgument naming the row, field \
         and event (count)."
    );
    metrics::describe_histogram!(
        "ingest_batch_size",
        metrics::Unit::Count,
        "Login attempts per batch received on an Ingest stream (count)."
    );
    metrics::describe_histogram!(
        "ingest_group_rows",
        metrics::Unit::Count,
        "Login attempts per commit (count): batches already queued on a stream are \
         committed together."
    );
    metrics::describe_counter!(
        "ingest_rows_total",
        metrics::Unit::Count,
        "Login attempts received (count), by result: inserted, or duplicate (a resend \
         already stored)."
    );
    metrics::describe_histogram!(
        "ingest_commit_seconds",
        metrics::Unit::Seconds,
        "Seconds to commit one group of ingested batches."
    );
    metrics::describe_counter!(
        "ingest_admin_events_total",
        metrics::Unit::Count,
        "Admin events received (count), by result: inserted, or duplicate (a resend \
         already stored)."
    );
    metrics::counter!("ingest_batches_refused_total").increment(0);
    for result in ["inserted", "duplicate"] {
        metrics::counter!("ingest_rows_total", "result" => result).increment(0);
        metrics::counter!("ingest_admin_events_total", "result" => result).increment(0);
    }
    // Registered, not recorded: empty histograms (count 0).
    for name in [
        "ingest_batch_size",
        "ingest_group_rows",
        "ingest_commit_seconds",
    ] {
        let _ = metrics::histogram!(name);
    }
}

/// Batches merged into one commit.
#[derive(Default)]
struct Group {
    attempts: Vec<NewAttempt>,
    /// Each batch's sequence number and the end of its rows in `attempts`.
    batches: Vec<(u64, usize)>,
    /// The batches' admin events (few: a person's actions).
    admin_events: Vec<NewAdminEvent>,
    /// The end of each batch's events in `admin_events`, as `batches`.
    admin_ends: Vec<usize>,
    /// Spans in the producers' traces, closed once the rows are committed.
    recording: Vec<tracing::Span>,
    /// Earliest and latest `occurred_at` of the attempts.
    span: Option<(i64, i64)>,
}

impl Group {
    fn push(&mut self, batch: IngestBatch) -> Result<(), Error> {
        self.recording.extend(recording_spans(&batch.attempts));
        let now = now_micros();
        // Both parts are checked before either is kept: a refused batch
        // leaves no trace.
        let parsed = NewAttempt::parse_batch(batch.attempts, now).and_then(|attempts| {
            Ok((
                attempts,
                NewAdminEvent::parse_batch(batch.admin_events, now)?,
            ))
        });
        let (attempts, admin_events) = parsed.inspect_err(|e| {
            // The producer hears why; the log's operator should too, since a
            // producer that cannot set the row aside resends it forever.
            metrics::counter!("ingest_batches_refused_total").increment(1);
            tracing::warn!(error = %e, batch_seq = batch.batch_seq, "ingest batch refused");
        })?;
        metrics::histogram!("ingest_batch_size").record(attempts.len() as f64);
        for a in &attempts {
            self.span = Some(match self.span {
                None => (a.occurred_at, a.occurred_at),
                Some((lo, hi)) => (lo.min(a.occurred_at), hi.max(a.occurred_at)),
            });
        }
        self.attempts.extend(attempts);
        self.batches.push((batch.batch_seq, self.attempts.len()));
        self.admin_events.extend(admin_events);
        self.admin_ends.push(self.admin_events.len());
        Ok(())
    }

    /// Whether another batch may join: few enough rows, narrow enough in
    /// time.
    fn has_room(&self) -> bool {
        self.attempts.len() + self.admin_events.len() < GROUP_ROWS
            && self
                .span
                .is_none_or(|(lo, hi)| hi.saturating_sub(lo) < GROUP_SPAN_MICROS)
    }

    /// Commits every batch (each in one transaction, the group in one or a
    /// few) and returns their acks, in order; a row repeated across batches
    /// counts for the first one.
    async fn commit(self, store: &Store, hub: &TailHub) -> Result<Vec<IngestAck>, Error> {
        let started = std::time::Instant::now();
        // Admin events first, in a transaction of their own: should the
        // attempts then fail, nothing is acked and the resend finds these
        // stored (duplicates are skipped), so nothing is lost or doubled.
        let new_admin_events = self.commit_admin_events(store).await?;
        let ends: Vec<usize> = self.batches.iter().map(|&(_, end)| end).collect();
        let stored = match store.insert_batch(&self.attempts, &ends).await {
            Ok(stored) => stored,
            Err(e) => {
                // Batches committed before the failure are in the log, and
                // a resend will skip them: they are counted and the tail
                // hears of them now.
                metrics::counter!("ingest_rows_total", "result" => "inserted")
                    .increment(e.stored.len() as u64);
                hub.publish(e.stored);
                return Err(e.source.into());
            }
        };
        // Closing them marks each attempt's commit in its login's trace.
        drop(self.recording);
        metrics::histogram!("ingest_commit_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("ingest_group_rows").record(self.attempts.len() as f64);
        metrics::counter!("ingest_rows_total", "result" => "inserted")
            .increment(stored.len() as u64);
        metrics::counter!("ingest_rows_total", "result" => "duplicate")
            .increment(self.attempts.len().saturating_sub(stored.len()) as u64);
        let mut first_batch: HashMap<&str, usize> = HashMap::with_capacity(self.attempts.len());
        let mut start = 0;
        for (index, &(_, end)) in self.batches.iter().enumerate() {
            for attempt in &self.attempts[start..end] {
                first_batch
                    .entry(attempt.event_id.as_str())
                    .or_insert(index);
            }
            start = end;
        }
        let mut inserted = vec![0u32; self.batches.len()];
        for attempt in &stored {
            if let Some(&index) = first_batch.get(attempt.attempt.event_id.as_str()) {
                inserted[index] = inserted[index].saturating_add(1);
            }
        }
        // Admin events count for the first batch that carries them, too.
        let mut admin_stored = vec![0u32; self.batches.len()];
        let mut counted = HashSet::with_capacity(new_admin_events.len());
        let mut start = 0;
        for (index, &end) in self.admin_ends.iter().enumerate() {
            let events = &self.admin_events[start..end];
            admin_stored[index] = u32::try_from(events.len()).unwrap_or(u32::MAX);
            for event in events {
                if new_admin_events.contains(&event.event_id)
                    && counted.insert(event.event_id.as_str())
                {
                    inserted[index] = inserted[index].saturating_add(1);
                }
            }
            start = end;
        }
        tracing::debug!(
            batches = self.batches.len(),
            received = self.attempts.len(),
            inserted = stored.len(),
            "group committed"
        );
        hub.publish(stored);
        Ok(self
            .batches
            .iter()
            .zip(inserted)
            .zip(admin_stored)
            .map(
                |((&(batch_seq, _), inserted), admin_events_stored)| IngestAck {
                    batch_seq,
                    inserted,
                    admin_events_stored,
                },
            )
            .collect())
    }

    /// Stores the group's admin events (one transaction) and returns the
    /// event ids that were new.
    async fn commit_admin_events(&self, store: &Store) -> Result<HashSet<String>, Error> {
        if self.admin_events.is_empty() {
            return Ok(HashSet::new());
        }
        let new = store.insert_admin_events(&self.admin_events).await?;
        metrics::counter!("ingest_admin_events_total", "result" => "inserted")
            .increment(new.len() as u64);
        metrics::counter!("ingest_admin_events_total", "result" => "duplicate")
            .increment(self.admin_events.len().saturating_sub(new.len()) as u64);
        tracing::debug!(
            received = self.admin_events.len(),
            inserted = new.len(),
            "admin events committed"
        );
        Ok(new)
    }
}

/// One span per attempt that carries its login's trace context, each a
/// child of that login's span; empty when the producer does not export
/// traces.
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

/// What ends the stream after the current group is committed.
enum After {
    Continue,
    Ended,
    Fail(Status),
}

/// Serves one producer's stream. Any failure ends the stream without
/// acking the batches it concerns, so the producer resends them and
/// nothing is lost; batches before a malformed one are still committed.
///
/// While one group commits, the next is received and parsed: commits stay
/// one at a time and in order, but the database is not left waiting on
/// this process between them.
pub(crate) async fn serve(
    store: Store,
    hub: TailHub,
    mut inbound: Streaming<IngestBatch>,
    acks: mpsc::Sender<Result<IngestAck, Status>>,
    stopping: Shutdown,
) {
    let stop_now = stopping.clone();
    let stop = stopping.into_started();
    tokio::pin!(stop);
    let mut committing: Option<Committing> = None;
    let after = loop {
        let next = tokio::select! {
            biased;
            () = &mut stop => {
                break After::Fail(shutting_down());
            }
            // The producer is gone; a commit under way still completes.
            () = acks.closed() => return,
            done = settled(&mut committing) => {
                committing = None;
                match send_acks(done, &acks).await {
                    Ok(()) => continue,
                    Err(Some(status)) => break After::Fail(status),
                    Err(None) => return,
                }
            }
            next = inbound.message() => next,
        };
        let mut group = Group::default();
        let mut after = match next {
            Ok(Some(batch)) => match group.push(batch) {
                Ok(()) => After::Continue,
                Err(e) => After::Fail(e.into()),
            },
            Ok(None) => After::Ended,
            // Usually the producer hung up; if it is still there (say its
            // message did not decode), it learns why the stream ends.
            Err(status) => After::Fail(status),
        };
        take_arrived(&mut group, &mut inbound, &mut after);
        // One commit at a time, in order: the previous group's first, and
        // whatever arrived meanwhile joins this one.
        if let Some(previous) = committing.take() {
            match send_acks(previous.await, &acks).await {
                Ok(()) => {}
                Err(Some(status)) => break After::Fail(status),
                Err(None) => return,
            }
            take_arrived(&mut group, &mut inbound, &mut after);
        }
        // Shutdown began during that commit: this group is left to the
        // producer's resend rather than making shutdown wait for it.
        if stop_now.is_started() {
            break After::Fail(shutting_down());
        }
        if !group.batches.is_empty() {
            let (store, hub) = (store.clone(), hub.clone());
            let commit = async move { group.commit(&store, &hub).await };
            committing = Some(tokio::spawn(commit.in_current_span()));
        }
        if !matches!(after, After::Continue) {
            break after;
        }
    };
    // Batches committed before the stream ends are still acked.
    if let Some(last) = committing.take() {
        match send_acks(last.await, &acks).await {
            Ok(()) => {}
            Err(Some(status)) => return fail(&acks, status).await,
            Err(None) => return,
        }
    }
    if let After::Fail(status) = after {
        fail(&acks, status).await;
    }
}

/// Takes into `group` whatever batches have already arrived, without
/// waiting for more, while it has room; records in `after` how the stream
/// goes on.
fn take_arrived(group: &mut Group, inbound: &mut Streaming<IngestBatch>, after: &mut After) {
    while matches!(after, After::Continue) && group.has_room() {
        match inbound.message().now_or_never() {
            None => break,
            Some(Ok(Some(batch))) => {
                if let Err(e) = group.push(batch) {
                    *after = After::Fail(e.into());
                }
            }
            Some(Ok(None)) => *after = After::Ended,
            Some(Err(status)) => *after = After::Fail(status),
        }
    }
}

fn shutting_down() -> Status {
    Status::unavailable("audit-service is shutting down; reconnect")
}

/// A group's commit, run as its own task so the stream reads on meanwhile.
type Committing = tokio::task::JoinHandle<Result<Vec<IngestAck>, Error>>;

/// The outcome of the commit under way; never resolves when there is none.
async fn settled(
    committing: &mut Option<Committing>,
) -> Result<Result<Vec<IngestAck>, Error>, tokio::task::JoinError> {
    match committing {
        Some(task) => task.await,
        None => std::future::pending().await,
    }
}

/// Sends a finished commit's acks in order. `Err(Some)` is why the stream
/// must end (the commit failed); `Err(None)` means the producer is gone.
async fn send_acks(
    done: Result<Result<Vec<IngestAck>, Error>, tokio::task::JoinError>,
    acks: &mpsc::Sender<Result<IngestAck, Status>>,
) -> Result<(), Option<Status>> {
    let replies = match done {
        Ok(Ok(replies)) => replies,
        Ok(Err(e)) => return Err(Some(e.into())),
        Err(join) => {
            tracing::error!(error = %join, "ingest commit task failed");
            return Err(Some(Status::internal(
                "ingest failed; reconnect and resend",
            )));
        }
    };
    for ack in replies {
        if acks.send(Ok(ack)).await.is_err() {
            return Err(None);
        }
    }
    Ok(())
}

/// Ends the stream with `status`.
async fn fail(acks: &mpsc::Sender<Result<IngestAck, Status>>, status: Status) {
    tracing::debug!(%status, "ingest stream ends");
    let _ = acks.send(Err(status)).await;
}

//! A closed-loop driver: N workers each send requests back to back until
//! the deadline; latencies go into one HDR histogram.

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use tokio::sync::Mutex;

/// What a scenario measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Scenario name.
    pub name: String,
    /// Requests completed (any status).
    pub requests: u64,
    /// Requests that failed: transport errors and unexpected statuses.
    pub errors: u64,
    /// Of which 5xx answers.
    pub server_errors: u64,
    /// Requests per second.
    pub rate: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Worst latency, ms.
    pub max_ms: f64,
}

/// One request's result: `Ok(status)` or a transport error.
pub type Sent = Result<u16, reqwest::Error>;

fn tally(result: Sent, ok: &[u16], errors: &mut u64, server_errors: &mut u64) {
    match result {
        Ok(status) if ok.contains(&status) => {}
        Ok(status) => {
            *errors += 1;
            if status >= 500 {
                *server_errors += 1;
            }
        }
        Err(_) => *errors += 1,
    }
}

/// Sums the workers' counts once they have all finished.
async fn collect(
    name: &str,
    start: Instant,
    tasks: Vec<tokio::task::JoinHandle<(u64, u64, u64)>>,
    histogram: Arc<Mutex<Histogram<u64>>>,
) -> Outcome {
    let (mut requests, mut errors, mut server_errors) = (0, 0, 0);
    for t in tasks {
        if let Ok((n, e, s)) = t.await {
            requests += n;
            errors += e;
            server_errors += s;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let h = histogram.lock().await;
    Outcome {
        name: name.to_owned(),
        requests,
        errors,
        server_errors,
        rate: requests as f64 / elapsed,
        p50_ms: h.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
        max_ms: h.max() as f64 / 1000.0,
    }
}

/// Runs `workers` loops of `request(worker_index)` for `duration`; a request
/// counts as an error unless its status is in `ok`.
///
/// With `rate` unset the loop is closed: the next request starts when the
/// last one ends. With a `rate` it is open: request `i` of worker `w` is due
/// at `start + (i * workers + w) / rate`, so together the workers offer
/// `rate` requests/s. A worker that falls behind sends at once; latency
/// counts from the due time, so time spent queued behind slow requests is
/// included (no coordinated omission).
pub async fn run<F, Fut>(
    name: &str,
    workers: usize,
    duration: Duration,
    rate: Option<f64>,
    ok: &'static [u16],
    request: F,
) -> Outcome
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Sent> + Send,
{
    let histogram = Arc::new(Mutex::new(new_histogram()));
    let start = Instant::now();
    let deadline = start + duration;
    let period = rate.map(|r| Duration::from_secs_f64(workers as f64 / r.max(0.001)));
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let request = request.clone();
            let histogram = histogram.clone();
            tokio::spawn(async move {
                let mut local = new_histogram();
                let (mut n, mut errors, mut server_errors) = (0u64, 0u64, 0u64);
                let mut due = period.map(|p| start + p.mul_f64(w as f64 / workers as f64));
                loop {
                    let began = match due {
                        Some(at) if at < deadline => {
                            tokio::time::sleep_until(at.into()).await;
                            at
                        }
                        None if Instant::now() < deadline => Instant::now(),
                        _ => break,
                    };
                    let result = request(w).await;
                    let _ = local.record(began.elapsed().as_micros().max(1) as u64);
                    n += 1;
                    tally(result, ok, &mut errors, &mut server_errors);
                    if let (Some(at), Some(p)) = (due.as_mut(), period) {
                        *at += p;
                    }
                }
                let _ = histogram.lock().await.add(&local);
                (n, errors, server_errors)
            })
        })
        .collect();
    collect(name, start, tasks, histogram).await
}

fn new_histogram() -> Histogram<u64> {
    // Auto-resizing, 3 significant digits: cannot fail for sigfig 3.
    let mut h =
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant figures is valid"));
    h.auto(true);
    h
}

//! audit-service benchmark: ingest throughput and filtered-page latency on
//! each backend, through the real gRPC API on loopback.
//!
//! ```text
//! BENCH_ROWS=200000 TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!   TEST_MYSQL_URL=mysql://root@127.0.0.1:3306/test \
//!   cargo run --release -p audit-bench
//! ```
//!
//! Each backend gets a fresh database. With `BENCH_SEED_ROWS=N` it first
//! gets N rows of history, a month of it, bulk-inserted in SQL
//! (see [`seed`]); then `BENCH_ROWS` rows (default 100,000) of the last
//! hour go in as batches of 500 on one `Ingest` stream (what auth-service's
//! forwarder does; `BENCH_STREAMS=n` spreads them over n concurrent streams,
//! as n auth-service replicas would), which is the timed ingest; the
//! batches are made before the clock starts, so the run holds them all in
//! memory (a few hundred MB per million rows). Then `ListAttempts` pages of
//! 100 are timed for each filter, and `CountAttempts` (the chart's buckets)
//! over ranges ending now. Backends whose URL variable is unset are
//! skipped; `BENCH_BACKENDS=sqlite,postgres` picks some.
//!
//! `audit-bench --help` lists the variables. For "a page of 100 out of 10 million":
//!
//! ```text
//! BENCH_SEED_ROWS=10000000 BENCH_BACKENDS=postgres TEST_POSTGRES_URL=… target/release/audit-bench
//! ```

use std::time::{Duration, Instant};

mod seed;

use audit_service::{Application, Config};
use prost_types::Timestamp;
use proto::audit::v1::{
    Attempt, AttemptFilter, CountAttemptsRequest, IngestBatch, ListAttemptsRequest, RejectReason,
    audit_service_client::AuditServiceClient,
};

/// Attempts per ingest batch.
const BATCH: usize = 500;
/// Timed calls per query.
const QUERY_RUNS: usize = 50;
/// Timed calls per count: each reads every row of its range.
const COUNT_RUNS: usize = 10;
const REASONS: [RejectReason; 3] = [
    RejectReason::BadPassword,
    RejectReason::UnknownUser,
    RejectReason::LockedOut,
];

/// Deterministic pseudo-random numbers (xorshift), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Row `i` of `rows`: times spread evenly over the hour before `now` (as a
/// live stream arrives: a batch spans seconds, and the suspicious rule sees
/// realistic per-key densities), IPs from
/// 10,000 addresses in 10.0.0.0/16 and 10.1.0.0/16, 50,000 identifiers,
/// one in ten a success.
fn attempt(rng: &mut Rng, i: u64, rows: u64, now: i64) -> Attempt {
    let span = 3_600;
    let at =
        now - span + i64::try_from(i * u64::try_from(span).unwrap_or(1) / rows.max(1)).unwrap_or(0);
    let ip_n = rng.below(10_000);
    let ip = format!("10.{}.{}.{}", ip_n % 2, (ip_n / 256) % 256, ip_n % 256);
    let who = format!("user{}@example.com", rng.below(50_000));
    let successful = rng.below(10) == 0;
    let reason = if successful {
        RejectReason::Unspecified
    } else {
        REASONS[usize::try_from(rng.below(3)).unwrap_or(0)]
    };
    Attempt {
        event_id: uuid::Uuid::now_v7().to_string(),
        occurred_at: Some(Timestamp {
            seconds: at,
            nanos: 0,
        }),
        identifier: who.clone(),
        user_id: successful.then_some(i64::try_from(i % 50_000).unwrap_or(0)),
        username: None,
        email: who,
        successful,
        reason: reason as i32,
        ip,
        user_agent: Some("bench/1.0".to_owned()),
        request_id: uuid::Uuid::new_v4().to_string(),
        trace_parent: None,
        count: 0,
        last_occurred_at: None,
        ..Default::default()
    }
}

struct Result {
    backend: &'static str,
    rows: u64,
    /// Rows of bulk-seeded history under the ingest and the pages, and its
    /// rate.
    seeded: (u64, f64),
    ingest: Duration,
    queries: Vec<(&'static str, Duration, Duration)>,
    /// Per count: name, median, slowest, and the attempts it counted.
    counts: Vec<(&'static str, Duration, Duration, u64)>,
}

async fn bench(
    backend: &'static str,
    dialect: seed::Dialect,
    url: String,
    rows: u64,
    seed_rows: u64,
    streams: u64,
) -> anyhow::Result<Result> {
    let mut config = Config::for_tests(url.clone());
    // Realistic rule, and nothing deleted mid-run.
    config.retention_days = 0;
    let app = Application::build(config).await?;
    let addr = app.local_addr();
    let server = tokio::spawn(app.run_until(std::future::pending()));
    let mut client = AuditServiceClient::connect(format!("http://{addr}")).await?;

    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs(),
    )?;
    let seed_rate = if seed_rows > 0 {
        eprintln!("{backend}: seeding {seed_rows} rows of history ...");
        // History ends where the ingested hour begins.
        seed::seed(dialect, &url, seed_rows, (now - 3_600) * 1_000_000).await?
    } else {
        0.0
    };
    let batches = rows.div_ceil(BATCH as u64);
    // One stream per producer (auth-service replica); batch b goes on
    // stream b % streams. The batches are made before the clock starts: a
    // producer's attempts are already in its outbox, and making them here
    // (UUIDs, formatting) would take CPU from the two cores measured.
    let outgoing: Vec<Vec<IngestBatch>> = (0..streams)
        .map(|k| {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (k + 1));
            (0..batches)
                .filter(|b| b % streams == k)
                .map(|b| {
                    let start = b * BATCH as u64;
                    let end = (start + BATCH as u64).min(rows);
                    IngestBatch {
                        batch_seq: b,
                        attempts: (start..end)
                            .map(|i| attempt(&mut rng, i, rows, now))
                            .collect(),
                        admin_events: Vec::new(),
                    }
                })
                .collect()
        })
        .collect();
    eprintln!("{backend}: ingesting {rows} rows ...");
    let started = Instant::now();
    let mut producers = Vec::new();
    for batches in outgoing {
        let mut client = client.clone();
        let outgoing = tokio_stream::iter(batches);
        producers.push(tokio::spawn(async move {
            let mut acks = client.ingest(outgoing).await?.into_inner();
            let mut acked = 0u64;
            while let Some(ack) = acks.message().await? {
                acked += u64::from(ack.inserted);
            }
            anyhow::Ok(acked)
        }));
    }
    let mut acked = 0u64;
    for producer in producers {
        acked += producer.await??;
    }
    let ingest = started.elapsed();
    anyhow::ensure!(acked == rows, "{backend}: {acked} of {rows} rows acked");
    seed::settle(dialect, &url).await?;

    let queries = page_queries(now);
    let mut timings = Vec::new();
    for (name, mut request) in queries {
        request.limit = 100;
        let mut samples = Vec::with_capacity(QUERY_RUNS);
        for _ in 0..QUERY_RUNS {
            let t = Instant::now();
            client.list_attempts(request.clone()).await?;
            samples.push(t.elapsed());
        }
        samples.sort();
        let median = samples[QUERY_RUNS / 2];
        let p95 = samples[QUERY_RUNS * 95 / 100];
        timings.push((name, median, p95));
    }
    let mut counts = Vec::new();
    for (name, request) in count_queries() {
        // One untimed call first: the range's pages come into the cache
        // as they would for an admin who opened the chart a moment ago.
        client.count_attempts(request.clone()).await?;
        let mut samples = Vec::with_capacity(COUNT_RUNS);
        let mut attempts = 0;
        for _ in 0..COUNT_RUNS {
            let t = Instant::now();
            let reply = client.count_attempts(request.clone()).await?.into_inner();
            samples.push(t.elapsed());
            attempts = reply.buckets.iter().map(|b| b.successes + b.failures).sum();
        }
        samples.sort();
        counts.push((
            name,
            samples[COUNT_RUNS / 2],
            samples[COUNT_RUNS - 1],
            attempts,
        ));
    }
    server.abort();
    Ok(Result {
        backend,
        rows,
        seeded: (seed_rows, seed_rate),
        ingest,
        queries: timings,
        counts,
    })
}

/// The timed counts: the chart's default (the last day), in hours and in
/// minutes, unfiltered and with the filters a chart would add; and a week.
/// Without `since` and `until` the range is the day before now, so it
/// holds the ingested hour and 23 hours of the seeded history.
fn count_queries() -> Vec<(&'static str, CountAttemptsRequest)> {
    let count = |bucket: i64, filter: AttemptFilter| CountAttemptsRequest {
        filter: Some(filter),
        bucket: Some(prost_types::Duration {
            seconds: bucket,
            nanos: 0,
        }),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    vec![
        ("24 h by 1 h", count(3_600, AttemptFilter::default())),
        ("24 h by 1 m", count(60, AttemptFilter::default())),
        (
            "24 h by 1 h, failures",
            count(
                3_600,
                AttemptFilter {
                    successful: Some(false),
                    ..Default::default()
                },
            ),
        ),
        (
            "24 h by 1 h, suspicious",
            count(
                3_600,
                AttemptFilter {
                    suspicious: Some(true),
                    ..Default::default()
                },
            ),
        ),
        (
            "24 h by 1 h, ip in /16",
            count(
                3_600,
                AttemptFilter {
                    ip: Some("10.1.0.0/16".to_owned()),
                    ..Default::default()
                },
            ),
        ),
        (
            "24 h by 1 h, one email",
            count(
                3_600,
                AttemptFilter {
                    email: Some("user42@example.com".to_owned()),
                    ..Default::default()
                },
            ),
        ),
        (
            "7 d by 1 h",
            count(
                3_600,
                AttemptFilter {
                    since: Some(Timestamp {
                        seconds: now - 7 * 86_400,
                        nanos: 0,
                    }),
                    ..Default::default()
                },
            ),
        ),
    ]
}

/// The timed listings: every filter of the API, alone or as an admin would
/// combine them, each with values present in both the ingested hour and the
/// seeded history.
fn page_queries(now: i64) -> Vec<(&'static str, ListAttemptsRequest)> {
    let at = |secs_ago: i64| {
        Some(Timestamp {
            seconds: now - secs_ago,
            nanos: 0,
        })
    };
    let day = 86_400;
    vec![
        ("newest 100, no filter", ListAttemptsRequest::default()),
        (
            "ip = one address",
            ListAttemptsRequest {
                filter: Some(proto::audit::v1::AttemptFilter {
                    ip: Some("10.0.1.7".to_owned()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ),
        (
            "ip in 10.1.0.0/16",
            ListAttemptsRequest {
                filter: Some(proto::audit::v1::AttemptFilter {
                    ip: Some("10.1.0.0/16".to_owned()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ),
        (
            "ip in 10.0.3.0/24",
            ListAttemptsRequest {
                filter: Some(proto::audit::v1::AttemptFilter {
                    ip: Some("10.0.3.0/24".to_owned()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ),
        (
            "reason = locked_out",
            ListAttemptsRequest {
                filter: Some(proto::audit::v1::AttemptFilter {
                    reason: Some(proto::audit::v1::RejectReason::LockedOut as i32),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ),
        (
            "email + last 10 minutes",
            ListAttemptsRequest {
                filter: Some(proto::audit::v1::AttemptFilter {
                    email: Some("user42@example.com".to_owned()),
                    since: at(600),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ),
        (
            "identifier",
            ListAttemptsRequest {
                filter: Some(proto::audit::v1::AttemptFilter {
                    identifier: Some("user4242@example.com".to_owned()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ),
        (
            "user id",
            ListAttemptsRequest {
                filter: Some(proto::audit::v1::AttemptFilter {
                    user_id: Some(4242),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ),
        (
            "suspicious",
            ListAttemptsRequest {
                filter: Some(proto::audit::v1::AttemptFilter {
                    suspicious: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ),
        (
            "failures, one day 15 d ago",
            ListAttemptsRequest {
                filter: Some(proto::audit::v1::AttemptFilter {
                    successful: Some(false),
                    since: at(16 * day),
                    until: at(15 * day),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ),
        (
            "/16 + locked_out, 7 d ago",
            ListAttemptsRequest {
                filter: Some(proto::audit::v1::AttemptFilter {
                    ip: Some("10.1.0.0/16".to_owned()),
                    reason: Some(proto::audit::v1::RejectReason::LockedOut as i32),
                    until: at(7 * day),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ),
    ]
}

/// A whole number from the environment, or `default` when unset.
fn env_number(name: &str, default: u64) -> anyhow::Result<u64> {
    std::env::var(name).map_or(Ok(default), |v| {
        v.trim().parse().map_err(|_| {
            common::config::ConfigError::new(name, &v, "expected a whole number").into()
        })
    })
}

/// Benchmark of audit-service on each backend: ingest throughput over the
/// real gRPC Ingest stream, then filtered-page latency.
#[derive(clap::Parser)]
#[command(version, about, long_about = None, after_help = HELP)]
struct Cli {}

/// The `--help` epilogue: the benchmark is driven by the environment.
const HELP: &str = "\
Environment (a .env file in the working directory is read first):
  BENCH_ROWS=N          rows ingested and timed (default 100000)
  BENCH_SEED_ROWS=N     rows of history bulk-inserted first (default 0)
  BENCH_STREAMS=N       concurrent Ingest streams (default 1)
  BENCH_BACKENDS=LIST   of sqlite,postgres,mysql (default all three)
  BENCH_SQLITE_DIR=DIR  keep the SQLite database there (default: a temporary folder)
  TEST_POSTGRES_URL     server for a fresh PostgreSQL database (unset: skipped)
  TEST_MYSQL_URL        server for a fresh MySQL/MariaDB database (unset: skipped)

Exit status: 0 done, 1 failed, 2 invalid configuration or usage.";

fn main() -> std::process::ExitCode {
    let Cli {} = <Cli as clap::Parser>::parse();
    // No logging set-up: the report goes to stdout, and the services'
    // own info lines would interleave with it.
    if let Err(e) = common::cli::load_dotenv() {
        return common::cli::fail("audit-bench", &e.into());
    }
    let result = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(bench_all()));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => common::cli::fail("audit-bench", &e),
    }
}

async fn bench_all() -> anyhow::Result<()> {
    let rows = env_number("BENCH_ROWS", 100_000)?;
    let seed_rows = env_number("BENCH_SEED_ROWS", 0)?;
    let streams = env_number("BENCH_STREAMS", 1)?.max(1);
    let wanted = std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres,mysql".into());
    let wanted: Vec<&str> = wanted.split(',').map(str::trim).collect();
    let dir = tempfile::tempdir()?;
    // A folder of the caller's keeps the database for a look afterwards
    // (`sqlite3 …/bench.db 'EXPLAIN QUERY PLAN …'`).
    let sqlite_dir = std::env::var_os("BENCH_SQLITE_DIR")
        .map_or_else(|| dir.path().to_owned(), std::path::PathBuf::from);
    let mut targets: Vec<(&'static str, seed::Dialect, String)> = Vec::new();
    if wanted.contains(&"sqlite") {
        let path = sqlite_dir.join("bench.db");
        targets.push((
            "sqlite",
            seed::Dialect::Sqlite,
            format!("sqlite://{}", path.display()),
        ));
    }
    if wanted.contains(&"postgres")
        && let Some(server) = common::testing::server_url("TEST_POSTGRES_URL")
    {
        let url = common::testing::fresh_postgres(&server).await;
        targets.push(("postgres", seed::Dialect::Postgres, url));
    }
    if wanted.contains(&"mysql")
        && let Some(server) = common::testing::server_url("TEST_MYSQL_URL")
    {
        let url = common::testing::fresh_mysql(&server).await;
        targets.push(("mysql", seed::Dialect::Mysql, url));
    }

    let mut results = Vec::new();
    for (backend, dialect, url) in targets {
        results.push(bench(backend, dialect, url, rows, seed_rows, streams).await?);
    }

    println!("\ningest over {streams} stream(s)");
    println!(
        "{:<9} {:>11} {:>9} {:>9} {:>10} {:>12}",
        "backend", "history", "seeded/s", "rows", "ingest s", "attempts/s"
    );
    for r in &results {
        let secs = r.ingest.as_secs_f64();
        println!(
            "{:<9} {:>11} {:>9.0} {:>9} {:>10.1} {:>12.0}",
            r.backend,
            r.seeded.0,
            r.seeded.1,
            r.rows,
            secs,
            r.rows as f64 / secs
        );
    }
    println!(
        "\n{:<9} {:<28} {:>12} {:>12}",
        "backend", "page of 100", "median ms", "p95 ms"
    );
    for r in &results {
        for (name, median, p95) in &r.queries {
            println!(
                "{:<9} {:<28} {:>12.2} {:>12.2}",
                r.backend,
                name,
                median.as_secs_f64() * 1e3,
                p95.as_secs_f64() * 1e3
            );
        }
    }
    println!(
        "\n{:<9} {:<28} {:>12} {:>12} {:>10}",
        "backend", "count", "median ms", "max ms", "attempts"
    );
    for r in &results {
        for (name, median, p95, attempts) in &r.counts {
            println!(
                "{:<9} {:<28} {:>12.2} {:>12.2} {:>10}",
                r.backend,
                name,
                median.as_secs_f64() * 1e3,
                p95.as_secs_f64() * 1e3,
                attempts
            );
        }
    }
    Ok(())
}

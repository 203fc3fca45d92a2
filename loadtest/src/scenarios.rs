//! The scenarios of the benchmark and the report table.

use std::{
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use proto::audit::v1::{Attempt, IngestBatch, audit_service_client::AuditServiceClient};
use tokio::{io::AsyncWriteExt, sync::Mutex};

use crate::{
    Args, Scenario, calibrate,
    driver::{self, Outcome},
    system::{CpuSnapshot, System},
};

const USER: &str = "bench";
const PASSWORD: &str = "bench-password-1";
const LOGIN: &str = "/api/accounts/login/";
const REFRESH: &str = "/api/accounts/login/refresh/";
const LOGS: &str = "/api/accounts/logs/login/attemps/";

/// Everything measured in one run.
pub struct Report {
    argon2_per_second: Option<f64>,
    outcomes: Vec<Outcome>,
    seeded: Option<(u64, f64)>,
    flood: Option<String>,
    /// Per scenario: CPU µs per request of each process (shared cores make
    /// this steadier than req/s when other work runs on the machine).
    cpu: Vec<(String, String)>,
}

impl Report {
    /// Records `outcome` with the CPU each process spent per request since
    /// `before`.
    fn push_measured(&mut self, outcome: Outcome, system: &System, before: &CpuSnapshot) {
        let cpu = system.cpu().per_request_since(before, outcome.requests);
        self.cpu.push((outcome.name.clone(), cpu));
        self.outcomes.push(outcome);
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "| scenario | requests | req/s | p50 ms | p99 ms | max ms | errors (5xx) |"
        )?;
        writeln!(f, "|---|---:|---:|---:|---:|---:|---:|")?;
        if let Some(argon2) = self.argon2_per_second {
            writeln!(
                f,
                "| argon2id calibration (raw hashes, all cores) | | {argon2:.1} | | | | |"
            )?;
        }
        for o in &self.outcomes {
            writeln!(
                f,
                "| {} | {} | {:.1} | {:.2} | {:.2} | {:.2} | {} ({}) |",
                o.name, o.requests, o.rate, o.p50_ms, o.p99_ms, o.max_ms, o.errors, o.server_errors
            )?;
        }
        if let Some(login) = self
            .outcomes
            .iter()
            .find(|o| o.name.starts_with("login (success"))
            && let Some(argon2) = self.argon2_per_second
        {
            writeln!(
                f,
                "\nLogin throughput / raw argon2 = {:.2}",
                login.rate / argon2
            )?;
        }
        if let Some((rows, rate)) = self.seeded {
            writeln!(
                f,
                "Log seeded with {rows} rows over the Ingest stream at {rate:.0} rows/s"
            )?;
        }
        if let Some(flood) = &self.flood {
            writeln!(f, "Flood: {flood}")?;
        }
        for (name, cpu) in &self.cpu {
            writeln!(f, "CPU µs per request, {name}: {cpu}")?;
        }
        Ok(())
    }
}

async fn create_user(system: &System) -> anyhow::Result<()> {
    let mut child = system
        .command("auth-service")
        .args([
            "create-admin",
            "--username",
            USER,
            "--email",
            "bench@example.com",
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(PASSWORD.as_bytes()).await?;
    }
    anyhow::ensure!(child.wait().await?.success(), "create-admin failed");
    Ok(())
}

async fn login(http: &reqwest::Client, base: &str) -> anyhow::Result<(String, String)> {
    let body: serde_json::Value = http
        .post(format!("{base}{LOGIN}"))
        .form(&[("username", USER), ("password", PASSWORD)])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let get = |k: &str| {
        body[k]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("no {k} in {body}"))
    };
    Ok((get("access")?, get("refresh")?))
}

/// Streams `rows` synthetic attempts into audit-service in batches of 1000.
async fn seed_log(audit_url: &str, rows: u64) -> anyhow::Result<f64> {
    let mut client = AuditServiceClient::connect(audit_url.to_owned()).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let start = Instant::now();
    let mut acks = client
        .ingest(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let batches = rows.div_ceil(1000);
    let sender = tokio::spawn(async move {
        for b in 0..batches {
            let attempts = (0..1000u64.min(rows - b * 1000))
                .map(|i| {
                    let n = b * 1000 + i;
                    Attempt {
                        event_id: uuid::Uuid::now_v7().to_string(),
                        occurred_at: Some(prost_types::Timestamp {
                            seconds: now - 86_400 + (n % 86_000) as i64,
                            nanos: 0,
                        }),
                        identifier: format!("user{}", n % 5000),
                        user_id: Some((n % 5000) as i64),
                        username: Some(format!("user{}", n % 5000)),
                        email: format!("user{}@example.com", n % 5000),
                        successful: n % 3 != 0,
                        reason: if n % 3 == 0 {
                            proto::audit::v1::RejectReason::BadPassword as i32
                        } else {
                            0
                        },
                        ip: format!("10.{}.{}.{}", n % 7, n % 251, n % 13),
                        user_agent: Some("loadtest".into()),
                        request_id: String::new(),
                        trace_parent: None,
                        count: 0,
                        last_occurred_at: None,
                        ..Default::default()
                    }
                })
                .collect();
            if tx
                .send(IngestBatch {
                    batch_seq: b + 1,
                    attempts,
                    admin_events: Vec::new(),
                })
                .await
                .is_err()
            {
                return;
            }
        }
    });
    for _ in 0..batches {
        acks.message()
            .await?
            .ok_or_else(|| anyhow::anyhow!("ingest stream ended early"))?;
    }
    sender.await?;
    Ok(rows as f64 / start.elapsed().as_secs_f64())
}

/// `n` logins at once, each a single request: does anything fail with 5xx?
async fn flood(http: &reqwest::Client, base: &str, n: usize) -> String {
    let start = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let http = http.clone();
            let url = format!("{base}{LOGIN}");
            tokio::spawn(async move {
                http.post(url)
                    .form(&[("username", USER), ("password", PASSWORD)])
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    let (mut ok, mut throttled, mut server, mut failed) = (0, 0, 0, 0);
    for t in tasks {
        match t.await {
            Ok(Ok(200)) => ok += 1,
            Ok(Ok(429 | 503)) => throttled += 1,
            Ok(Ok(s)) if s >= 500 => server += 1,
            _ => failed += 1,
        }
    }
    format!(
        "{n} concurrent logins: {ok} ok, {throttled} 429/503, {server} other 5xx, {failed} other failures, all done in {:.1} s",
        start.elapsed().as_secs_f64()
    )
}

/// Runs the selected scenarios, in the fixed order, on one started system.
pub async fn run_all(args: &Args, system: &System, duration: Duration) -> anyhow::Result<Report> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(120))
        .build()?;
    let base = system.base.clone();
    create_user(system).await?;
    let wanted = |s: Scenario| args.scenarios.contains(&s);
    let mut report = Report {
        argon2_per_second: None,
        outcomes: Vec::new(),
        seeded: None,
        flood: None,
        cpu: Vec::new(),
    };

    if wanted(Scenario::Calibrate) {
        eprintln!("calibrating argon2id…");
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        report.argon2_per_second = Some(
            tokio::task::spawn_blocking(move || {
                calibrate::argon2_per_second(cores, Duration::from_secs(5))
            })
            .await??,
        );
    }
    if wanted(Scenario::Login) {
        eprintln!("login (success)…");
        let before = system.cpu();
        let outcome = login_scenario(args, &http, &base, duration, None).await;
        report.push_measured(outcome, system, &before);
        eprintln!("  RSS now: {}", system.current_rss());
    }
    if wanted(Scenario::LoginUnknown) {
        eprintln!("login (unknown user)…");
        let before = system.cpu();
        let outcome = login_scenario(args, &http, &base, duration, Some("ghost")).await;
        report.push_measured(outcome, system, &before);
        eprintln!("  RSS now: {}", system.current_rss());
    }
    if wanted(Scenario::Refresh) {
        eprintln!("refresh…");
        let (outcome, cpu) = refresh_scenario(args, system, &http, duration).await?;
        report.cpu.push((outcome.name.clone(), cpu));
        report.outcomes.push(outcome);
        eprintln!("  RSS now: {}", system.current_rss());
    }
    if wanted(Scenario::Logs) {
        eprintln!("seeding {} log rows…", args.log_rows);
        let seed_rate = seed_log(&system.audit_url, args.log_rows).await?;
        report.seeded = Some((args.log_rows, seed_rate));
        eprintln!("  RSS now: {}", system.current_rss());
        eprintln!("admin log page…");
        // Logged in after seeding: a slow seed would outlive the access token.
        let (admin_access, _) = login(&http, &base).await?;
        let before = system.cpu();
        let outcome = logs_scenario(args, &http, &base, duration, admin_access).await;
        report.push_measured(outcome, system, &before);
        eprintln!("  RSS now: {}", system.current_rss());
    }
    if wanted(Scenario::Flood) {
        eprintln!("flood of {} logins…", args.flood);
        report.flood = Some(flood(&http, &base, args.flood).await);
        eprintln!("  RSS now: {}", system.current_rss());
    }
    Ok(report)
}

/// Logins as the bench user, or (`ghost` prefix) as unknown users.
async fn login_scenario(
    args: &Args,
    http: &reqwest::Client,
    base: &str,
    duration: Duration,
    ghost: Option<&'static str>,
) -> Outcome {
    let (h, url) = (http.clone(), Arc::new(format!("{base}{LOGIN}")));
    let name = match ghost {
        None => format!("login (success), {} workers", args.login_concurrency),
        Some(_) => format!("login (unknown user), {} workers", args.login_concurrency),
    };
    let ok: &'static [u16] = if ghost.is_some() { &[401] } else { &[200] };
    driver::run(
        &name,
        args.login_concurrency,
        duration,
        None,
        ok,
        move |w| {
            let (h, url) = (h.clone(), url.clone());
            async move {
                let user = ghost.map_or_else(|| USER.to_owned(), |g| format!("{g}{w}"));
                h.post(url.as_str())
                    .form(&[("username", user.as_str()), ("password", PASSWORD)])
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            }
        },
    )
    .await
}

/// The body of a successful refresh; only the new refresh token is needed.
#[derive(serde::Deserialize)]
struct Refreshed {
    refresh: String,
}

/// Each worker rotates its own token family: every request presents the
/// token the previous one returned, so each is a real, persisted rotation.
async fn refresh_scenario(
    args: &Args,
    system: &System,
    http: &reqwest::Client,
    duration: Duration,
) -> anyhow::Result<(Outcome, String)> {
    let base = system.base.as_str();
    let mut tokens = Vec::new();
    for _ in 0..args.concurrency {
        tokens.push(Mutex::new(login(http, base).await?.1));
    }
    let tokens = Arc::new(tokens);
    let (h, url) = (http.clone(), Arc::new(format!("{base}{REFRESH}")));
    let request = move |w: usize| {
        let (h, url, tokens) = (h.clone(), url.clone(), tokens.clone());
        async move {
            let mut token = tokens[w].lock().await;
            let resp = h
                .post(url.as_str())
                .form(&[("refresh", token.as_str())])
                .send()
                .await?;
            let status = resp.status().as_u16();
            if status == 200 {
                match resp.json::<Refreshed>().await {
                    Ok(body) => *token = body.refresh,
                    // A 200 without a new token leaves the worker stuck on a
                    // used one: count it as a failure.
                    Err(e) => return Err(e),
                }
            }
            Ok(status)
        }
    };
    let before = system.cpu();
    let name = match args.refresh_rate {
        None => format!("refresh (rotation persisted), {} workers", args.concurrency),
        Some(rate) => format!(
            "refresh (rotation persisted), paced at {rate:.0}/s, {} workers",
            args.concurrency
        ),
    };
    let outcome = driver::run(
        &name,
        args.concurrency,
        duration,
        args.refresh_rate,
        &[200],
        request,
    )
    .await;
    let cpu = system.cpu().per_request_since(&before, outcome.requests);
    Ok((outcome, cpu))
}

/// The admin's first page of the login log, read to the end.
async fn logs_scenario(
    args: &Args,
    http: &reqwest::Client,
    base: &str,
    duration: Duration,
    admin_access: String,
) -> Outcome {
    let (h, url) = (http.clone(), Arc::new(format!("{base}{LOGS}?limit=100")));
    let token = Arc::new(admin_access);
    driver::run(
        &format!(
            "admin log page (limit=100, {} rows), {} workers",
            args.log_rows, args.concurrency
        ),
        args.concurrency,
        duration,
        None,
        &[200],
        move |_| {
            let (h, url, token) = (h.clone(), url.clone(), token.clone());
            async move {
                let resp = h
                    .get(url.as_str())
                    .bearer_auth(token.as_str())
                    .send()
                    .await?;
                let status = resp.status().as_u16();
                // Read the page as a client would; an unread body also
                // keeps the connection from being reused.
                resp.bytes().await?;
                Ok(status)
            }
        },
    )
    .await
}

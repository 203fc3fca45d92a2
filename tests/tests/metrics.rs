//! The `/metrics` endpoints of the three real services, scraped over HTTP
//! after real logins through the gateway.
//!
//! Its own test binary on purpose: the metrics recorder is process-wide, so
//! the counts asserted here would be disturbed by the other scenarios
//! running in parallel in the `system` binary. Assertions are still on
//! differences between two scrapes, never on absolute values, and the
//! tests here take turns.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use serde_json::json;
use system_tests::{Backend, TestSystem, processes::RealSystem, tools};

/// One scrape: each series (name and sorted labels) ⇒ its value.
#[derive(Debug)]
struct Scrape {
    series: HashMap<String, f64>,
    text: String,
}

impl Scrape {
    /// GETs `/metrics` at `addr` and parses the text format.
    async fn take(http: &reqwest::Client, addr: SocketAddr) -> Self {
        let resp = http
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let content_type = resp.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(content_type.starts_with("text/plain"), "{content_type}");
        let text = resp.text().await.unwrap();
        let series = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').unwrap();
                (normalise(series), value.parse::<f64>().unwrap())
            })
            .collect();
        Self { series, text }
    }

    /// The value of `name{labels}`, 0 when the series does not exist yet.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.series.get(&key(name, labels)).copied().unwrap_or(0.0)
    }

    /// Whether `name{labels}` exists.
    fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.series.contains_key(&key(name, labels))
    }
}

/// `name{a="1",b="2"}` with labels sorted, whatever order they came in.
fn normalise(series: &str) -> String {
    match series.split_once('{') {
        None => series.to_owned(),
        Some((name, labels)) => {
            let mut labels: Vec<&str> = labels.trim_end_matches('}').split(',').collect();
            labels.sort_unstable();
            format!("{name}{{{}}}", labels.join(","))
        }
    }
}

fn key(name: &str, labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return name.to_owned();
    }
    let mut labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    labels.sort_unstable();
    format!("{name}{{{}}}", labels.join(","))
}

/// Scrapes `addr` until `ready` holds (up to 20 s), then returns the scrape.
async fn scrape_until(
    http: &reqwest::Client,
    addr: SocketAddr,
    what: &str,
    ready: impl Fn(&Scrape) -> bool,
) -> Scrape {
    for _ in 0..200 {
        let scrape = Scrape::take(http, addr).await;
        if ready(&scrape) {
            return scrape;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("metrics never showed {what}");
}

/// The tests here run one at a time: they share the process's recorder,
/// and one's logins would show in the other's differences.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const LOGIN: &str = "/api/accounts/login/";
const LOGIN_RPC: &str = "/auth.v1.AuthService/Login";

async fn login(sys: &TestSystem, username: &str, password: &str) -> u16 {
    sys.post_json(LOGIN, json!({"username": username, "password": password}))
        .await
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_reports_its_requests_logins_ingest_and_pools() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let on_any_port = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    let sys = TestSystem::start_with_audit(
        Backend::Sqlite,
        |audit| audit.metrics_addr = on_any_port,
        |auth, gateway| {
            auth.metrics_addr = on_any_port;
            gateway.metrics_addr = on_any_port;
        },
    )
    .await
    .unwrap();
    let (auth, audit, gateway) = (
        sys.metrics.auth.unwrap(),
        sys.metrics.audit.unwrap(),
        sys.metrics.gateway.unwrap(),
    );
    sys.active_user("mia", "mia@example.com", "mia-pass-123")
        .await;
    let before = Scrape::take(&sys.http, auth).await;
    let audit_before = Scrape::take(&sys.http, audit).await;
    let gateway_before = Scrape::take(&sys.http, gateway).await;
    // No account holds a Django hash, and the gauge says so from the start.
    assert!(before.has("django_password_hashes", &[]));
    assert_eq!(before.get("django_password_hashes", &[]), 0.0);

    assert_eq!(login(&sys, "mia", "wrong-pass-1").await, 401);
    assert_eq!(login(&sys, "mia", "wrong-pass-2").await, 401);
    assert_eq!(login(&sys, "nobody", "whatever-12").await, 401);
    assert_eq!(login(&sys, "mia", "mia-pass-123").await, 200);
    let (status, _) = sys.get("/no/such/page/12345", None).await;
    assert_eq!(status, 404);
    sys.wait_for_attempts(4).await;

    // auth-service: attempts by outcome and reason, gRPC calls by method
    // and status (OK comes in the trailers, the refusals in the headers).
    let after = Scrape::take(&sys.http, auth).await;
    let attempts = |s: &Scrape, outcome: &str, reason: &str| {
        s.get(
            "login_attempts_total",
            &[("outcome", outcome), ("reason", reason)],
        )
    };
    assert_eq!(
        attempts(&after, "failure", "bad_password") - attempts(&before, "failure", "bad_password"),
        2.0
    );
    assert_eq!(
        attempts(&after, "failure", "unknown_user") - attempts(&before, "failure", "unknown_user"),
        1.0
    );
    assert_eq!(
        attempts(&after, "success", "none") - attempts(&before, "success", "none"),
        1.0
    );
    let calls =
        |s: &Scrape, name: &str, code: &str| s.get(name, &[("method", LOGIN_RPC), ("code", code)]);
    for name in [
        "grpc_server_requests_total",
        "grpc_server_request_duration_seconds_count",
    ] {
        assert_eq!(
            calls(&after, name, "OK") - calls(&before, name, "OK"),
            1.0,
            "{name}"
        );
        assert_eq!(
            calls(&after, name, "Unauthenticated") - calls(&before, name, "Unauthenticated"),
            3.0,
            "{name}"
        );
    }
    assert!(after.has(
        "grpc_server_request_duration_seconds_bucket",
        &[("method", LOGIN_RPC), ("code", "OK"), ("le", "+Inf")]
    ));
    assert!(after.get("db_pool_max_connections", &[("service", "auth")]) >= 1.0);
    assert!(after.has(
        "db_pool_connections",
        &[("service", "auth"), ("state", "idle")]
    ));

    // audit-service: the forwarded attempts arrive in batches and are counted.
    let audit_after = scrape_until(&sys.http, audit, "4 ingested rows", |s| {
        s.get("ingest_rows_total", &[("result", "inserted")])
            - audit_before.get("ingest_rows_total", &[("result", "inserted")])
            >= 4.0
    })
    .await;
    assert_eq!(
        audit_after.get("ingest_rows_total", &[("result", "inserted")])
            - audit_before.get("ingest_rows_total", &[("result", "inserted")]),
        4.0
    );
    let batches = audit_after.get("ingest_batch_size_count", &[])
        - audit_before.get("ingest_batch_size_count", &[]);
    assert!((1.0..=4.0).contains(&batches), "{batches} batches");
    assert_eq!(
        audit_after.get("ingest_batch_size_sum", &[])
            - audit_before.get("ingest_batch_size_sum", &[]),
        4.0
    );
    assert!(audit_after.has("ingest_commit_seconds_count", &[]));
    assert!(audit_after.get("db_pool_max_connections", &[("service", "audit")]) >= 1.0);
    assert!(audit_after.has(
        "grpc_server_requests_total",
        &[
            ("method", "/audit.v1.AuditService/ListAttempts"),
            ("code", "OK")
        ]
    ));

    // gateway: by route template and status; raw paths never become labels.
    let gateway_after = Scrape::take(&sys.http, gateway).await;
    let http = |s: &Scrape, route: &str, method: &str, status: &str| {
        s.get(
            "http_requests_total",
            &[("route", route), ("method", method), ("status", status)],
        )
    };
    assert_eq!(
        http(&gateway_after, LOGIN, "POST", "401") - http(&gateway_before, LOGIN, "POST", "401"),
        3.0
    );
    assert_eq!(
        http(&gateway_after, LOGIN, "POST", "200") - http(&gateway_before, LOGIN, "POST", "200"),
        1.0
    );
    assert_eq!(
        http(&gateway_after, "unmatched", "GET", "404")
            - http(&gateway_before, "unmatched", "GET", "404"),
        1.0
    );
    assert!(gateway_after.has(
        "http_request_duration_seconds_count",
        &[("route", LOGIN), ("method", "POST"), ("status", "200")]
    ));
    assert!(!gateway_after.text.contains("/no/such/page"));

    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_backlog_and_forwarder_reconnects_follow_an_audit_outage() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let on_any_port = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    let mut sys = TestSystem::start_with(Backend::Sqlite, |auth, _| {
        auth.metrics_addr = on_any_port;
    })
    .await
    .unwrap();
    let auth = sys.metrics.auth.unwrap();
    sys.active_user("noa", "noa@example.com", "noa-pass-123")
        .await;
    assert_eq!(login(&sys, "noa", "noa-pass-123").await, 200);
    sys.wait_for_attempts(1).await;
    let before = Scrape::take(&sys.http, auth).await;

    sys.stop_audit().await;
    assert_eq!(login(&sys, "noa", "wrong-pass-1").await, 401);
    assert_eq!(login(&sys, "noa", "wrong-pass-2").await, 401);
    let down = scrape_until(&sys.http, auth, "a backlog of 2", |s| {
        s.get("outbox_backlog", &[]) == 2.0
    })
    .await;
    assert!(
        down.get("forwarder_reconnects_total", &[]) > before.get("forwarder_reconnects_total", &[])
    );

    sys.start_audit().await;
    sys.wait_for_attempts(3).await;
    let up = scrape_until(&sys.http, auth, "an empty backlog", |s| {
        s.get("outbox_backlog", &[]) == 0.0
    })
    .await;
    assert!(
        up.get("forwarder_batch_size_sum", &[]) - before.get("forwarder_batch_size_sum", &[])
            >= 2.0
    );

    sys.shutdown().await;
}

/// `promtool check metrics` on `text`: its complaints, empty when clean.
fn promtool_complaints(promtool: &std::path::Path, text: &str) -> String {
    use std::io::Write as _;
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let complaints = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        String::new()
    } else {
        format!("{} {complaints}", out.status)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metrics_endpoint_of_the_real_binaries_passes_promtool() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some(promtool) = tools::program("promtool", "apt-get install prometheus") else {
        return;
    };
    let sys = RealSystem::start();
    let http = reqwest::Client::new();
    // Idle, each service already lists the counters an alert would watch,
    // at zero.
    let zero_at_start = [
        ("gateway", "gateway_connections_refused_total"),
        ("auth-service", "forwarder_reconnects_total"),
        ("auth-service", "forwarder_rows_refused_total"),
        (
            "auth-service",
            r#"login_attempts_total{outcome="failure",reason="locked_out"}"#,
        ),
        ("audit-service", "ingest_batches_refused_total"),
    ];
    for (name, addr) in sys.metrics {
        let text = Scrape::take(&http, addr).await.text;
        for (_, series) in zero_at_start.iter().filter(|(n, _)| *n == name) {
            assert!(
                text.lines().any(|l| l == format!("{series} 0")),
                "{name} does not show `{series} 0`:\n{text}"
            );
        }
        assert_eq!(promtool_complaints(&promtool, &text), "", "{name} idle");
    }

    // After traffic every series that appeared is described too.
    let status = http
        .post(format!("{}{LOGIN}", sys.base()))
        .json(&json!({"username": "nobody", "password": "whatever-12"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401);
    let audit = sys.metrics[2].1;
    scrape_until(&http, audit, "the attempt ingested", |s| {
        s.get("ingest_rows_total", &[("result", "inserted")]) >= 1.0
    })
    .await;
    for (name, addr) in sys.metrics {
        let text = Scrape::take(&http, addr).await.text;
        let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
        assert!(
            types > 0 && helps == types,
            "{name}: {helps} HELP for {types} TYPE"
        );
        assert_eq!(promtool_complaints(&promtool, &text), "", "{name} busy");
    }
}

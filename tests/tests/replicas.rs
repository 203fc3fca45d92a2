//! Two auth-service processes (the real binaries) on one PostgreSQL
//! database, each behind its own gateway, share one burst of wrong
//! passwords: the limits are counted in the database, so the replicas
//! together check no more passwords than one would.
//!
//! The second test: two auth-service and two audit-service processes on
//! one PostgreSQL server, the way Kubernetes runs them: the auth replicas
//! share the auth database (limits, outbox), the audit replicas share the
//! log database. Each auth replica reaches audit-service through an
//! address that prefers one audit replica and fails over to the other (the
//! test's stand-in for a Kubernetes Service): auth 0 streams to audit 0,
//! auth 1 to audit 1, so both audit replicas ingest at once. Under login
//! load from several clients through both gateways, auth-service 1 and
//! audit-service 0 are SIGKILLed: the surviving auth-service loses its
//! audit-service and must fail over, and must drain what the dead replica
//! left in the shared outbox. The load goes on on the survivors. Then
//! every login a gateway answered as an attempt is in the log exactly
//! once, no event is stored twice, and a limit reached through both
//! replicas holds on the survivor.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use system_tests::processes::{
    Processes, all_attempts, audit_service_env, auth_replica_env, build_binaries, free_addr,
    gateway_env, service_proxy, set, spawn, wait_listening, wrong_password_burst,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_auth_replicas_on_one_database_check_no_more_passwords_than_one() {
    let Some(server) = common::testing::server_url("TEST_POSTGRES_URL") else {
        return;
    };
    build_binaries();
    let auth_db = common::testing::fresh_postgres(&server).await;
    let dir = tempfile::tempdir().unwrap();

    // The account, made through the admin CLI's code path on that database.
    let cli = auth_service::Config::for_tests(&auth_db, "http://127.0.0.1:1", dir.path().into());
    auth_service::admin::create_admin(&cli, "ria", "ria@example.com", "ria-pass-123")
        .await
        .unwrap();

    let audit = free_addr();
    let mut procs = Processes::default();
    procs.0.push(spawn(
        "audit-service",
        &audit_service_env(audit, dir.path()),
    ));
    wait_listening(audit, "audit-service");
    let mut gateways = Vec::new();
    for replica in 0..2 {
        let (auth, gateway) = (free_addr(), free_addr());
        let env = auth_replica_env(auth, audit, dir.path(), &auth_db, replica);
        procs.0.push(spawn("auth-service", &env));
        wait_listening(auth, "auth-service");
        procs
            .0
            .push(spawn("gateway", &gateway_env(gateway, auth, audit)));
        wait_listening(gateway, "gateway");
        gateways.push(gateway);
    }

    // 100 wrong passwords for one account from one address, half through
    // each replica, released at once.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let statuses = wrong_password_burst(&http, &gateways, "ria", 100).await;
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(
        (checked, refused),
        (5, 95),
        "statuses other than 401/429: {:?}",
        statuses
            .iter()
            .filter(|s| **s != 401 && **s != 429)
            .collect::<Vec<_>>()
    );

    // The owner's right password, through either replica, is refused now too.
    for gateway in &gateways {
        let status = http
            .post(format!("http://{gateway}/api/accounts/login/"))
            .json(&serde_json::json!({"username": "ria", "password": "ria-pass-123"}))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 429);
    }
}

/// Load clients, each its own account.
const CLIENTS: usize = 6;
/// Logins per client; every third is a wrong password.
const LOGINS: usize = 40;
/// Answered logins (all clients together) before the kills.
const KILL_AFTER: usize = CLIENTS * LOGINS / 3;

/// One answered login: which gateway, the status, the request id.
#[derive(Debug)]
struct Answer {
    gateway: usize,
    status: u16,
    request_id: Option<String>,
}

/// Client `c`'s logins, alternating gateways until `gateway1_down`, then
/// only through gateway 0 (what a load balancer does once the replica's
/// readiness fails). A wrong password goes to a name that does not exist
/// (each a different one), so the load trips no account limit.
async fn client(
    http: reqwest::Client,
    gateways: [SocketAddr; 2],
    c: usize,
    answered: Arc<AtomicUsize>,
    gateway1_down: Arc<AtomicBool>,
) -> Vec<Answer> {
    let mut answers = Vec::new();
    for i in 0..LOGINS {
        let g = if gateway1_down.load(Ordering::SeqCst) {
            0
        } else {
            (c + i) % 2
        };
        let body = if i % 3 == 2 {
            serde_json::json!({"username": format!("nobody-{c}-{i}"), "password": "wrong"})
        } else {
            serde_json::json!({"username": format!("user{c}"), "password": format!("user{c}-pass-123")})
        };
        let response = http
            .post(format!("http://{}/api/accounts/login/", gateways[g]))
            .json(&body)
            .send()
            .await;
        // A request cut off by the kill has no answer: nothing to hold
        // the log to.
        if let Ok(response) = response {
            answers.push(Answer {
                gateway: g,
                status: response.status().as_u16(),
                request_id: response
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
            });
        }
        answered.fetch_add(1, Ordering::SeqCst);
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_auth_and_two_audit_replicas_lose_one_of_each_under_load_and_log_every_attempt_once() {
    let Some(server) = common::testing::server_url("TEST_POSTGRES_URL") else {
        return;
    };
    build_binaries();
    let auth_db = common::testing::fresh_postgres(&server).await;
    let audit_db = common::testing::fresh_postgres(&server).await;
    let dir = tempfile::tempdir().unwrap();

    // The accounts, made through the admin CLI's code path.
    let cli = auth_service::Config::for_tests(&auth_db, "http://127.0.0.1:1", dir.path().into());
    auth_service::admin::create_admin(&cli, "ria", "ria@example.com", "ria-pass-123")
        .await
        .unwrap();
    for c in 0..CLIENTS {
        let (name, password) = (format!("user{c}"), format!("user{c}-pass-123"));
        auth_service::admin::create_admin(&cli, &name, &format!("{name}@example.com"), &password)
            .await
            .unwrap();
    }

    let mut procs = Processes::default();
    // procs.0: [audit0, audit1, auth0, gateway0, auth1, gateway1]
    let audits = [free_addr(), free_addr()];
    // Started together on the empty log database, as a Deployment starts
    // its pods: both run the migrations at once.
    for audit in audits {
        let env = set(
            audit_service_env(audit, dir.path()),
            "AUDIT_DATABASE_URL",
            audit_db.clone(),
        );
        procs.0.push(spawn("audit-service", &env));
    }
    for (i, audit) in audits.iter().enumerate() {
        wait_listening(*audit, &format!("audit-service {i}"));
    }
    let mut gateways = Vec::new();
    let auth0_metrics = free_addr();
    for replica in 0..2 {
        let (auth, gateway) = (free_addr(), free_addr());
        let audit_service = service_proxy(vec![audits[replica], audits[(replica + 1) % 2]]).await;
        let env = auth_replica_env(auth, audit_service, dir.path(), &auth_db, replica);
        // The load's wrong passwords all come from this one address.
        let env = set(env, "AUTH_BF_IP_FAILURES", "100000");
        let env = if replica == 0 {
            set(env, "AUTH_METRICS_ADDR", auth0_metrics.to_string())
        } else {
            env
        };
        procs.0.push(spawn("auth-service", &env));
        wait_listening(auth, &format!("auth-service {replica}"));
        let env = gateway_env(gateway, auth, audit_service);
        procs.0.push(spawn("gateway", &env));
        wait_listening(gateway, &format!("gateway {replica}"));
        gateways.push(gateway);
    }
    let gateways = [gateways[0], gateways[1]];
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    // A shared limit, while the load starts: 20 wrong passwords for one
    // account, half through each replica, released at once, get as many
    // password checks as one replica would give (5).
    let answered = Arc::new(AtomicUsize::new(0));
    let gateway1_down = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..CLIENTS)
        .map(|c| {
            tokio::spawn(client(
                http.clone(),
                gateways,
                c,
                answered.clone(),
                gateway1_down.clone(),
            ))
        })
        .collect();
    let burst = wrong_password_burst(&http, &gateways, "ria", 20).await;
    let checked = burst.iter().filter(|s| **s == 401).count();
    let refused = burst.iter().filter(|s| **s == 429).count();
    assert_eq!((checked, refused), (5, 15), "burst statuses: {burst:?}");

    // Mid-load: SIGKILL auth-service 1 and audit-service 0.
    let deadline = Instant::now() + Duration::from_secs(60);
    while answered.load(Ordering::SeqCst) < KILL_AFTER {
        assert!(Instant::now() < deadline, "the load never got going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in [4, 0] {
        procs.0[i].kill().unwrap(); // SIGKILL on Unix
        procs.0[i].wait().unwrap();
    }
    gateway1_down.store(true, Ordering::SeqCst);
    let before_kill = answered.load(Ordering::SeqCst);
    // What the outbox held then (either replica's rows: it has no owner,
    // so the survivor's forwarder drains them all); for the report.
    let auth_pool = sqlx::PgPool::connect(&auth_db).await.unwrap();
    let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM attempt_outbox")
        .fetch_one(&auth_pool)
        .await
        .unwrap();

    let mut answers = Vec::new();
    for task in load {
        answers.extend(task.await.unwrap());
    }
    assert!(
        answers.len() > before_kill,
        "the load went on after the kills"
    );

    // The limit is still there on the survivor (it lives in the database).
    let status = http
        .post(format!("http://{}/api/accounts/login/", gateways[0]))
        .json(&serde_json::json!({"username": "ria", "password": "ria-pass-123"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 429);

    // Every login answered as a checked password (200 or 401) is an
    // attempt, whichever replica answered it; each must reach the log
    // through the survivors.
    let attempts: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.status == 200 || a.status == 401)
        .collect();
    for g in 0..2 {
        assert!(
            attempts.iter().any(|a| a.gateway == g),
            "no attempt answered through gateway {g}: {answers:?}"
        );
    }
    let odd: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.status != 200 && a.status != 401)
        .collect();
    // Only logins through the killed replica may have failed.
    assert!(
        odd.iter().all(|a| a.gateway == 1),
        "the surviving replica failed logins: {odd:?}"
    );
    let ids: Vec<&str> = attempts
        .iter()
        .map(|a| a.request_id.as_deref().expect("a request id"))
        .collect();
    let survivor = audits[1];
    let deadline = Instant::now() + Duration::from_secs(30);
    let log = loop {
        let log = all_attempts(survivor).await.unwrap_or_default();
        let logged: HashMap<&str, ()> = log
            .iter()
            .map(|r| (r.attempt.as_ref().unwrap().request_id.as_str(), ()))
            .collect();
        if ids.iter().all(|id| logged.contains_key(id)) || Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // The survivor's forwarder lost its audit-service and reconnected.
    let metrics = http
        .get(format!("http://{auth0_metrics}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let reconnects: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("forwarder_reconnects_total "))
        .expect("forwarder_reconnects_total on /metrics")
        .trim()
        .parse()
        .unwrap();
    assert!(reconnects >= 1.0, "auth-service 0 never failed over");

    let mut per_request: HashMap<&str, usize> = HashMap::new();
    let mut per_event: HashMap<&str, usize> = HashMap::new();
    for r in &log {
        let a = r.attempt.as_ref().unwrap();
        if !a.request_id.is_empty() {
            *per_request.entry(a.request_id.as_str()).or_default() += 1;
        }
        *per_event.entry(a.event_id.as_str()).or_default() += 1;
    }
    let missing: Vec<&&str> = ids
        .iter()
        .filter(|id| !per_request.contains_key(**id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} answered attempts not in the log: {missing:?}",
        missing.len(),
        ids.len()
    );
    assert!(
        per_request.values().all(|&n| n == 1),
        "a request logged twice: {:?}",
        per_request
            .iter()
            .filter(|(_, n)| **n > 1)
            .collect::<Vec<_>>()
    );
    assert!(per_event.values().all(|&n| n == 1), "an event stored twice");
    eprintln!(
        "two replicas of each, one of each killed: {} answered logins ({} attempts, {} through the killed replica \
         failed), {} answered before the kills, {} in the outbox then, {} rows in the log, \
         {} reconnects of the survivor's forwarder",
        answers.len(),
        ids.len(),
        odd.len(),
        before_kill,
        pending,
        log.len(),
        reconnects
    );
}

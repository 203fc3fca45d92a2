//! Fault behaviour against the real binaries: audit-service is SIGKILLed in
//! the middle of a stream of logins and restarted, and every attempt made
//! ends up in the log exactly once (auth-service's outbox resends what was
//! not acked; audit-service ignores what it had already committed).

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::HashMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use system_tests::processes::{
    Processes, all_attempts, audit_service_env, auth_service_env, build_binaries, free_addr,
    gateway_env, spawn, wait_listening,
};

/// One login through the gateway; returns (status, request id).
async fn login(http: &reqwest::Client, gateway: SocketAddr, i: usize) -> (u16, String) {
    let response = http
        .post(format!("http://{gateway}/api/accounts/login/"))
        .json(&serde_json::json!({"username": format!("nobody{i}"), "password": "wrong-password"}))
        .send()
        .await
        .unwrap();
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    (response.status().as_u16(), request_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_login_is_logged_exactly_once_across_an_audit_service_sigkill() {
    build_binaries();
    let dir = tempfile::tempdir().unwrap();
    let (audit, auth, gateway) = (free_addr(), free_addr(), free_addr());
    let audit_env = audit_service_env(audit, dir.path());
    let mut procs = Processes::default();
    procs.0.push(spawn("audit-service", &audit_env));
    wait_listening(audit, "audit-service");
    procs.0.push(spawn(
        "auth-service",
        &auth_service_env(auth, audit, dir.path()),
    ));
    wait_listening(auth, "auth-service");
    procs
        .0
        .push(spawn("gateway", &gateway_env(gateway, auth, audit)));
    wait_listening(gateway, "gateway");
    let http = reqwest::Client::new();

    // Logins before, during and after the outage; the kill lands while
    // the forwarder streams the first ones. 42 stays below auth-service's
    // per-IP failure throttle (50), so every login is a 401 attempt.
    let mut made = Vec::new();
    for i in 0..14 {
        made.push(login(&http, gateway, i).await);
    }
    let audit_process = &mut procs.0[0];
    audit_process.kill().unwrap(); // SIGKILL on Unix
    audit_process.wait().unwrap();
    for i in 14..28 {
        made.push(login(&http, gateway, i).await);
    }
    procs.0[0] = spawn("audit-service", &audit_env);
    wait_listening(audit, "audit-service (restarted)");
    for i in 28..42 {
        made.push(login(&http, gateway, i).await);
    }

    // Every login answered by auth-service is an attempt; a 401 certainly is.
    let answered: Vec<&String> = made
        .iter()
        .filter(|(status, _)| *status == 401)
        .map(|(_, id)| id)
        .collect();
    assert_eq!(answered.len(), made.len(), "logins failed oddly: {made:?}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let log = loop {
        let log = all_attempts(audit).await.unwrap_or_default();
        let by_request: HashMap<String, usize> = log.iter().fold(HashMap::new(), |mut m, r| {
            *m.entry(r.attempt.as_ref().unwrap().request_id.clone())
                .or_default() += 1;
            m
        });
        if answered.iter().all(|id| by_request.contains_key(*id)) || Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let mut per_request: HashMap<&str, usize> = HashMap::new();
    let mut per_event: HashMap<&str, usize> = HashMap::new();
    for r in &log {
        let a = r.attempt.as_ref().unwrap();
        *per_request.entry(a.request_id.as_str()).or_default() += 1;
        *per_event.entry(a.event_id.as_str()).or_default() += 1;
    }
    for id in &answered {
        assert_eq!(
            per_request.get(id.as_str()).copied().unwrap_or(0),
            1,
            "attempt of request {id} is not in the log exactly once"
        );
    }
    assert!(
        per_request.values().all(|&n| n == 1),
        "a request logged twice"
    );
    assert!(per_event.values().all(|&n| n == 1), "an event stored twice");
    assert_eq!(log.len(), made.len(), "every login made is one row");
}

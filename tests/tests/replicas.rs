//! Two auth-service processes (the real binaries) on one PostgreSQL
//! database, each behind its own gateway, share one burst of wrong
//! passwords: the limits are counted in the database, so the replicas
//! together check no more passwords than one would.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use system_tests::processes::{
    Processes, audit_service_env, auth_replica_env, build_binaries, free_addr, gateway_env, spawn,
    wait_listening, wrong_password_burst,
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

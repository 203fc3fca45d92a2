//! `GET /readyz` follows the backends and their databases, while `/healthz`
//! and logins do not depend on audit-service.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::{Connection, Executor};
use system_tests::{Backend, TestSystem};

on_every_backend!(readyz_follows_the_backend_services);

/// Polls `/readyz` until it answers `status` (the services re-check their
/// databases every 2 s), and returns the last body.
async fn readyz_until(sys: &TestSystem, status: u16) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (got, body) = sys.get("/readyz", None).await;
        if got == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stayed {got} {body}, expected {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn readyz_follows_the_backend_services(backend: Backend) {
    let Some(mut sys) = TestSystem::start(backend).await else {
        return;
    };
    let body = readyz_until(&sys, 200).await;
    assert_eq!(
        body,
        json!({"status": "ready", "auth": "serving", "audit": "serving"})
    );

    sys.stop_audit().await;
    let body = readyz_until(&sys, 503).await;
    assert_eq!(
        body,
        json!({"status": "not_ready", "auth": "serving", "audit": "unreachable"})
    );
    // Liveness and logins are unaffected by the missing audit-service.
    assert_eq!(sys.get("/healthz", None).await.0, 200);
    sys.active_user("rhea", "rhea@example.com", "rhea-pass-12")
        .await;
    sys.login("rhea", "rhea-pass-12").await;

    sys.start_audit().await;
    readyz_until(&sys, 200).await;
    sys.shutdown().await;
}

/// The name of the database a PostgreSQL URL points at.
fn database_name(url: &str) -> String {
    url.rsplit('/')
        .next()
        .and_then(|s| s.split('?').next())
        .unwrap()
        .to_owned()
}

/// Makes new sessions of `database` read-only (or writable again) and drops
/// the open ones, so the pools reconnect into the new setting: what a
/// service sees when its primary fails over to a standby. Reads keep
/// working; every write fails.
async fn set_read_only(admin: &mut sqlx::PgConnection, database: &str, read_only: bool) {
    let sql = if read_only {
        format!("ALTER DATABASE {database} SET default_transaction_read_only = on")
    } else {
        format!("ALTER DATABASE {database} RESET default_transaction_read_only")
    };
    admin.execute(sqlx::AssertSqlSafe(sql)).await.unwrap();
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(database)
    .execute(&mut *admin)
    .await
    .unwrap();
}

/// Before: a database that answered but refused writes kept `/readyz` at
/// 200 while every register and login answered 503. The services' check is
/// a write now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_503_when_a_database_stops_taking_writes() {
    let Some(sys) = TestSystem::start(Backend::Postgres).await else {
        return;
    };
    readyz_until(&sys, 200).await;
    let server = std::env::var("TEST_POSTGRES_URL").unwrap();
    let mut admin = sqlx::PgConnection::connect(&server).await.unwrap();
    let auth_db = database_name(sys.auth_config.database_url.expose());
    let audit_db = database_name(sys.audit_database_url());

    set_read_only(&mut admin, &auth_db, true).await;
    let body = readyz_until(&sys, 503).await;
    assert_eq!(
        body,
        json!({"status": "not_ready", "auth": "not_serving", "audit": "serving"})
    );
    // What readiness now predicts: writes fail.
    let (status, _) = sys
        .post_json(
            "/api/accounts/register/",
            json!({"username": "tove", "email": "tove@example.com", "password": "tove-pass-123"}),
        )
        .await;
    assert_eq!(status, 503);
    set_read_only(&mut admin, &auth_db, false).await;
    readyz_until(&sys, 200).await;

    set_read_only(&mut admin, &audit_db, true).await;
    let body = readyz_until(&sys, 503).await;
    assert_eq!(
        body,
        json!({"status": "not_ready", "auth": "serving", "audit": "not_serving"})
    );
    set_read_only(&mut admin, &audit_db, false).await;
    readyz_until(&sys, 200).await;
    sys.shutdown().await;
}

/// A real database outage: PostgreSQL stops accepting connections to the
/// auth database and drops the existing ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_auth_database() {
    let Some(sys) = TestSystem::start(Backend::Postgres).await else {
        return;
    };
    readyz_until(&sys, 200).await;
    let auth_db = sys.auth_config.database_url.expose().to_owned();
    let name = auth_db
        .rsplit('/')
        .next()
        .and_then(|s| s.split('?').next())
        .unwrap()
        .to_owned();
    let server = std::env::var("TEST_POSTGRES_URL").unwrap();
    let mut admin = sqlx::PgConnection::connect(&server).await.unwrap();
    let cut = async |admin: &mut sqlx::PgConnection, allow: bool| {
        let sql = format!("ALTER DATABASE {name} ALLOW_CONNECTIONS {allow}");
        admin.execute(sqlx::AssertSqlSafe(sql)).await.unwrap();
        if !allow {
            sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind(&name)
            .execute(&mut *admin)
            .await
            .unwrap();
        }
    };

    cut(&mut admin, false).await;
    let body = readyz_until(&sys, 503).await;
    assert_eq!(
        body,
        json!({"status": "not_ready", "auth": "not_serving", "audit": "serving"})
    );

    cut(&mut admin, true).await;
    readyz_until(&sys, 200).await;
    sys.shutdown().await;
}

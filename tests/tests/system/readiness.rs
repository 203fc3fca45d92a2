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

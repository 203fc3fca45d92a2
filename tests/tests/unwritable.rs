//! A database the services can read but not write. Before, both services
//! started with a warning, `/readyz` said ready and every register, login
//! and stored attempt failed with 503. Now start-up is refused with one line
//! naming the variable and where it points, and readiness (a heartbeat
//! write, not a ping) turns `NOT_SERVING` when writes start failing.
//!
//! The conditions are real: an immutable SQLite file (`chmod`, and
//! `chattr +i` when the tests run as root, where permissions stop nothing),
//! a PostgreSQL database whose sessions are read-only (a standby after a
//! failover looks like this), a MariaDB user without INSERT.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    net::SocketAddr,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use sqlx::{Connection, Executor};
use system_tests::processes::{
    Processes, audit_service_env, build_binaries, exit_within, free_addr, spawn, terminate,
    wait_exit, wait_listening,
};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// A refused start-up must end well within this (no hang, no retry loop).
const REFUSAL_LIMIT: Duration = Duration::from_secs(30);

fn can_open_for_writing(path: &Path) -> bool {
    std::fs::OpenOptions::new().write(true).open(path).is_ok()
}

/// Files made unwritable for the test, made writable again when it ends
/// (an immutable file cannot even be deleted, so the temporary folder would
/// stay behind).
struct ReadOnly(Vec<PathBuf>);

impl ReadOnly {
    /// Makes `paths` unwritable for this process, or returns `None` (after
    /// saying why) where that cannot be done: as root without
    /// CAP_LINUX_IMMUTABLE. In CI (`CI=true`) that fails the test instead.
    fn make(paths: Vec<PathBuf>) -> Option<Self> {
        let guard = Self(paths);
        for path in &guard.0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444)).unwrap();
            if can_open_for_writing(path) {
                // Root ignores permissions; an immutable file stops root too.
                let _ = Command::new("chattr").arg("+i").arg(path).status();
            }
            if can_open_for_writing(path) {
                let why = format!("cannot make {} read-only here", path.display());
                assert!(!system_tests::tools::in_ci(), "{why}");
                eprintln!("{why}: skipping");
                return None;
            }
        }
        Some(guard)
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = Command::new("chattr").arg("-i").arg(path).status();
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644));
        }
    }
}

fn auth_env(
    addr: SocketAddr,
    audit: SocketAddr,
    database_url: &str,
    dir: &Path,
) -> Vec<(&'static str, String)> {
    vec![
        ("AUTH_GRPC_ADDR", addr.to_string()),
        ("AUTH_METRICS_ADDR", "127.0.0.1:0".to_owned()),
        ("AUTH_DATABASE_URL", database_url.to_owned()),
        ("AUDIT_GRPC_URL", format!("http://{audit}")),
        ("MAIL_DIR", dir.join("mail").display().to_string()),
    ]
}

fn audit_env(addr: SocketAddr, database_url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AUDIT_GRPC_ADDR", addr.to_string()),
        ("AUDIT_METRICS_ADDR", "127.0.0.1:0".to_owned()),
        ("AUDIT_DATABASE_URL", database_url.to_owned()),
    ]
}

/// Runs both services once on their databases (creating and migrating
/// them) and stops them gracefully.
fn start_and_stop(
    audit: &[(&str, String)],
    auth: &[(&str, String)],
    addrs: (SocketAddr, SocketAddr),
) {
    let mut procs = Processes::default();
    procs.0.push(spawn("audit-service", audit));
    wait_listening(addrs.0, "audit-service");
    procs.0.push(spawn("auth-service", auth));
    wait_listening(addrs.1, "auth-service");
    for child in procs.0.iter_mut().rev() {
        terminate(child);
        assert!(wait_exit(child, Duration::from_secs(20)).success());
    }
}

/// Starts `name`, which must refuse: a failure exit, and a message naming
/// `variable` and `location`. Returns the message.
fn assert_refused(name: &str, env: &[(&str, String)], variable: &str, location: &str) -> String {
    let (status, stderr) = exit_within(name, env, REFUSAL_LIMIT);
    assert!(!status.success(), "{name} started: {stderr}");
    assert!(
        stderr.contains(variable) && stderr.contains(location),
        "{name} must name {variable} and {location}: {stderr}"
    );
    assert_eq!(
        stderr.matches(variable).count(),
        1,
        "{name} names {variable} once, not once per layer: {stderr}"
    );
    stderr
}

#[test]
fn both_services_refuse_to_start_on_read_only_sqlite_files() {
    build_binaries();
    let dir = tempfile::tempdir().unwrap();
    let (audit, auth) = (free_addr(), free_addr());
    let audit_db = dir.path().join("audit.db");
    let auth_db = dir.path().join("auth.db");
    let audit_env = audit_service_env(audit, dir.path());
    let auth_env = auth_env(
        auth,
        audit,
        &format!("sqlite://{}", auth_db.display()),
        dir.path(),
    );
    start_and_stop(&audit_env, &auth_env, (audit, auth));

    let files: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        // The databases and their -wal / -shm files.
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains(".db"))
        .collect();
    let Some(_read_only) = ReadOnly::make(files) else {
        return;
    };

    let said = assert_refused(
        "audit-service",
        &audit_env,
        "AUDIT_DATABASE_URL",
        &audit_db.display().to_string(),
    );
    assert!(said.contains("readonly"), "{said}");
    let said = assert_refused(
        "auth-service",
        &auth_env,
        "AUTH_DATABASE_URL",
        &auth_db.display().to_string(),
    );
    assert!(said.contains("readonly"), "{said}");
}

/// The database name of a URL made by `fresh_postgres` / `fresh_mysql`.
fn database_name(url: &str) -> String {
    url.rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_services_refuse_to_start_on_a_read_only_postgres_database() {
    let Some(server) = common::testing::server_url("TEST_POSTGRES_URL") else {
        return;
    };
    build_binaries();
    let dir = tempfile::tempdir().unwrap();
    let (audit, auth) = (free_addr(), free_addr());
    let audit_db = common::testing::fresh_postgres(&server).await;
    let auth_db = common::testing::fresh_postgres(&server).await;
    let audit_env = audit_env(audit, &audit_db);
    let auth_env = auth_env(auth, audit, &auth_db, dir.path());
    start_and_stop(&audit_env, &auth_env, (audit, auth));

    let mut admin = sqlx::PgConnection::connect(&server).await.unwrap();
    for url in [&audit_db, &auth_db] {
        let sql = format!(
            "ALTER DATABASE {} SET default_transaction_read_only = on",
            database_name(url)
        );
        admin.execute(sqlx::AssertSqlSafe(sql)).await.unwrap();
    }

    for (name, env, variable, url) in [
        ("audit-service", &audit_env, "AUDIT_DATABASE_URL", &audit_db),
        ("auth-service", &auth_env, "AUTH_DATABASE_URL", &auth_db),
    ] {
        let said = assert_refused(name, env, variable, &database_name(url));
        assert!(said.contains("127.0.0.1:5432"), "{said}");
        assert!(said.contains("read-only transaction"), "{said}");
    }
}

async fn audit_health(addr: SocketAddr) -> Option<ServingStatus> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .ok()?
        .connect()
        .await
        .ok()?;
    let mut client = HealthClient::new(channel);
    let status = client
        .check(HealthCheckRequest {
            service: "audit.v1.AuditService".into(),
        })
        .await
        .ok()?
        .into_inner()
        .status;
    ServingStatus::try_from(status).ok()
}

/// Polls audit-service's named health entry until it is `want` (the write
/// check runs every 2 s).
async fn audit_health_until(addr: SocketAddr, want: ServingStatus) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = audit_health(addr).await;
        if got == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "audit health stayed {got:?}, expected {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Ends `user`'s sessions, so the pool reconnects under its current
/// database-level grants (MariaDB applies those to a session when it
/// starts).
async fn kill_sessions(admin: &mut sqlx::MySqlConnection, user: &str) {
    let ids: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM information_schema.processlist WHERE user = ?")
            .bind(user)
            .fetch_all(&mut *admin)
            .await
            .unwrap();
    for id in ids {
        // A session may end by itself meanwhile.
        let _ = admin
            .execute(sqlx::AssertSqlSafe(format!("KILL {id}")))
            .await;
    }
}

/// MariaDB: a user that may read but not insert. Start-up is refused; and a
/// running audit-service whose INSERT grant is revoked (its sessions
/// renewed) turns not ready, then ready again when it is granted back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_service_on_mariadb_needs_insert_to_start_and_to_stay_ready() {
    let Some(server) = common::testing::server_url("TEST_MYSQL_URL") else {
        return;
    };
    build_binaries();
    let url = common::testing::fresh_mysql(&server).await;
    let db = database_name(&url);
    let user = format!("u_{}", &db[db.len() - 12..]);
    let mut admin = sqlx::MySqlConnection::connect(&server).await.unwrap();
    let run = async |admin: &mut sqlx::MySqlConnection, sql: String| {
        admin.execute(sqlx::AssertSqlSafe(sql)).await.unwrap();
    };
    run(&mut admin, format!("CREATE USER '{user}'@'%'")).await;
    run(
        &mut admin,
        format!("GRANT ALL PRIVILEGES ON {db}.* TO '{user}'@'%'"),
    )
    .await;
    let as_user = url.replacen("root@", &format!("{user}@"), 1);
    assert_ne!(
        as_user, url,
        "TEST_MYSQL_URL is expected to log in as root@"
    );

    // Running, migrated, ready.
    let addr = free_addr();
    let env = audit_env(addr, &as_user);
    let mut procs = Processes::default();
    procs.0.push(spawn("audit-service", &env));
    wait_listening(addr, "audit-service");
    audit_health_until(addr, ServingStatus::Serving).await;

    // Writes start failing: not ready.
    run(
        &mut admin,
        format!("REVOKE INSERT, UPDATE ON {db}.* FROM '{user}'@'%'"),
    )
    .await;
    kill_sessions(&mut admin, &user).await;
    audit_health_until(addr, ServingStatus::NotServing).await;
    run(
        &mut admin,
        format!("GRANT INSERT, UPDATE ON {db}.* TO '{user}'@'%'"),
    )
    .await;
    kill_sessions(&mut admin, &user).await;
    audit_health_until(addr, ServingStatus::Serving).await;

    // Without INSERT from the start: refused.
    terminate(&procs.0[0]);
    assert!(wait_exit(&mut procs.0[0], Duration::from_secs(20)).success());
    run(
        &mut admin,
        format!("REVOKE INSERT, UPDATE ON {db}.* FROM '{user}'@'%'"),
    )
    .await;
    let said = assert_refused(
        "audit-service",
        &env,
        "AUDIT_DATABASE_URL",
        &format!("127.0.0.1:3306/{db}"),
    );
    assert!(
        said.contains("cannot be written") && said.contains("INSERT"),
        "{said}"
    );
    run(&mut admin, format!("DROP USER '{user}'@'%'")).await;
}

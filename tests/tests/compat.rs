//! `COMPAT=django` as an operator sets it: in the environment of the real
//! binaries. A client written against the old Django service (register,
//! verify with the code alone, log in, refresh twice with the first refresh
//! token, read the log as a bare array with the old reason texts) works
//! unchanged; each service warns at start-up about what the switch turned
//! on; an explicitly set variable wins; an unknown value stops start-up
//! with one line. On SQLite and PostgreSQL.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    fs::File,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    sync::Once,
    time::Duration,
};

use serde_json::{Value, json};
use system_tests::{
    Backend,
    processes::{
        Processes, audit_service_env, auth_service_env, build_all_binaries, command, exit_within,
        free_addr, gateway_env, set, wait_listening,
    },
    smtp::extract_code,
};

fn build() {
    static BUILT: Once = Once::new();
    BUILT.call_once(build_all_binaries);
}

/// Starts binary `name` with exactly `env` (warnings and errors logged)
/// writing its log to `log`.
fn start(name: &str, env: &[(&'static str, String)], log: &Path) -> Child {
    let mut cmd = command(name);
    cmd.env("RUST_LOG", "warn")
        .stdout(File::create(log).unwrap())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"))
}

/// The three services as separate processes, their databases on `backend`.
struct Services {
    gateway: SocketAddr,
    /// auth-service's environment, for its operator commands.
    auth_env: Vec<(&'static str, String)>,
    mail_dir: PathBuf,
    dir: tempfile::TempDir,
    _processes: Processes,
}

impl Services {
    /// Starts them with `extra` in every service's environment; `None` only
    /// for PostgreSQL outside CI without `TEST_POSTGRES_URL`.
    async fn start(backend: Backend, extra: &[(&'static str, &str)]) -> Option<Self> {
        build();
        let dir = tempfile::tempdir().unwrap();
        let (audit, auth, gateway) = (free_addr(), free_addr(), free_addr());
        let mut audit_env = audit_service_env(audit, dir.path());
        let mut auth_env = auth_service_env(auth, audit, dir.path());
        if backend == Backend::Postgres {
            let server = common::testing::server_url("TEST_POSTGRES_URL")?;
            let auth_db = common::testing::fresh_postgres(&server).await;
            let audit_db = common::testing::fresh_postgres(&server).await;
            auth_env = set(auth_env, "AUTH_DATABASE_URL", auth_db);
            audit_env = set(audit_env, "AUDIT_DATABASE_URL", audit_db);
        }
        let mut gateway_env = gateway_env(gateway, auth, audit);
        for (name, value) in extra {
            audit_env = set(audit_env, name, *value);
            auth_env = set(auth_env, name, *value);
            gateway_env = set(gateway_env, name, *value);
        }
        let mut processes = Processes::default();
        let log = |name: &str| dir.path().join(format!("{name}.log"));
        processes
            .0
            .push(start("audit-service", &audit_env, &log("audit-service")));
        wait_listening(audit, "audit-service");
        processes
            .0
            .push(start("auth-service", &auth_env, &log("auth-service")));
        wait_listening(auth, "auth-service");
        processes
            .0
            .push(start("gateway", &gateway_env, &log("gateway")));
        wait_listening(gateway, "gateway");
        Some(Self {
            gateway,
            mail_dir: dir.path().join("mail"),
            auth_env,
            dir,
            _processes: processes,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gateway)
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap()
    }

    /// The code in the newest mail to `address` (files sort by time),
    /// once it is completely written.
    async fn newest_code(&self, address: &str) -> String {
        let mut last = String::new();
        for _ in 0..200 {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&self.mail_dir)
                .into_iter()
                .flatten()
                .map(|e| e.unwrap().path())
                .filter(|p| {
                    p.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .ends_with(&format!("_{address}.eml"))
                })
                .collect();
            files.sort();
            if let Some(newest) = files.last() {
                last = std::fs::read_to_string(newest).unwrap();
                if let Some(code) = extract_code(&last) {
                    return code;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "no code in mail for {address} in {}: {last:?}",
            self.mail_dir.display()
        );
    }

    /// `auth-service create-admin` as an operator runs it.
    fn create_admin(&self, username: &str, password: &str) {
        let mut cmd = command("auth-service");
        cmd.args([
            "create-admin",
            "--username",
            username,
            "--email",
            &format!("{username}@example.com"),
            "--password-stdin",
        ]);
        for (k, v) in &self.auth_env {
            cmd.env(k, v);
        }
        let out =
            system_tests::processes::output_within(&mut cmd, password, Duration::from_secs(30));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The old service's client: plain JSON requests, redirects followed.
struct OldClient {
    http: reqwest::Client,
}

impl OldClient {
    fn new() -> Self {
        Self {
            http: reqwest::Client::new(),
        }
    }

    async fn post(&self, services: &Services, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(services.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }

    async fn get(&self, services: &Services, path: &str, bearer: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(services.url(path))
            .bearer_auth(bearer)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }
}

/// The keys of a JSON object, sorted.
fn keys(body: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

async fn a_client_of_the_original_works_unchanged(backend: Backend) {
    let Some(services) = Services::start(backend, &[("COMPAT", "django")]).await else {
        return;
    };
    let client = OldClient::new();
    let (email, password) = ("old@example.com", "old-client-pass-1");

    let (status, body) = client
        .post(
            &services,
            "/api/accounts/register/",
            json!({"username": "old", "email": email, "password": password}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = client
        .post(
            &services,
            "/api/accounts/verification/code/",
            json!({"email": email}),
        )
        .await;
    assert_eq!((status, body), (200, json!({"status": "success"})));
    let code = services.newest_code(email).await;
    let wrong = if code == "000000" { "000001" } else { "000000" };
    // The original answered a failed check with 200 and the failure in
    // the body.
    let (status, body) = client
        .post(
            &services,
            "/api/accounts/verification/code/verify/",
            json!({"email": email, "code": wrong}),
        )
        .await;
    assert_eq!(
        (status, body),
        (200, json!({"status": "failed", "message": "code-wrong"}))
    );
    // The code alone verifies, as a number too.
    let (status, body) = client
        .post(
            &services,
            "/api/accounts/verification/code/verify/",
            json!({"email": email, "code": code.parse::<u32>().unwrap()}),
        )
        .await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"status": "success", "message": "user-activated"})
        )
    );

    let (status, pair) = client
        .post(
            &services,
            "/api/accounts/login/",
            json!({"username": "old", "password": password}),
        )
        .await;
    assert_eq!(status, 200, "{pair}");
    assert_eq!(keys(&pair), ["access", "refresh"]);
    for attempt in ["wrong-password-1", "ghost"] {
        let username = if attempt == "ghost" { "ghost" } else { "old" };
        let (status, _) = client
            .post(
                &services,
                "/api/accounts/login/",
                json!({"username": username, "password": attempt}),
            )
            .await;
        assert_eq!(status, 401);
    }
    // simplejwt's default: the same refresh token, again and again.
    for _ in 0..2 {
        let (status, body) = client
            .post(
                &services,
                "/api/accounts/login/refresh/",
                json!({"refresh": pair["refresh"]}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(keys(&body), ["access"]);
    }

    services.create_admin("boss", "boss-pass-1234");
    let (status, admin) = client
        .post(
            &services,
            "/api/accounts/login/",
            json!({"username": "boss", "password": "boss-pass-1234"}),
        )
        .await;
    assert_eq!(status, 200);
    let admin = admin["access"].as_str().unwrap();
    // The path as an old client may write it: redirected to the slash.
    let mut rows = Vec::new();
    for _ in 0..200 {
        let (status, body) = client
            .get(&services, "/api/accounts/logs/login/attemps", admin)
            .await;
        assert_eq!(status, 200, "{body}");
        rows = body.as_array().expect("a bare array").clone();
        if rows.len() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["email"].as_str().unwrap(),
                r["reject_reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (email, ""),
            (email, "Wrong password"),
            ("ghost", "User Not Exists"),
            ("boss@example.com", ""),
        ],
        "oldest first, the original's texts"
    );
    let (status, body) = client
        .get(&services, "/api/accounts/logs/login/attemps/", "expired")
        .await;
    assert_eq!(status, 401);
    assert_eq!(body["messages"][0]["token_class"], "AccessToken");

    let auth_log = services.log("auth-service");
    let gateway_log = services.log("gateway");
    for (log, setting) in [
        (&auth_log, "JWT_ROTATE_REFRESH_TOKENS=false"),
        (&auth_log, "AUTH_VERIFY_WITHOUT_PASSWORD=true"),
        (&gateway_log, "LOG_LISTING_FORMAT=django"),
        (&gateway_log, "LOG_REASON_TEXT=django"),
        (&gateway_log, "VERIFY_FAILURE_STATUS=200"),
    ] {
        let warning = log
            .lines()
            .find(|l| l.contains("COMPAT turned on"))
            .unwrap_or_else(|| panic!("no COMPAT warning in:\n{log}"));
        assert!(warning.contains("WARN"), "{warning}");
        assert!(warning.contains(setting), "{setting} not in {warning}");
    }
}

async fn an_explicit_setting_wins_over_compat(backend: Backend) {
    let Some(services) = Services::start(
        backend,
        &[
            ("COMPAT", "django"),
            ("JWT_ROTATE_REFRESH_TOKENS", "true"),
            ("VERIFY_FAILURE_STATUS", "400"),
        ],
    )
    .await
    else {
        return;
    };
    let client = OldClient::new();
    services.create_admin("chief", "chief-pass-1234");
    let (_, pair) = client
        .post(
            &services,
            "/api/accounts/login/",
            json!({"username": "chief", "password": "chief-pass-1234"}),
        )
        .await;
    let (status, body) = client
        .post(
            &services,
            "/api/accounts/login/refresh/",
            json!({"refresh": pair["refresh"]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(keys(&body), ["access", "refresh"], "rotation kept on");
    // The explicit 400 wins; code-only verification, which COMPAT still
    // set, is why this is a failed check and not a field error naming
    // `password`.
    let (status, failed) = client
        .post(
            &services,
            "/api/accounts/verification/code/verify/",
            json!({"email": "nobody@example.com", "code": "123456"}),
        )
        .await;
    assert_eq!(
        (status, failed),
        (400, json!({"status": "failed", "message": "code-wrong"}))
    );
    // And the log is an array.
    let (status, body) = client
        .get(
            &services,
            "/api/accounts/logs/login/attemps/",
            body["access"].as_str().unwrap(),
        )
        .await;
    assert_eq!(status, 200);
    assert!(body.is_array(), "{body}");
    let auth_log = services.log("auth-service");
    assert!(
        !auth_log.contains("JWT_ROTATE_REFRESH_TOKENS"),
        "{auth_log}"
    );
    assert!(
        auth_log.contains("AUTH_VERIFY_WITHOUT_PASSWORD=true"),
        "{auth_log}"
    );
}

mod a_client_of_the_original_works_unchanged {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::a_client_of_the_original_works_unchanged(system_tests::Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::a_client_of_the_original_works_unchanged(system_tests::Backend::Postgres).await;
    }
}

mod an_explicit_setting_wins_over_compat {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::an_explicit_setting_wins_over_compat(system_tests::Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::an_explicit_setting_wins_over_compat(system_tests::Backend::Postgres).await;
    }
}

#[test]
fn an_unknown_compat_value_stops_start_up_with_one_line() {
    build();
    let dir = tempfile::tempdir().unwrap();
    let (audit, auth, gateway) = (free_addr(), free_addr(), free_addr());
    for (name, env) in [
        ("auth-service", auth_service_env(auth, audit, dir.path())),
        ("gateway", gateway_env(gateway, auth, audit)),
        (
            "all-in-one",
            set(
                set(
                    set(
                        gateway_env(gateway, auth, audit),
                        "AUTH_GRPC_ADDR",
                        auth.to_string(),
                    ),
                    "AUDIT_GRPC_ADDR",
                    audit.to_string(),
                ),
                "AUTH_DATABASE_URL",
                format!("sqlite://{}", dir.path().join("auth.db").display()),
            ),
        ),
    ] {
        let env = set(env, "COMPAT", "djnago");
        let (status, printed) = exit_within(name, &env, Duration::from_secs(30));
        assert_eq!(status.code(), Some(2), "{name}: {printed}");
        let expected = format!(
            "{name}: invalid configuration: COMPAT=\"djnago\": expected django, or off (the default) for none"
        );
        let lines: Vec<&str> = printed.lines().collect();
        assert_eq!(lines, [expected.as_str()], "{name}");
    }
    assert!(
        !dir.path().join("auth.db").exists(),
        "refused before opening anything"
    );
}

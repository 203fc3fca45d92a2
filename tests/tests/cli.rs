//! What a newcomer and an operator meet at the command line, through the
//! real binaries: `--help` and `--version` answer without touching
//! anything; invalid configuration exits 2 naming the variable, a failure
//! to start exits 1 naming the address or server, each cause printed once
//! (even with `RUST_LOG=off`) and never a password; `.env` is read and the
//! real environment wins; all-in-one follows its listen addresses; the
//! operator commands refuse a missing database and promote an account.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    net::TcpListener,
    path::Path,
    process::{Output, Stdio},
    sync::Once,
    time::{Duration, Instant},
};

use system_tests::processes::{
    Processes, build_all_binaries, command, free_addr, output_within, wait_listening,
};

/// Every binary of the workspace.
const BINARIES: [&str; 6] = [
    "all-in-one",
    "gateway",
    "audit-service",
    "auth-service",
    "audit-bench",
    "loadtest",
];
/// The binaries that serve.
const SERVICES: [&str; 4] = ["all-in-one", "gateway", "audit-service", "auth-service"];
/// A password that must never be printed.
const PASSWORD: &str = "hunter2-Secret";

fn build() {
    static BUILT: Once = Once::new();
    BUILT.call_once(build_all_binaries);
}

/// Runs `bin` with `args`, exactly `env`, in `dir`, feeding it `stdin`.
fn run_in(dir: &Path, bin: &str, args: &[&str], env: &[(&str, String)], stdin: &str) -> Output {
    let mut cmd = command(bin);
    cmd.current_dir(dir).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    output_within(&mut cmd, stdin, Duration::from_secs(30))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Names of the entries in `dir`.
fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// What every serving binary needs to start in `dir` without colliding
/// with anything else on the machine: free ports, metrics off, SQLite files
/// and mail under `dir`.
fn quiet_env(dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("GATEWAY_ADDR", free_addr().to_string()),
        ("AUTH_GRPC_ADDR", free_addr().to_string()),
        ("AUDIT_GRPC_ADDR", free_addr().to_string()),
        ("GATEWAY_METRICS_ADDR", "off".to_owned()),
        ("AUTH_METRICS_ADDR", "off".to_owned()),
        ("AUDIT_METRICS_ADDR", "off".to_owned()),
        (
            "AUTH_DATABASE_URL",
            format!("sqlite://{}", dir.join("auth.db").display()),
        ),
        (
            "AUDIT_DATABASE_URL",
            format!("sqlite://{}", dir.join("audit.db").display()),
        ),
        ("MAIL_DIR", dir.join("mail").display().to_string()),
    ]
}

/// `env` with `name` set to `value` (replacing any earlier value).
fn with(
    mut env: Vec<(&'static str, String)>,
    name: &'static str,
    value: &str,
) -> Vec<(&'static str, String)> {
    env.retain(|(k, _)| *k != name);
    env.push((name, value.to_owned()));
    env
}

#[test]
fn every_binary_answers_help_and_version_without_touching_anything() {
    build();
    for bin in BINARIES {
        let dir = tempfile::tempdir().unwrap();
        let help = run_in(dir.path(), bin, &["--help"], &[], "");
        assert!(help.status.success(), "{bin} --help: {}", stderr(&help));
        assert!(stdout(&help).contains("Usage:"), "{bin}: {}", stdout(&help));

        let version = run_in(dir.path(), bin, &["--version"], &[], "");
        assert!(
            version.status.success(),
            "{bin} --version: {}",
            stderr(&version)
        );
        assert!(
            stdout(&version).starts_with(&format!("{bin} ")),
            "{bin}: {}",
            stdout(&version)
        );
        assert_eq!(
            entries(dir.path()),
            Vec::<String>::new(),
            "{bin} created files"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let help = run_in(
        dir.path(),
        "auth-service",
        &["create-admin", "--help"],
        &[],
        "",
    );
    assert!(stdout(&help).contains("--promote"), "{}", stdout(&help));
}

#[test]
fn an_unknown_database_scheme_exits_2_naming_the_variable_without_the_password() {
    build();
    for (bin, var) in [
        ("auth-service", "AUTH_DATABASE_URL"),
        ("audit-service", "AUDIT_DATABASE_URL"),
        ("all-in-one", "AUTH_DATABASE_URL"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let env = with(
            quiet_env(dir.path()),
            var,
            &format!("foo://admin:{PASSWORD}@db.example/x"),
        );
        let out = run_in(dir.path(), bin, &[], &env, "");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{bin}: {err}");
        assert!(
            err.contains(var) && err.contains("foo://admin:***@db.example"),
            "{bin}: {err}"
        );
        assert!(!err.contains(PASSWORD), "{bin} printed the password: {err}");
        assert_eq!(err.lines().count(), 1, "{bin}: {err}");
        assert_eq!(
            entries(dir.path()),
            Vec::<String>::new(),
            "{bin} created files"
        );
    }
}

#[test]
fn an_unusable_smtp_url_exits_2_naming_it_without_the_password() {
    build();
    let dir = tempfile::tempdir().unwrap();
    let env = with(
        quiet_env(dir.path()),
        "SMTP_URL",
        &format!("foo://mailer:{PASSWORD}@mail.example"),
    );
    let out = run_in(dir.path(), "auth-service", &[], &env, "");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("SMTP_URL") && err.contains("mailer:***@"),
        "{err}"
    );
    assert!(!err.contains(PASSWORD), "printed the password: {err}");
}

#[test]
fn an_unreachable_database_server_fails_within_seconds_naming_variable_and_host() {
    build();
    // A port nothing listens on: every connection is refused.
    let closed = free_addr();
    let url = format!("postgres://postgres:{PASSWORD}@{closed}/auth");
    let runs: Vec<_> = [
        ("auth-service", "AUTH_DATABASE_URL"),
        ("audit-service", "AUDIT_DATABASE_URL"),
    ]
    .into_iter()
    .map(|(bin, var)| {
        let url = url.clone();
        std::thread::spawn(move || {
            let dir = tempfile::tempdir().unwrap();
            let env = with(quiet_env(dir.path()), var, &url);
            let start = Instant::now();
            let out = run_in(dir.path(), bin, &[], &env, "");
            (bin, var, out, start.elapsed())
        })
    })
    .collect();
    for run in runs {
        let (bin, var, out, took) = run.join().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{bin}: {err}");
        assert!(took < Duration::from_secs(15), "{bin} took {took:?}");
        assert!(
            err.contains(var) && err.contains(&closed.to_string()),
            "{bin}: {err}"
        );
        assert_eq!(err.matches("Connection refused").count(), 1, "{bin}: {err}");
        assert!(!err.contains(PASSWORD), "{bin} printed the password: {err}");
    }
}

#[test]
fn a_refused_login_is_reported_once_without_the_servers_line_number() {
    build();
    let Some(server) = common::testing::server_url("TEST_POSTGRES_URL") else {
        return;
    };
    let host = common::config::url_host_port(&server).unwrap();
    let url = format!("postgres://no_such_role_cli:{PASSWORD}@{host}/postgres");
    for (bin, var) in [
        ("auth-service", "AUTH_DATABASE_URL"),
        ("audit-service", "AUDIT_DATABASE_URL"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = run_in(
            dir.path(),
            bin,
            &[],
            &with(quiet_env(dir.path()), var, &url),
            "",
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{bin}: {err}");
        assert!(err.contains(var) && err.contains(&host), "{bin}: {err}");
        assert_eq!(
            err.matches("role \"no_such_role_cli\" does not exist")
                .count(),
            1,
            "{bin}: {err}"
        );
        assert!(!err.contains(" at line "), "{bin}: {err}");
        assert!(!err.contains(PASSWORD), "{bin} printed the password: {err}");
    }
}

/// Runs each service with its listen address taken, with `RUST_LOG` set to
/// `rust_log` when given; each must exit 1 naming the variable and address
/// and saying why once.
fn busy_address_is_named(rust_log: Option<&str>) {
    build();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    for (bin, var) in [
        ("auth-service", "AUTH_GRPC_ADDR"),
        ("audit-service", "AUDIT_GRPC_ADDR"),
        ("gateway", "GATEWAY_ADDR"),
        ("all-in-one", "GATEWAY_ADDR"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut env = with(quiet_env(dir.path()), var, &addr);
        if let Some(filter) = rust_log {
            env.push(("RUST_LOG", filter.to_owned()));
        }
        let out = run_in(dir.path(), bin, &[], &env, "");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{bin}: {err}");
        assert!(err.contains(&format!("{var}={addr}")), "{bin}: {err}");
        assert_eq!(
            err.matches("Address already in use").count(),
            1,
            "{bin}: {err}"
        );
    }
}

#[test]
fn a_listen_address_in_use_is_named_with_its_variable() {
    busy_address_is_named(None);
}

#[test]
fn rust_log_off_does_not_hide_the_fatal_error() {
    busy_address_is_named(Some("off"));
}

#[test]
fn text_logs_carry_no_colour_codes_off_a_terminal() {
    build();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Logs while starting its first two services, then fails on the third.
    let env = with(
        quiet_env(dir.path()),
        "GATEWAY_ADDR",
        &taken.local_addr().unwrap().to_string(),
    );
    let out = run_in(dir.path(), "all-in-one", &[], &env, "");
    let logs = stdout(&out);
    assert!(logs.contains("INFO"), "no log lines: {logs}");
    assert!(
        !logs.contains('\u{1b}'),
        "ANSI codes in piped logs: {logs:?}"
    );
}

#[test]
fn a_malformed_rust_log_is_refused_as_configuration() {
    build();
    for bin in SERVICES {
        let dir = tempfile::tempdir().unwrap();
        let env = with(quiet_env(dir.path()), "RUST_LOG", "[[[bad");
        let out = run_in(dir.path(), bin, &[], &env, "");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{bin}: {err}");
        assert!(err.contains("RUST_LOG"), "{bin}: {err}");
        assert_eq!(
            entries(dir.path()),
            Vec::<String>::new(),
            "{bin} created files"
        );
    }
}

#[test]
fn a_listen_address_may_be_a_host_name() {
    build();
    let dir = tempfile::tempdir().unwrap();
    let port = free_addr().port();
    let env = with(
        quiet_env(dir.path()),
        "GATEWAY_ADDR",
        &format!("localhost:{port}"),
    );
    let mut cmd = command("gateway");
    cmd.current_dir(dir.path()).envs(env).stdout(Stdio::null());
    let mut children = Processes::default();
    children.0.push(cmd.spawn().unwrap());
    wait_listening(([127, 0, 0, 1], port).into(), "gateway on localhost");
}

#[test]
fn dot_env_in_the_working_directory_is_read_and_the_real_environment_wins() {
    build();
    for (bin, var) in [
        ("auth-service", "AUTH_DATABASE_URL"),
        ("audit-service", "AUDIT_DATABASE_URL"),
        ("all-in-one", "AUDIT_DATABASE_URL"),
        ("gateway", "AUTH_GRPC_URL"),
        ("audit-bench", "BENCH_ROWS"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(".env"),
            format!("# comment\n{var}=from-dotenv://x\n"),
        )
        .unwrap();

        let out = run_in(dir.path(), bin, &[], &[], "");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{bin}: {err}");
        assert!(
            err.contains(var) && err.contains("from-dotenv://x"),
            "{bin}: {err}"
        );

        let out = run_in(
            dir.path(),
            bin,
            &[],
            &[(var, "from-env://y".to_owned())],
            "",
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{bin}: {err}");
        assert!(
            err.contains("from-env://y") && !err.contains("from-dotenv"),
            "{bin}: {err}"
        );
    }
}

#[test]
fn a_malformed_dot_env_is_refused_naming_the_file_not_the_value() {
    build();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        format!("SMTP_URL=\"smtp://u:{PASSWORD}@h\n"),
    )
    .unwrap();
    for bin in SERVICES {
        let out = run_in(dir.path(), bin, &[], &[], "");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{bin}: {err}");
        assert!(
            err.contains(".env") && err.contains("SMTP_URL"),
            "{bin}: {err}"
        );
        assert!(!err.contains(PASSWORD), "{bin} printed the password: {err}");
    }
}

#[tokio::test]
async fn all_in_one_follows_a_changed_auth_grpc_addr_end_to_end() {
    build();
    let dir = tempfile::tempdir().unwrap();
    // Every port moved off its default: the in-process URLs must follow.
    let env = quiet_env(dir.path());
    let gateway_addr = env
        .iter()
        .find(|(k, _)| *k == "GATEWAY_ADDR")
        .unwrap()
        .1
        .clone();
    let mut cmd = command("all-in-one");
    cmd.current_dir(dir.path())
        .envs(env.clone())
        .stdout(Stdio::null());
    let mut children = Processes::default();
    children.0.push(cmd.spawn().unwrap());
    wait_listening(gateway_addr.parse().unwrap(), "all-in-one");

    // The operator command, from another folder, on the same database.
    let elsewhere = tempfile::tempdir().unwrap();
    let auth_db = env
        .iter()
        .find(|(k, _)| *k == "AUTH_DATABASE_URL")
        .unwrap()
        .1
        .clone();
    let out = run_in(
        elsewhere.path(),
        "auth-service",
        &[
            "create-admin",
            "--username",
            "root",
            "--email",
            "root@example.com",
            "--password-stdin",
        ],
        &[("AUTH_DATABASE_URL", auth_db)],
        "root-pass-123\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let http = reqwest::Client::new();
    let api = format!("http://{gateway_addr}/api/accounts");
    let login: serde_json::Value = http
        .post(format!("{api}/login/"))
        .json(&serde_json::json!({"username": "root", "password": "root-pass-123"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = login["access"]
        .as_str()
        .unwrap_or_else(|| panic!("{login}"));

    // The attempt travels auth-service -> audit-service and is read back
    // gateway -> audit-service.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let page: serde_json::Value = http
            .get(format!("{api}/logs/login/attemps/"))
            .bearer_auth(access)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if page["results"].as_array().is_some_and(|r| !r.is_empty()) {
            assert_eq!(page["results"][0]["email"], "root@example.com", "{page}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the login never reached the log: {page}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn operator_commands_refuse_a_missing_database_and_create_nothing() {
    build();
    let dir = tempfile::tempdir().unwrap();
    // The default URL, sqlite://data/auth.db, is relative to the working directory.
    let expected = dir.path().canonicalize().unwrap().join("data/auth.db");
    for (args, stdin) in [
        (vec!["unlock", "--username", "alice"], ""),
        (vec!["rotate-keys"], ""),
        (
            vec![
                "create-admin",
                "--username",
                "a",
                "--email",
                "a@example.com",
                "--password-stdin",
            ],
            "admin-pass-123",
        ),
        (vec!["create-admin", "--promote", "--username", "alice"], ""),
        (vec!["name-collisions"], ""),
        (vec!["user", "list"], ""),
        (vec!["user", "deactivate", "alice"], ""),
    ] {
        let out = run_in(dir.path(), "auth-service", &args, &[], stdin);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("AUTH_DATABASE_URL") && err.contains(&expected.display().to_string()),
            "{args:?}: {err}"
        );
        assert_eq!(
            entries(dir.path()),
            Vec::<String>::new(),
            "{args:?} created files"
        );
    }
}

#[tokio::test]
async fn create_admin_promotes_an_existing_account_on_request() {
    build();
    use auth_service::store::{AuthStore as _, NewUser, SqliteStore};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("auth.db").display());
    let store = SqliteStore::connect(&url).await.unwrap();
    store
        .create_user(NewUser {
            username: "Bob",
            username_lower: "bob",
            email: "bob@example.com",
            email_lower: "bob@example.com",
            password_hash: "not-a-real-hash",
            is_active: true,
            is_staff: false,
            now: 1_700_000_000,
        })
        .await
        .unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let env = [("AUTH_DATABASE_URL", url.clone())];

    let out = run_in(
        elsewhere.path(),
        "auth-service",
        &[
            "create-admin",
            "--username",
            "bob",
            "--email",
            "b2@example.com",
            "--password-stdin",
        ],
        &env,
        "admin-pass-123",
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--promote --username bob"),
        "{}",
        stderr(&out)
    );
    let bob = store.user_by_login("bob").await.unwrap().unwrap();
    assert!(!bob.is_staff);

    let out = run_in(
        elsewhere.path(),
        "auth-service",
        &["create-admin", "--promote", "--username", "bob@example.com"],
        &env,
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("promoted Bob"), "{}", stdout(&out));
    let bob = store.user_by_login("bob").await.unwrap().unwrap();
    assert!(bob.is_staff && bob.is_active);
    assert_eq!(bob.password_hash, "not-a-real-hash");

    // The promotion, and an unlock, are operator events on their way to
    // the audit log (the refused create-admin above is none).
    let out = run_in(
        elsewhere.path(),
        "auth-service",
        &["unlock", "--username", "bob"],
        &env,
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let kinds: Vec<String> = sqlx::query_scalar("SELECT kind FROM attempt_outbox ORDER BY seq")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(kinds, ["admin_event", "admin_event"]);
}

#[tokio::test]
async fn name_collisions_lists_accounts_that_kept_their_old_names() {
    build();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("auth.db").display());
    // Migrated, but not yet started: rows inserted as the code before
    // issue #14 did (keys lower-cased, no claimed names).
    drop(
        auth_service::store::SqliteStore::connect(&url)
            .await
            .unwrap(),
    );
    let env = [("AUTH_DATABASE_URL", url.clone())];
    let out = run_in(dir.path(), "auth-service", &["name-collisions"], &env, "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("no name collisions"),
        "{}",
        stdout(&out)
    );

    // The run above finished the (empty) data migration; mark it pending
    // again and add rows as the code before issue #14 wrote them.
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("UPDATE data_migrations SET done_at = NULL")
        .execute(&pool)
        .await
        .unwrap();
    for (username, email) in [
        ("admin", "admin@example.com"),
        ("ａｄｍｉｎ", "wide@example.com"),
    ] {
        sqlx::query(
            "INSERT INTO users (username, username_lower, email, email_lower, password_hash, created_at)
             VALUES ($1, $2, $3, $3, 'x', 1)",
        )
        .bind(username)
        .bind(username.to_lowercase())
        .bind(email)
        .execute(&pool)
        .await
        .unwrap();
    }
    for _ in 0..2 {
        let out = run_in(dir.path(), "auth-service", &["name-collisions"], &env, "");
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        // Log lines go to stdout too; the listing is its own lines.
        let listed: Vec<String> = stdout(&out)
            .lines()
            .filter(|l| l.starts_with("user "))
            .map(str::to_owned)
            .collect();
        assert_eq!(
            listed,
            [
                "user 2 (ａｄｍｉｎ <wide@example.com>): its username collides with user 1 (admin <admin@example.com>)"
            ]
        );
        assert!(
            stderr(&out).contains("1 name collision(s)"),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn an_unknown_jwt_algorithm_is_refused_as_configuration() {
    build();
    for bin in ["auth-service", "all-in-one"] {
        for bad in ["HS256", "none", "ES384", "ЕS256"] {
            let dir = tempfile::tempdir().unwrap();
            let env = with(quiet_env(dir.path()), "JWT_ALGORITHM", bad);
            let out = run_in(dir.path(), bin, &[], &env, "");
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{bin} {bad}: {err}");
            assert!(
                err.contains("JWT_ALGORITHM") && err.contains("expected EdDSA, ES256 or RS256"),
                "{bin} {bad}: {err}"
            );
            assert_eq!(
                entries(dir.path()),
                Vec::<String>::new(),
                "{bin} created files"
            );
        }
    }
}

#[tokio::test]
async fn rotate_keys_adds_a_key_of_the_configured_algorithm() {
    build();
    use auth_service::{
        store::{AuthStore as _, SqliteStore},
        tokens::{KeyAlgorithm, ensure_signing_key},
    };
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("auth.db").display());
    let store = SqliteStore::connect(&url).await.unwrap();
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    let first = ensure_signing_key(&store, KeyAlgorithm::EdDsa, Duration::ZERO, now)
        .await
        .unwrap();

    let env = [
        ("AUTH_DATABASE_URL", url.clone()),
        ("JWT_ALGORITHM", "rs256".to_owned()),
    ];
    let out = run_in(dir.path(), "auth-service", &["rotate-keys"], &env, "");
    assert!(out.status.success(), "{}", stderr(&out));

    let keys = store.signing_keys().await.unwrap();
    assert_eq!(keys.len(), 2);
    let added = &keys[0];
    assert_eq!(added.alg, KeyAlgorithm::Rs256);
    assert!(
        stdout(&out).contains(&format!("added RS256 signing key {}", added.kid)),
        "{}",
        stdout(&out)
    );
    // Scheduled after the default publish delay; the EdDSA key stays.
    assert!(
        added.not_before >= now + 600,
        "{} vs {now}",
        added.not_before
    );
    assert_eq!(keys[1].kid, first[0].kid);
    assert_eq!(added.supersedes.as_deref(), Some(first[0].kid.as_str()));
}

/// `auth-service user …` on a database of `root` (admin), `bob` and `carl`
/// (unverified); returns the folder, the URL and a store on it.
async fn user_database() -> (tempfile::TempDir, String, auth_service::store::SqliteStore) {
    use auth_service::store::{AuthStore as _, NewUser, SqliteStore};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("auth.db").display());
    let store = SqliteStore::connect(&url).await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for (name, is_active, is_staff) in [
        ("root", true, true),
        ("bob", true, false),
        ("carl", false, false),
    ] {
        let email = format!("{name}@example.com");
        store
            .create_user(NewUser {
                username: name,
                username_lower: name,
                email: &email,
                email_lower: &email,
                password_hash: "not-a-real-hash",
                is_active,
                is_staff,
                now,
            })
            .await
            .unwrap();
    }
    (dir, url, store)
}

#[tokio::test]
async fn the_user_commands_administer_accounts_under_the_last_admin_rule() {
    build();
    use auth_service::store::AuthStore as _;
    let (dir, url, store) = user_database().await;
    let env = [
        ("AUTH_DATABASE_URL", url.clone()),
        ("MAIL_DIR", dir.path().join("mail").display().to_string()),
        ("USER", "ops".to_owned()),
    ];
    let elsewhere = tempfile::tempdir().unwrap();
    let user = |args: &[&str]| {
        let mut all = vec!["user"];
        all.extend(args);
        run_in(elsewhere.path(), "auth-service", &all, &env, "")
    };
    let id = |name: &str| {
        let store = store.clone();
        let name = name.to_owned();
        async move { store.user_by_login(&name).await.unwrap().unwrap().id }
    };
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    // Log lines share stdout with the answer; the answer is the rest.
    let answer = |out: &Output| -> Vec<String> {
        stdout(out)
            .lines()
            .filter(|l| !l.contains(" INFO ") && !l.contains(" WARN "))
            .map(str::to_owned)
            .collect()
    };

    // A table, newest first, filtered.
    let out = user(&["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = answer(&out);
    assert!(lines[0].starts_with("ID  USERNAME  EMAIL"), "{lines:?}");
    let names: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(names, ["carl", "bob", "root"]);
    let out = user(&["list", "--query", "BO", "--active", "true"]);
    assert_eq!(answer(&out).len(), 2, "{}", stdout(&out));
    assert!(answer(&out)[1].contains("bob@example.com"));
    let out = user(&["list", "--limit", "2"]);
    assert!(
        answer(&out)
            .last()
            .unwrap()
            .starts_with("more: run again with --cursor "),
        "{}",
        stdout(&out)
    );
    let out = user(&["list", "--query", "nobody-here"]);
    assert_eq!(answer(&out), ["no accounts match"]);
    let out = user(&["list", "--limit", "501"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--limit"), "{}", stderr(&out));

    // One account.
    let out = user(&["show", "bob@example.com"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = answer(&out).join("\n");
    for expected in [
        "bob <bob@example.com>",
        "active:          yes",
        "administrator:   no",
        "active sessions: 0",
    ] {
        assert!(text.contains(expected), "{expected}: {text}");
    }

    // The last admin stays: refused, exit 1, nothing changed.
    for args in [
        &["deactivate", "root"][..],
        &["revoke-admin", "root"],
        &["delete", "root", "--yes"],
    ] {
        let out = user(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stdout(&out));
        assert!(
            stderr(&out).contains("root is the last active administrator"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let root = store
        .account_detail(id("root").await, now())
        .await
        .unwrap()
        .unwrap();
    assert!(root.account.is_active && root.account.is_staff);

    // With bob an admin, root may step down; then bob is the last.
    let out = user(&["grant-admin", "bob"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(answer(&out)[0].starts_with("bob (id "), "{}", stdout(&out));
    assert!(
        stdout(&out).contains(r#"action="grant_admin" actor="ops""#),
        "{}",
        stdout(&out)
    );
    let out = user(&["revoke-admin", "--id", &id("root").await.to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = user(&["deactivate", "bob"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));

    // Deactivating ends sessions; an unverified account is not activated.
    let out = user(&["deactivate", "root"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        answer(&out)[0].contains("0 session(s) ended"),
        "{}",
        stdout(&out)
    );
    let root = store
        .account_detail(id("root").await, now())
        .await
        .unwrap()
        .unwrap();
    assert!(!root.account.is_active);
    let out = user(&["activate", "carl"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("carl has not verified its email"),
        "{}",
        stderr(&out)
    );
    let out = user(&["activate", "root"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // A verification code, to the mail folder.
    let out = user(&["resend-verification", "carl"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        answer(&out)[0].starts_with("mailed a verification code to carl"),
        "{}",
        stdout(&out)
    );
    let mails: Vec<String> = std::fs::read_dir(dir.path().join("mail"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert!(
        mails
            .iter()
            .any(|m| m.contains("carl@example.com") && m.contains("code is: ")),
        "{mails:?}"
    );
    let out = user(&["resend-verification", "carl"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("one code a minute"),
        "{}",
        stderr(&out)
    );
    let out = user(&["resend-verification", "bob"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("verified its email already"),
        "{}",
        stderr(&out)
    );

    // Unlock and log out answer with what they cleared.
    let out = user(&["unlock", "bob"]);
    assert!(
        answer(&out)[0].contains("0 counter(s) cleared"),
        "{}",
        stdout(&out)
    );
    let out = user(&["logout", "bob"]);
    assert!(
        answer(&out)[0].contains("0 session(s) ended"),
        "{}",
        stdout(&out)
    );

    // Deleting asks for --yes; then says the attempts stay.
    let carl = id("carl").await;
    let out = user(&["delete", "carl"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("without --yes"), "{}", stderr(&out));
    assert!(store.account_detail(carl, now()).await.unwrap().is_some());
    let out = user(&["delete", "carl", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        answer(&out)[0].contains("its login attempts stay in the audit log"),
        "{}",
        stdout(&out)
    );
    assert!(store.account_detail(carl, now()).await.unwrap().is_none());

    // Names that match nothing.
    for args in [
        &["show", "carl"][..],
        &["show", "саrl"],
        &["show", "--id", "0"],
    ] {
        let out = user(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
    }
    let out = user(&["show"]);
    assert_eq!(out.status.code(), Some(2), "clap refuses a missing account");
}

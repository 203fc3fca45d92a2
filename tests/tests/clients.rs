//! Outside clients against the real binaries, as a newcomer or an operator
//! would use them: clients generated from the OpenAPI document, gRPC
//! reflection through `deploy/grpc_call.py` (grpcio from PyPI, not our
//! code), and the README's own commands and documented answers.
//!
//! The tools come from PyPI (`.ci/run` installs them); without them a test
//! fails in CI and says what to install elsewhere (`system_tests::tools`).

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::{Value, json};
use system_tests::{processes::RealSystem, tools};

/// The repository root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A virtualenv in `dir` that sees the machine's packages (the generators'
/// own dependencies: httpx, attrs, pydantic), with `project` installed.
fn venv_with(dir: &Path, project: &Path) -> PathBuf {
    let python3 = tools::program("python3", "apt-get install python3").unwrap();
    tools::run_ok(
        &python3,
        &["-m", "venv", "--system-site-packages", "venv"],
        dir,
    );
    let python = dir.join("venv/bin/python");
    tools::run_ok(
        &python,
        &["-m", "pip", "install", "-q", project.to_str().unwrap()],
        dir,
    );
    python
}

/// The document as the running gateway serves it, saved in `dir`.
async fn save_document(sys: &RealSystem, dir: &Path) -> PathBuf {
    let doc = reqwest::get(format!("{}/api/openapi.json", sys.base()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let path = dir.join("openapi.json");
    std::fs::write(&path, doc).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_generated_by_openapi_python_client_registers_verifies_and_logs_in() {
    let Some(generator) =
        tools::program("openapi-python-client", "pip install openapi-python-client")
    else {
        return;
    };
    let sys = RealSystem::start();
    let work = tempfile::tempdir().unwrap();
    let doc = save_document(&sys, work.path()).await;
    std::fs::write(
        work.path().join("config.yaml"),
        "package_name_override: authgw\nproject_name_override: authgw-client\n",
    )
    .unwrap();

    let generated = tools::run_ok(
        &generator,
        &[
            "generate",
            "--path",
            doc.to_str().unwrap(),
            "--config",
            "config.yaml",
            "--meta",
            "setup",
            "--output-path",
            "client",
        ],
        work.path(),
    );
    // It reports what it could not generate as warnings, exit status 0.
    let said = String::from_utf8_lossy(&generated.stdout).into_owned()
        + &String::from_utf8_lossy(&generated.stderr);
    assert!(!said.to_lowercase().contains("warning"), "{said}");
    let python = venv_with(work.path(), &work.path().join("client"));
    let flow = repo().join("tests/python/openapi_client_flow.py");
    let out = tools::run_ok(
        &python,
        &[
            flow.to_str().unwrap(),
            &sys.base(),
            sys.mail_dir.to_str().unwrap(),
        ],
        work.path(),
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("flow: ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_generated_by_openapi_generator_registers_and_is_refused_as_documented() {
    let Some(generator) =
        tools::program("openapi-generator-cli", "pip install openapi-generator-cli")
    else {
        return;
    };
    if tools::program("java", "apt-get install default-jre-headless").is_none() {
        return;
    }
    let sys = RealSystem::start();
    let work = tempfile::tempdir().unwrap();
    let doc = save_document(&sys, work.path()).await;

    tools::run_ok(
        &generator,
        &[
            "generate",
            "-i",
            doc.to_str().unwrap(),
            "-g",
            "python",
            "-o",
            "client",
            "--package-name",
            "authgw_gen",
        ],
        work.path(),
    );
    let python = venv_with(work.path(), &work.path().join("client"));
    let flow = repo().join("tests/python/openapi_generator_flow.py");
    let out = tools::run_ok(&python, &[flow.to_str().unwrap(), &sys.base()], work.path());
    assert!(String::from_utf8_lossy(&out.stdout).contains("flow: ok"));
}

/// `deploy/grpc_call.py args...`: (exit code, stdout, stderr).
fn grpc_call(args: &[&str]) -> (i32, String, String) {
    let out = Command::new("python3")
        .arg(repo().join("deploy/grpc_call.py"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const GRPC_MODULES: [&str; 2] = ["grpc", "grpc_reflection"];
const GRPC_INSTALL: &str = "pip install grpcio grpcio-reflection";

#[test]
fn each_grpc_port_advertises_only_the_services_it_serves() {
    if !tools::python_modules(&GRPC_MODULES, GRPC_INSTALL) {
        return;
    }
    let sys = RealSystem::start();
    let common = [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ];
    let auth: &[&str] = &["auth.v1.AdminService", "auth.v1.AuthService"];
    let audit: &[&str] = &["audit.v1.AuditService"];
    for (addr, own, other) in [(sys.auth, auth, audit), (sys.audit, audit, auth)] {
        let addr = addr.to_string();
        let (code, out, err) = grpc_call(&[&addr, "list"]);
        assert_eq!(code, 0, "{err}");
        let mut expected: Vec<&str> = common.to_vec();
        expected.extend(own);
        expected.sort_unstable();
        assert_eq!(out.lines().collect::<Vec<_>>(), expected, "{addr}");

        for own in own {
            let (code, out, err) = grpc_call(&[&addr, "describe", own]);
            assert_eq!(code, 0, "{err}");
            assert!(out.starts_with(&format!("service {own} {{")), "{out}");
        }
        // The other services are not even described: their files are not
        // served.
        for other in other {
            let (code, _, err) = grpc_call(&[&addr, "describe", other]);
            assert_eq!(code, 1, "{addr} describes {other}");
            assert!(err.contains("NOT_FOUND"), "{err}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_grpc_commands_introspect_a_token_and_list_attempts() {
    if !tools::python_modules(&GRPC_MODULES, GRPC_INSTALL) {
        return;
    }
    let sys = RealSystem::start();
    let http = reqwest::Client::new();
    // A token to introspect: an admin would do, but any account's will.
    let form = [
        ("username", "carol"),
        ("email", "carol@example.com"),
        ("password", "carol-pass-1234"),
    ];
    let url = |p: &str| format!("{}/api/accounts/{p}", sys.base());
    let status = http
        .post(url("register/"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 201);
    let failed = http
        .post(url("login/"))
        .form(&[("username", "carol"), ("password", "carol-pass-1234")])
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 401);

    let (auth, audit) = (sys.auth.to_string(), sys.audit.to_string());
    let (code, out, err) = grpc_call(&[
        "-d",
        r#"{"token":"not-a-token"}"#,
        &auth,
        "auth.v1.AuthService/IntrospectToken",
    ]);
    assert_eq!(code, 0, "{err}");
    let answer: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer.get("active"), None, "inactive is the default: {out}");

    // The attempt reaches the log through the outbox within a moment.
    let mut listed = Value::Null;
    for _ in 0..100 {
        let (code, out, err) = grpc_call(&[
            "-d",
            r#"{"limit":5,"filter":{"reason":"REJECT_REASON_INACTIVE"}}"#,
            &audit,
            "audit.v1.AuditService/ListAttempts",
        ]);
        assert_eq!(code, 0, "{err}");
        listed = serde_json::from_str(&out).unwrap();
        if listed["attempts"].as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let attempt = &listed["attempts"][0]["attempt"];
    assert_eq!(attempt["identifier"], "carol", "{listed}");
    assert_eq!(attempt["reason"], "REJECT_REASON_INACTIVE", "{listed}");

    let (code, out, _) = grpc_call(&[
        "-d",
        r#"{"service":"auth.v1.AuthService"}"#,
        &auth,
        "grpc.health.v1.Health/Check",
    ]);
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        json!({"status": "SERVING"})
    );
    // A service this port does not serve is a clear error, exit 1.
    let (code, _, err) = grpc_call(&[&auth, "audit.v1.AuditService/ListAttempts"]);
    assert_eq!(code, 1);
    assert!(err.contains("audit.v1.AuditService"), "{err}");
}

/// The README's walk-through block.
fn readme_walk_through() -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme.find("## Walk-through with curl").unwrap();
    let block = &readme[start..];
    let open = block.find("```sh\n").unwrap() + "```sh\n".len();
    let close = block[open..].find("```").unwrap();
    block[open..open + close].to_owned()
}

/// The lines of walk-through step `n` (from `# n.` to the next step).
fn readme_step(n: u32) -> String {
    let block = readme_walk_through();
    let from = block.find(&format!("\n# {n}. ")).unwrap();
    let to = block.find(&format!("\n# {}. ", n + 1)).unwrap();
    block[from..to].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_reads_the_newest_code_of_the_address_after_another_registration() {
    let sys = RealSystem::start();
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}/api/accounts/{p}", sys.base());
    for (user, email) in [("alice", "alice@example.com"), ("bob", "bob@example.com")] {
        let form = [
            ("username", user),
            ("email", email),
            ("password", "correct horse"),
            ("password2", "correct horse"),
        ];
        let made = http
            .post(url("register/"))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(made.status(), 201);
        let asked = http
            .post(url("verification/code/"))
            .form(&[("email", email)])
            .send()
            .await
            .unwrap();
        assert_eq!(asked.status(), 200);
    }

    // Step 3 as written, in a folder whose data/mail is auth-service's
    // MAIL_DIR; bob's mail is the newest of all.
    let step = readme_step(3);
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &step])
        .current_dir(sys.dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{step}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let code = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(code.len(), 6, "step 3 printed {code:?}");

    let verified = http
        .post(url("verification/code/verify/"))
        .form(&[
            ("email", "alice@example.com"),
            ("code", code.as_str()),
            ("password", "correct horse"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(verified.status(), 200);
    assert_eq!(
        verified.json::<Value>().await.unwrap(),
        json!({"status": "success", "message": "user-activated"})
    );
}

/// A documented exchange: path under `/api/accounts/`, form fields, status
/// and body.
type Documented = (
    &'static str,
    Vec<(&'static str, &'static str)>,
    u16,
    &'static str,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_shows_the_bodies_the_gateway_sends() {
    let sys = RealSystem::start();
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}/api/accounts/{p}", sys.base());
    let form = [
        ("username", "alice"),
        ("email", "alice@example.com"),
        ("password", "correct horse"),
        ("password2", "correct horse"),
    ];
    let cases: [Documented; 6] = [
        (
            "register/",
            form.to_vec(),
            201,
            r#"{"username":"alice","email":"alice@example.com"}"#,
        ),
        (
            "register/",
            vec![
                ("username", "x"),
                ("email", "bad"),
                ("password", "correct horse"),
            ],
            400,
            r#"{"email":["Enter a valid email address."]}"#,
        ),
        (
            "verification/code/",
            vec![("email", "alice@example.com")],
            200,
            r#"{"status":"success"}"#,
        ),
        (
            "verification/code/verify/",
            vec![
                ("email", "alice@example.com"),
                ("code", "000000"),
                ("password", "correct horse"),
            ],
            400,
            r#"{"status":"failed","message":"code-wrong"}"#,
        ),
        (
            "login/",
            vec![("username", "alice"), ("password", "wrong horse")],
            401,
            r#"{"detail":"No active account found with the given credentials","code":"no_active_account"}"#,
        ),
        (
            "login/",
            vec![("username", "alice")],
            400,
            r#"{"password":["This field is required."]}"#,
        ),
    ];
    for (path, fields, status, body) in cases {
        let response = http.post(url(path)).form(&fields).send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{path} {fields:?}");
        let text = response.text().await.unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            serde_json::from_str::<Value>(body).unwrap(),
            "{path} {fields:?}"
        );
        assert!(readme.contains(body), "the README does not show {body}");
    }
    let refused = http
        .post(url("login/refresh/"))
        .form(&[("refresh", "not-a-token")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let body = r#"{"detail":"Token is invalid or expired","code":"token_not_valid"}"#;
    assert_eq!(refused.text().await.unwrap(), body);
    assert!(readme.contains(body));
}

#[test]
fn swagger_ui_opened_under_a_host_name_asks_no_online_validator() {
    let Some(chromium) = tools::program("chromium", "apt-get install chromium") else {
        return;
    };
    let sys = RealSystem::start();
    let profile = tempfile::tempdir().unwrap();
    // Swagger UI skips its validator badge for localhost and 127.0.0.1
    // only, so the page is opened under another name, resolved to the
    // gateway; every other name fails to resolve, so nothing leaves the
    // machine even if the page tried.
    let rules = "MAP docs.internal.test 127.0.0.1, MAP * ~NOTFOUND";
    let page = format!("http://docs.internal.test:{}/api/docs/", sys.gateway.port());
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            &format!("--user-data-dir={}", profile.path().display()),
            &format!("--host-resolver-rules={rules}"),
            "--virtual-time-budget=10000",
            "--dump-dom",
            &page,
        ])
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);

    // The document was fetched and rendered (its title is on the page), so
    // the badge would be there too if the validator were on.
    assert!(
        dom.contains("Auth gateway"),
        "Swagger UI did not render: {dom}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dom.contains("validator.swagger.io"), "{dom}");
    assert!(!dom.contains("Online validator badge"), "{dom}");
}

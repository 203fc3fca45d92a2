//! The real service binaries as child processes, for fault tests that must
//! see what signals do to the actual executables.

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use proto::audit::v1::{AttemptRecord, audit_service_client::AuditServiceClient};

/// The workspace's target directory for this test's profile.
fn bin_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    target.join(if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    })
}

/// Builds the three service binaries in this test's profile.
pub fn build_binaries() {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .args([
            "build",
            "--bins",
            "-p",
            "audit-service",
            "-p",
            "auth-service",
            "-p",
            "gateway",
        ]);
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("cargo runs");
    assert!(status.success(), "building the services failed");
}

/// Builds every binary of the workspace (the services, all-in-one and the
/// benchmarks) in this test's profile. One cargo run per group of the same
/// dependency features: a binary built once with one feature set and then
/// another is relinked each time, so the three services are built exactly
/// as [`build_binaries`] builds them.
pub fn build_all_binaries() {
    build_binaries();
    for package in ["all-in-one", "audit-bench", "loadtest"] {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
            .args(["build", "--bins", "-p", package]);
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("cargo runs");
        assert!(status.success(), "building {package} failed");
    }
}

/// Binary `name` with an empty environment: callers add what it needs,
/// so nothing from the test's own environment leaks in.
pub fn command(name: &str) -> Command {
    let mut cmd = Command::new(bin_dir().join(name));
    cmd.env_clear();
    cmd
}

/// Runs `cmd` with `stdin` as its input until it exits, failing the test
/// if that takes longer than `limit` (a binary that starts serving
/// instead of answering, or waits where it should fail fast).
pub fn output_within(cmd: &mut Command, stdin: &str, limit: Duration) -> std::process::Output {
    use std::io::Write as _;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin.as_bytes());
    }
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{cmd:?} still running after {limit:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// A port nothing listens on right now.
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Waits until something accepts connections on `addr`.
pub fn wait_listening(addr: SocketAddr, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "{what} never listened on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Child processes, SIGKILLed when the test ends however it ends.
#[derive(Default)]
pub struct Processes(pub Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The environment of an audit-service on `addr` with its SQLite log in
/// `dir`, serving metrics on any free port (the defaults may be taken on a
/// shared machine).
pub fn audit_service_env(addr: SocketAddr, dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("AUDIT_GRPC_ADDR", addr.to_string()),
        ("AUDIT_METRICS_ADDR", "127.0.0.1:0".to_owned()),
        (
            "AUDIT_DATABASE_URL",
            format!("sqlite://{}", dir.join("audit.db").display()),
        ),
    ]
}

/// Runs binary `name` with exactly `env` until it exits (for start-up
/// refusals); returns how it exited and what it printed on stderr.
pub fn run_to_exit(name: &str, env: &[(&str, String)]) -> (ExitStatus, String) {
    let mut cmd = Command::new(bin_dir().join(name));
    cmd.env_clear().stdout(Stdio::null()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts binary `name` with exactly `env` (plus `RUST_LOG=warn`).
pub fn spawn(name: &str, env: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(bin_dir().join(name));
    cmd.env_clear()
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"))
}

/// Sends SIGTERM (what Kubernetes and docker send first) to `child`.
pub fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -TERM {} failed", child.id());
}

/// Waits up to `limit` for `child` to exit and returns how it exited.
pub fn wait_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "process {} did not exit within {limit:?}",
            child.id()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The whole log, through audit.v1; `None` while audit-service is down.
pub async fn all_attempts(audit: SocketAddr) -> Option<Vec<AttemptRecord>> {
    let mut client = AuditServiceClient::connect(format!("http://{audit}"))
        .await
        .ok()?;
    crate::system::whole_log(&mut client).await.ok()
}

//! The real service binaries as child processes, for fault tests that must
//! see what signals do to the actual executables.

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::atomic::{AtomicU32, Ordering},
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

/// A port nothing listens on right now, for a child process to bind.
///
/// Not `bind(0)`: that hands out a port of the kernel's ephemeral range
/// (32768-60999 on Linux), which any outgoing connection of any process (a
/// test's own database pool, a service dialling another) may take as its
/// local port between this pick and the child's bind: the child then dies
/// with "Address already in use" (seen once in eight CI runs). Ports below
/// that range are only ever taken by a listener, so a port this process
/// hands out once, after checking nothing listens on it, stays free. Each
/// test binary starts at its own offset, and never repeats a port.
pub fn free_addr() -> SocketAddr {
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    if NEXT.load(Ordering::Relaxed) == u32::MAX {
        let offset = std::process::id().wrapping_mul(7_919) % COUNT;
        let _ = NEXT.compare_exchange(u32::MAX, offset, Ordering::Relaxed, Ordering::Relaxed);
    }
    for _ in 0..COUNT {
        let step = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = u16::try_from(FIRST + step % COUNT).unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if TcpListener::bind(addr).is_ok() {
            return addr;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + COUNT);
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

/// The environment of an auth-service on `addr` with its SQLite database
/// and mail folder in `dir`, streaming to the audit-service at `audit`,
/// serving metrics on any free port. Add or replace entries with [`set`].
pub fn auth_service_env(
    addr: SocketAddr,
    audit: SocketAddr,
    dir: &Path,
) -> Vec<(&'static str, String)> {
    vec![
        ("AUTH_GRPC_ADDR", addr.to_string()),
        ("AUTH_METRICS_ADDR", "127.0.0.1:0".to_owned()),
        (
            "AUTH_DATABASE_URL",
            format!("sqlite://{}", dir.join("auth.db").display()),
        ),
        ("AUDIT_GRPC_URL", format!("http://{audit}")),
        ("MAIL_DIR", dir.join("mail").display().to_string()),
    ]
}

/// The environment of a gateway on `addr` in front of `auth` and `audit`,
/// serving metrics on any free port.
pub fn gateway_env(
    addr: SocketAddr,
    auth: SocketAddr,
    audit: SocketAddr,
) -> Vec<(&'static str, String)> {
    vec![
        ("GATEWAY_ADDR", addr.to_string()),
        ("GATEWAY_METRICS_ADDR", "127.0.0.1:0".to_owned()),
        ("AUTH_GRPC_URL", format!("http://{auth}")),
        ("AUDIT_GRPC_URL", format!("http://{audit}")),
    ]
}

/// The environment of auth-service replica `replica` on `addr`, one of
/// several sharing the auth database `auth_db` (PostgreSQL), streaming to
/// `audit`, each with its own mail folder under `dir`. The account+IP delay
/// is longer than any test lasts, so a burst's count is exact.
pub fn auth_replica_env(
    addr: SocketAddr,
    audit: SocketAddr,
    dir: &Path,
    auth_db: &str,
    replica: usize,
) -> Vec<(&'static str, String)> {
    let mail = dir.join(format!("mail{replica}"));
    let env = auth_service_env(addr, audit, dir);
    let env = set(env, "AUTH_DATABASE_URL", auth_db);
    let env = set(env, "MAIL_DIR", mail.display().to_string());
    set(env, "AUTH_BF_PAIR_BASE_DELAY", "120s")
}

/// A TCP front for `backends`, as a Kubernetes Service is for its pods
/// when it prefers the pod on its own node: each new connection goes to the
/// first backend that accepts it, so while the first lives everything goes
/// there, and once it is killed (it refuses) the next takes over. Serves
/// until the calling test's runtime ends.
pub async fn service_proxy(backends: Vec<SocketAddr>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let addr = listener.local_addr().expect("a bound port");
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let backends = backends.clone();
            tokio::spawn(async move {
                for backend in backends {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(backend).await {
                        // Ends when either side closes or is reset.
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// `n` wrong passwords for `username` from this one address, spread in turn
/// over `gateways` and released at the same instant; their HTTP statuses.
pub async fn wrong_password_burst(
    http: &reqwest::Client,
    gateways: &[SocketAddr],
    username: &str,
    n: usize,
) -> Vec<u16> {
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let request = http
                .post(format!(
                    "http://{}/api/accounts/login/",
                    gateways[i % gateways.len()]
                ))
                .json(&serde_json::json!({"username": username, "password": format!("guess-{i}")}))
                .send();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                request
                    .await
                    .expect("the gateway answers")
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.expect("the request task ends"));
    }
    statuses
}

/// `env` with `name` set to `value` (replaced when present).
pub fn set(
    mut env: Vec<(&'static str, String)>,
    name: &'static str,
    value: impl Into<String>,
) -> Vec<(&'static str, String)> {
    env.retain(|(k, _)| *k != name);
    env.push((name, value.into()));
    env
}

/// Runs binary `name` with exactly `env` (plus `RUST_LOG=warn`) until it
/// exits, for start-up refusals: how it exited and what it printed (stdout
/// and stderr together). Fails the test when it is still running after
/// `limit` (a start-up that should be refused and is not would otherwise
/// hang the test); the child is killed then.
pub fn exit_within(name: &str, env: &[(&str, String)], limit: Duration) -> (ExitStatus, String) {
    // Both streams into one pipe: the services log (to stdout) and print
    // their last error (to stderr).
    let (mut output, writer) = std::io::pipe().expect("a pipe");
    let mut cmd = Command::new(bin_dir().join(name));
    cmd.env_clear()
        .env("RUST_LOG", "warn")
        .stdout(writer.try_clone().expect("a pipe"))
        .stderr(writer);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    // Our copies of the write end must close, or the read never ends.
    drop(cmd);
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut output, &mut text);
        text
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let text = reader.join().unwrap_or_default();
            panic!("{name} was still running after {limit:?}; it printed:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, reader.join().unwrap_or_default())
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

/// The three real binaries on free loopback ports over SQLite in a
/// temporary folder, mail written as files, each serving `/metrics`:
/// what an operator runs, for tests that point outside tools at it.
pub struct RealSystem {
    /// The gateway's HTTP address.
    pub gateway: SocketAddr,
    /// auth-service's gRPC address.
    pub auth: SocketAddr,
    /// audit-service's gRPC address.
    pub audit: SocketAddr,
    /// `/metrics` of the gateway, auth-service and audit-service.
    pub metrics: [(&'static str, SocketAddr); 3],
    /// Where auth-service writes each email (`MAIL_DIR`).
    pub mail_dir: PathBuf,
    /// The databases and mail; removed when the system is dropped.
    pub dir: tempfile::TempDir,
    _processes: Processes,
}

impl RealSystem {
    /// Builds the binaries, starts them and waits until each listens.
    pub fn start() -> Self {
        build_binaries();
        let dir = tempfile::tempdir().unwrap();
        let (audit, auth, gateway) = (free_addr(), free_addr(), free_addr());
        let metrics = [
            ("gateway", free_addr()),
            ("auth-service", free_addr()),
            ("audit-service", free_addr()),
        ];
        // `data/mail` under the folder, as the README has it under the
        // repository: its commands run there unchanged.
        let mail_dir = dir.path().join("data").join("mail");
        let audit_env = set(
            audit_service_env(audit, dir.path()),
            "AUDIT_METRICS_ADDR",
            metrics[2].1.to_string(),
        );
        let mut processes = Processes::default();
        processes.0.push(spawn("audit-service", &audit_env));
        wait_listening(audit, "audit-service");
        let auth_env = auth_service_env(auth, audit, dir.path());
        let auth_env = set(auth_env, "AUTH_METRICS_ADDR", metrics[1].1.to_string());
        let auth_env = set(auth_env, "MAIL_DIR", mail_dir.display().to_string());
        processes.0.push(spawn("auth-service", &auth_env));
        wait_listening(auth, "auth-service");
        let gateway_env = set(
            gateway_env(gateway, auth, audit),
            "GATEWAY_METRICS_ADDR",
            metrics[0].1.to_string(),
        );
        processes.0.push(spawn("gateway", &gateway_env));
        wait_listening(gateway, "gateway");
        for (name, addr) in metrics {
            wait_listening(addr, name);
        }
        Self {
            gateway,
            auth,
            audit,
            metrics,
            mail_dir,
            dir,
            _processes: processes,
        }
    }

    /// The gateway's base URL, e.g. `http://127.0.0.1:41234`.
    pub fn base(&self) -> String {
        format!("http://{}", self.gateway)
    }
}

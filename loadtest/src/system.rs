//! The three real service binaries as child processes.

use std::{
    net::{SocketAddr, TcpListener},
    path::Path,
    process::Stdio,
    time::Duration,
};

use tokio::process::{Child, Command};

use crate::{Args, Backend};

/// A started system.
pub struct System {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// audit-service gRPC URL.
    pub audit_url: String,
    /// Folder the services write data and mail into.
    pub dir: tempfile::TempDir,
    children: Vec<(&'static str, Child)>,
    env: Vec<(String, String)>,
    bin_dir: std::path::PathBuf,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn fresh_postgres(server: &str) -> anyhow::Result<String> {
    let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
    let status = Command::new("psql")
        .arg(server)
        .arg("-qc")
        .arg(format!("CREATE DATABASE {name}"))
        .status()
        .await?;
    anyhow::ensure!(status.success(), "cannot create database on {server}");
    let root = server.rsplit_once('/').map_or(server, |(r, _)| r);
    Ok(format!("{root}/{name}"))
}

async fn wait_for(addr: SocketAddr) -> anyhow::Result<()> {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("nothing listening on {addr} after 10 s")
}

impl System {
    /// Starts audit-service, auth-service and the gateway, in that order.
    pub async fn start(args: &Args) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let (auth_db, audit_db) = match args.backend {
            Backend::Sqlite => (
                format!("sqlite://{}", dir.path().join("auth.db").display()),
                format!("sqlite://{}", dir.path().join("audit.db").display()),
            ),
            Backend::Postgres => (
                fresh_postgres(&args.postgres_url).await?,
                fresh_postgres(&args.postgres_url).await?,
            ),
        };
        let (gw, auth, audit) = (free_port()?, free_port()?, free_port()?);
        let env: Vec<(String, String)> = [
            ("GATEWAY_ADDR", format!("127.0.0.1:{gw}")),
            ("AUTH_GRPC_ADDR", format!("127.0.0.1:{auth}")),
            ("AUDIT_GRPC_ADDR", format!("127.0.0.1:{audit}")),
            // Metrics are recorded (their cost is in the numbers) but served
            // on any free port, so a run never collides with the defaults.
            ("GATEWAY_METRICS_ADDR", "127.0.0.1:0".to_owned()),
            ("AUTH_METRICS_ADDR", "127.0.0.1:0".to_owned()),
            ("AUDIT_METRICS_ADDR", "127.0.0.1:0".to_owned()),
            ("AUTH_GRPC_URL", format!("http://127.0.0.1:{auth}")),
            ("AUDIT_GRPC_URL", format!("http://127.0.0.1:{audit}")),
            ("AUTH_DATABASE_URL", auth_db),
            ("AUDIT_DATABASE_URL", audit_db),
            ("MAIL_DIR", dir.path().join("mail").display().to_string()),
            ("RUST_LOG", "warn".to_owned()),
            // The bench measures throughput, not the abuse defences: all
            // load comes from one IP and a few accounts, which the brute-force
            // and refresh-family limits would (correctly) throttle to 429s
            // that skip argon2. Counters are still kept, so their cost is in.
            ("AUTH_BF_PAIR_FREE_FAILURES", "1000000000".to_owned()),
            ("AUTH_BF_ACCOUNT_LOCK_FAILURES", "1000000000".to_owned()),
            ("AUTH_BF_IP_FAILURES", "1000000000".to_owned()),
            ("AUTH_RATE_REFRESH_FAMILY", "1000000000/1m".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .chain(
            args.jwt_algorithm
                .iter()
                .map(|alg| ("JWT_ALGORITHM".to_owned(), alg.clone())),
        )
        .collect();
        let mut system = Self {
            base: format!("http://127.0.0.1:{gw}"),
            audit_url: format!("http://127.0.0.1:{audit}"),
            dir,
            children: Vec::new(),
            env,
            // Absolute: the children run in the temporary folder.
            bin_dir: std::path::absolute(&args.bin_dir)?,
        };
        for (name, port) in [
            ("audit-service", audit),
            ("auth-service", auth),
            ("gateway", gw),
        ] {
            let child = system
                .command(name)
                .stdout(Stdio::null())
                .kill_on_drop(true)
                .spawn()?;
            system.children.push((name, child));
            wait_for(SocketAddr::from(([127, 0, 0, 1], port))).await?;
        }
        Ok(system)
    }

    /// A command for one of the binaries with the system's environment.
    pub fn command(&self, bin: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(bin));
        cmd.current_dir(self.dir.path())
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Peak resident set size of each service (VmHWM), as a table cell.
    pub fn peak_rss(&self) -> String {
        self.children
            .iter()
            .map(|(name, child)| {
                let kib = child
                    .id()
                    .and_then(|pid| vm_hwm_kib(format!("/proc/{pid}/status")));
                match kib {
                    Some(k) => format!("{name} {:.1} MiB", k as f64 / 1024.0),
                    None => format!("{name} ?"),
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Current resident set size of each service (VmRSS), for progress lines.
    pub fn current_rss(&self) -> String {
        self.children
            .iter()
            .map(|(name, child)| {
                let kib = child
                    .id()
                    .and_then(|pid| proc_status_kib(format!("/proc/{pid}/status"), "VmRSS:"));
                format!("{name} {:.1} MiB", kib.unwrap_or(0) as f64 / 1024.0)
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// CPU used so far by each service and by this process.
    pub fn cpu(&self) -> CpuSnapshot {
        let mut all: Vec<(&'static str, u64)> = self
            .children
            .iter()
            .map(|(name, child)| {
                let ticks = child.id().and_then(|pid| cpu_ticks(&pid.to_string()));
                (*name, ticks.unwrap_or(0))
            })
            .collect();
        all.push(("loadtest", cpu_ticks("self").unwrap_or(0)));
        CpuSnapshot(all)
    }

    /// Stops the services with SIGTERM (graceful), gateway first.
    pub async fn stop(mut self) {
        while let Some((_, mut child)) = self.children.pop() {
            if let Some(pid) = child.id() {
                let _ = Command::new("kill")
                    .arg("-TERM")
                    .arg(pid.to_string())
                    .status()
                    .await;
            }
            let _ = tokio::time::timeout(Duration::from_secs(15), child.wait()).await;
        }
    }
}

/// CPU time (user + system) a process has used so far, in clock ticks.
fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Linux reports process times in 1/100 s (`USER_HZ`) on every common
/// architecture.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU used by each service and the load generator, snapshotted so a
/// scenario's share can be computed.
#[derive(Debug, Clone)]
pub struct CpuSnapshot(Vec<(&'static str, u64)>);

impl CpuSnapshot {
    /// CPU milliseconds each process used since `earlier`, per `requests`
    /// requests, as `name µs, …` (microseconds per request).
    pub fn per_request_since(&self, earlier: &CpuSnapshot, requests: u64) -> String {
        let mut total = 0.0;
        let mut parts: Vec<String> = self
            .0
            .iter()
            .zip(&earlier.0)
            .map(|((name, now), (_, then))| {
                let us = (now.saturating_sub(*then)) as f64 / TICKS_PER_SECOND * 1e6
                    / requests.max(1) as f64;
                total += us;
                format!("{name} {us:.0}")
            })
            .collect();
        parts.push(format!("total {total:.0}"));
        parts.join(", ")
    }
}

fn vm_hwm_kib(path: impl AsRef<Path>) -> Option<u64> {
    proc_status_kib(path, "VmHWM:")
}

fn proc_status_kib(path: impl AsRef<Path>, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(path).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

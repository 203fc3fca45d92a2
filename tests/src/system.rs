//! The whole system, started in-process on loopback.

use std::{net::SocketAddr, time::Duration};

use proto::audit::v1::{
    AttemptRecord, ListAttemptsRequest, audit_service_client::AuditServiceClient,
};
use serde_json::{Value, json};
use tokio::{sync::oneshot, task::JoinHandle};

use crate::smtp::SmtpServer;

/// Which database engine both services use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Files in a temporary folder.
    Sqlite,
    /// Fresh databases on the server in `TEST_POSTGRES_URL`.
    Postgres,
}

/// A service running on the test's runtime, stopped by its sender.
struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    fn spawn<F>(serve: impl FnOnce(oneshot::Receiver<()>) -> F) -> Self
    where
        F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let (stop, rx) = oneshot::channel();
        Self {
            stop,
            task: tokio::spawn(serve(rx)),
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

async fn until(rx: oneshot::Receiver<()>) {
    let _ = rx.await;
}

/// Three services, their databases and a mailbox.
pub struct TestSystem {
    /// Gateway base URL, e.g. `http://127.0.0.1:41234`.
    pub base: String,
    /// HTTP client for the gateway.
    pub http: reqwest::Client,
    /// Receives the verification emails.
    pub smtp: SmtpServer,
    /// auth-service's configuration (for the admin CLI code path).
    pub auth_config: auth_service::Config,
    /// auth-service's gRPC URL.
    pub auth_url: String,
    /// Where each service serves `/metrics`, for those configured to.
    pub metrics: MetricsAddrs,
    audit_config: audit_service::Config,
    audit_addr: SocketAddr,
    audit_hub: audit_service::TailHub,
    audit: Option<Running>,
    auth: Option<Running>,
    gateway: Running,
    _dir: tempfile::TempDir,
}

/// The bound `/metrics` addresses (port 0 in the configuration becomes a
/// real port here).
#[derive(Debug, Clone, Copy, Default)]
pub struct MetricsAddrs {
    /// The gateway's.
    pub gateway: Option<SocketAddr>,
    /// auth-service's (of its first start).
    pub auth: Option<SocketAddr>,
    /// audit-service's (of its first start).
    pub audit: Option<SocketAddr>,
}

async fn database_urls(backend: Backend, dir: &std::path::Path) -> Option<(String, String)> {
    match backend {
        Backend::Sqlite => Some((
            format!("sqlite://{}", dir.join("auth.db").display()),
            format!("sqlite://{}", dir.join("audit.db").display()),
        )),
        Backend::Postgres => {
            let server = common::testing::server_url("TEST_POSTGRES_URL")?;
            Some((
                common::testing::fresh_postgres(&server).await,
                common::testing::fresh_postgres(&server).await,
            ))
        }
    }
}

impl TestSystem {
    /// Starts everything; `None` only when `backend` is PostgreSQL and
    /// `TEST_POSTGRES_URL` is unset (CI always sets it).
    pub async fn start(backend: Backend) -> Option<Self> {
        Self::start_with(backend, |_, _| {}).await
    }

    /// Like [`TestSystem::start`], after `configure` has adjusted the
    /// auth-service and gateway configurations (thresholds, tokens, proxies).
    pub async fn start_with(
        backend: Backend,
        configure: impl FnOnce(&mut auth_service::Config, &mut gateway::Config),
    ) -> Option<Self> {
        Self::start_with_audit(backend, |_| {}, configure).await
    }

    /// Like [`TestSystem::start_with`], after `configure_audit` has adjusted
    /// audit-service's configuration too. With audit TLS on, auth-service
    /// and the gateway get an `https://` audit URL, and the harness reads
    /// the log with auth-service's client TLS settings.
    pub async fn start_with_audit(
        backend: Backend,
        configure_audit: impl FnOnce(&mut audit_service::Config),
        configure: impl FnOnce(&mut auth_service::Config, &mut gateway::Config),
    ) -> Option<Self> {
        // The first test here installs logging for the whole test binary.
        let _ = common::telemetry::init("system-tests");
        let dir = tempfile::tempdir().unwrap();
        let (auth_db, audit_db) = database_urls(backend, dir.path()).await?;
        let smtp = SmtpServer::start();

        let mut audit_config = audit_service::Config::for_tests(audit_db);
        configure_audit(&mut audit_config);
        let audit_app = audit_service::Application::build(audit_config.clone())
            .await
            .unwrap();
        let audit_addr = audit_app.local_addr();
        let mut metrics = MetricsAddrs {
            audit: audit_app.metrics_addr(),
            ..MetricsAddrs::default()
        };
        let audit_hub = audit_app.tail_hub();
        let audit = Running::spawn(|rx| audit_app.run_until(until(rx)));
        let audit_url = audit_url(&audit_config, audit_addr);

        let mut auth_config =
            auth_service::Config::for_tests(&auth_db, &audit_url, dir.path().join("mail"));
        auth_config.smtp_url = Some(common::config::Secret::new(smtp.url.clone()));
        // The gateway's auth URL is only known once auth-service is bound.
        let mut gateway_config = gateway::Config::for_tests("", &audit_url);
        configure(&mut auth_config, &mut gateway_config);
        let (auth, auth_url, auth_metrics) = Self::spawn_auth(&auth_config).await;
        metrics.auth = auth_metrics;
        gateway_config.auth_grpc_url = auth_url.clone();

        let gateway_app = gateway::Application::build(gateway_config).await.unwrap();
        let base = format!("http://{}", gateway_app.local_addr());
        metrics.gateway = gateway_app.metrics_addr();
        let gateway = Running::spawn(|rx| gateway_app.run_until(until(rx)));

        Some(Self {
            base,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            smtp,
            auth_config,
            auth_url,
            metrics,
            audit_config,
            audit_addr,
            audit_hub,
            audit: Some(audit),
            auth: Some(auth),
            gateway,
            _dir: dir,
        })
    }

    async fn spawn_auth(config: &auth_service::Config) -> (Running, String, Option<SocketAddr>) {
        let app = auth_service::Application::build(config.clone())
            .await
            .unwrap();
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let url = format!("{scheme}://{}", app.local_addr());
        let metrics = app.metrics_addr();
        (Running::spawn(|rx| app.run_until(until(rx))), url, metrics)
    }

    /// Stops audit-service (graceful), leaving its database in place.
    pub async fn stop_audit(&mut self) {
        self.audit
            .take()
            .expect("audit-service is running")
            .stop()
            .await;
    }

    /// Starts audit-service again on the same address and database.
    pub async fn start_audit(&mut self) {
        let mut config = self.audit_config.clone();
        config.grpc_addr = self.audit_addr;
        let app = audit_service::Application::build(config).await.unwrap();
        self.audit_hub = app.tail_hub();
        self.audit = Some(Running::spawn(|rx| app.run_until(until(rx))));
    }

    /// Restarts auth-service on the same address and database.
    pub async fn restart_auth(&mut self) {
        self.auth
            .take()
            .expect("auth-service is running")
            .stop()
            .await;
        let mut config = self.auth_config.clone();
        config.grpc_addr = self.auth_url.rsplit("://").next().unwrap().parse().unwrap();
        let (auth, _, _) = Self::spawn_auth(&config).await;
        self.auth = Some(auth);
    }

    /// Stops everything gracefully.
    pub async fn shutdown(mut self) {
        self.gateway.stop().await;
        if let Some(auth) = self.auth.take() {
            auth.stop().await;
        }
        if let Some(audit) = self.audit.take() {
            audit.stop().await;
        }
    }

    /// The full URL of a gateway path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs a JSON body; returns status and JSON body.
    pub async fn post_json(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        read(resp).await
    }

    /// POSTs a form body (what `curl -d` sends).
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> (u16, Value) {
        let resp = self
            .http
            .post(self.url(path))
            .form(fields)
            .send()
            .await
            .unwrap();
        read(resp).await
    }

    /// GETs with an optional bearer token.
    pub async fn get(&self, path_or_url: &str, bearer: Option<&str>) -> (u16, Value) {
        let url = if path_or_url.starts_with("http") {
            path_or_url.to_owned()
        } else {
            self.url(path_or_url)
        };
        let mut req = self.http.get(url);
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        read(req.send().await.unwrap()).await
    }

    /// Registers, requests a code, reads it from the real mail and verifies:
    /// an active account.
    pub async fn active_user(&self, username: &str, email: &str, password: &str) {
        let (status, body) = self
            .post_json(
                "/api/accounts/register/",
                json!({"username": username, "email": email, "password": password, "password2": password}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let (status, _) = self
            .post_json("/api/accounts/verification/code/", json!({"email": email}))
            .await;
        assert_eq!(status, 200);
        let code = self.smtp.wait_for_code(email, 1).await;
        let (status, body) = self
            .post_json(
                "/api/accounts/verification/code/verify/",
                json!({"email": email, "code": code, "password": password}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    /// Creates an admin through the CLI's code path and logs in: an access token.
    pub async fn admin_token(&self) -> String {
        auth_service::admin::create_admin(
            &self.auth_config,
            "root",
            "root@example.com",
            "admin-pass-123",
        )
        .await
        .unwrap();
        self.login("root", "admin-pass-123").await["access"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Logs in; panics unless it succeeds. Returns the token pair.
    pub async fn login(&self, username: &str, password: &str) -> Value {
        let (status, body) = self
            .post_json(
                "/api/accounts/login/",
                json!({"username": username, "password": password}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// `POST /api/accounts/login/refresh/` with `refresh` (a token, or
    /// any JSON value a client might send in its place).
    pub async fn refresh(&self, refresh: impl serde::Serialize) -> (u16, Value) {
        self.post_json("/api/accounts/login/refresh/", json!({"refresh": refresh}))
            .await
    }

    /// audit-service's database URL.
    pub fn audit_database_url(&self) -> &str {
        &self.audit_config.database_url
    }

    /// audit-service's gRPC URL (`https://` when it speaks TLS).
    pub fn audit_url(&self) -> String {
        audit_url(&self.audit_config, self.audit_addr)
    }

    /// How many live tails audit-service is serving right now.
    pub fn audit_tail_subscribers(&self) -> usize {
        self.audit_hub.subscribers()
    }

    /// Every attempt in the audit log, read through audit.v1 ListAttempts.
    pub async fn all_attempts(&self) -> Vec<AttemptRecord> {
        let url = self.audit_url();
        let mut endpoint = tonic::transport::Endpoint::from_shared(url.clone()).unwrap();
        if let Some(tls) = self.auth_config.internal_tls.for_url(&url).unwrap() {
            endpoint = endpoint.tls_config(tls).unwrap();
        }
        let mut client = AuditServiceClient::new(endpoint.connect().await.unwrap());
        whole_log(&mut client).await.unwrap()
    }

    /// Waits (up to 20 s) until the log holds `n` attempts, then returns
    /// them one record per attempt: a tallied record (see
    /// `audit.v1.Attempt.count`) appears `count` times, so tests count
    /// attempts whatever their storage. [`TestSystem::all_attempts`] shows
    /// the records as stored.
    pub async fn wait_for_attempts(&self, n: usize) -> Vec<AttemptRecord> {
        let mut last = Vec::new();
        for _ in 0..400 {
            last = one_per_attempt(self.all_attempts().await);
            if last.len() >= n {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("expected {n} attempts in the log, found {}", last.len());
    }
}

/// `records` with each tallied one repeated `count` times.
pub fn one_per_attempt(records: Vec<AttemptRecord>) -> Vec<AttemptRecord> {
    records
        .into_iter()
        .flat_map(|record| {
            let count = record.attempt.as_ref().map_or(1, |a| a.count.max(1));
            std::iter::repeat_n(record, count as usize)
        })
        .collect()
}

fn audit_url(config: &audit_service::Config, addr: SocketAddr) -> String {
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{addr}")
}

async fn read(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("non-JSON body ({status}): {text:?}"));
    (status, body)
}

/// Every attempt in the audit log, page by page through audit.v1
/// ListAttempts, newest first.
pub async fn whole_log(
    client: &mut AuditServiceClient<tonic::transport::Channel>,
) -> Result<Vec<AttemptRecord>, tonic::Status> {
    let (mut all, mut cursor) = (Vec::new(), String::new());
    loop {
        let page = client
            .list_attempts(ListAttemptsRequest {
                limit: 500,
                cursor: cursor.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        all.extend(page.attempts);
        if page.next_cursor.is_empty() {
            return Ok(all);
        }
        cursor = page.next_cursor;
    }
}

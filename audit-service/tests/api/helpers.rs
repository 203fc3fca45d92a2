//! Starting the application on a fresh database and talking to it.

use std::{net::SocketAddr, time::Duration};

use audit_service::{Application, Config, TailHub};
use common::{config::Secret, internal_auth::AttachToken};
use prost_types::Timestamp;
use proto::audit::v1::{
    Attempt, AttemptRecord, IngestAck, IngestBatch, ListAttemptsRequest,
    audit_service_client::AuditServiceClient,
};
use sqlx::{Connection, Executor};
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::{
    Status,
    service::interceptor::InterceptedService,
    transport::{Channel, Endpoint},
};

/// A client that attaches the internal token when it has one.
pub type Client = AuditServiceClient<InterceptedService<Channel, AttachToken>>;

/// The point in time the tests count seconds from: one day before the
/// test run, read once. Ingest refuses attempts dated more than a year back
/// or minutes ahead, so it cannot be a fixed date; expectations only ever
/// depend on offsets from it.
pub static T0: std::sync::LazyLock<i64> = std::sync::LazyLock::new(|| {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(now.as_secs()).unwrap() - 86_400
});

/// `T0 + secs` as a protobuf time.
pub fn at(secs: i64) -> Timestamp {
    Timestamp {
        seconds: *T0 + secs,
        nanos: 0,
    }
}

/// A failed attempt from `ip` for `email` at `T0 + secs`.
pub fn failure(ip: &str, email: &str, secs: i64) -> Attempt {
    Attempt {
        event_id: uuid::Uuid::now_v7().to_string(),
        occurred_at: Some(at(secs)),
        identifier: email.to_owned(),
        user_id: None,
        username: None,
        email: email.to_owned(),
        successful: false,
        reason: proto::audit::v1::RejectReason::BadPassword as i32,
        ip: ip.to_owned(),
        user_agent: Some("test-agent/1.0".to_owned()),
        request_id: uuid::Uuid::new_v4().to_string(),
        trace_parent: None,
        count: 0,
        last_occurred_at: None,
        ..Default::default()
    }
}

/// A successful attempt from `ip` for `email` at `T0 + secs`.
pub fn success(ip: &str, email: &str, secs: i64) -> Attempt {
    Attempt {
        successful: true,
        reason: 0,
        user_id: Some(7),
        username: Some("alice".to_owned()),
        ..failure(ip, email, secs)
    }
}

/// A batch with the given sequence number.
pub fn batch(batch_seq: u64, attempts: Vec<Attempt>) -> IngestBatch {
    IngestBatch {
        batch_seq,
        attempts,
        admin_events: Vec::new(),
    }
}

/// A fresh, empty database; dropped with the test.
pub struct TestDb {
    /// Its URL, as `AUDIT_DATABASE_URL` would hold it.
    pub url: String,
    /// Keeps a SQLite temp dir alive.
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A SQLite file in a directory that does not exist yet, so every test
    /// also checks that the service creates it.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not-yet-created").join("audit.db");
        Self {
            url: format!("sqlite://{}", path.display()),
            _dir: Some(dir),
        }
    }

    /// A fresh PostgreSQL database, or `None` (noted on stderr) when
    /// `TEST_POSTGRES_URL` is unset.
    pub async fn postgres() -> Option<Self> {
        let server = common::testing::server_url("TEST_POSTGRES_URL")?;
        Some(Self {
            url: common::testing::fresh_postgres(&server).await,
            _dir: None,
        })
    }

    /// A fresh MySQL/MariaDB database, or `None` when `TEST_MYSQL_URL` is
    /// unset.
    pub async fn mysql() -> Option<Self> {
        let server = common::testing::server_url("TEST_MYSQL_URL")?;
        Some(Self {
            url: common::testing::fresh_mysql(&server).await,
            _dir: None,
        })
    }

    /// Runs SQL behind the service's back, to break things on purpose.
    pub async fn execute(&self, sql: &'static str) {
        if self.url.starts_with("sqlite:") {
            let mut conn = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
            conn.execute(sql).await.unwrap();
        } else if self.url.starts_with("mysql:") {
            let mut conn = sqlx::MySqlConnection::connect(&self.url).await.unwrap();
            conn.execute(sql).await.unwrap();
        } else {
            let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
            conn.execute(sql).await.unwrap();
        }
    }
}

/// What an ingest stream produced: the acks, then how it ended.
#[derive(Debug)]
pub struct IngestOutcome {
    /// Acks in the order received.
    pub acks: Vec<(u64, u32)>,
    /// `None` when the stream ended cleanly.
    pub error: Option<Status>,
}

/// A running application on loopback.
pub struct TestApp {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its database; `None` only after `stop` handed it back.
    db: Option<TestDb>,
    /// The token it requires, if any.
    token: Option<String>,
    /// Its live-tail fan-out, to watch subscriptions come and go.
    pub hub: TailHub,
    /// Fires the shutdown future.
    stop: Option<oneshot::Sender<()>>,
    /// The serving task.
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// Starts the application with the test defaults.
    pub async fn spawn(db: TestDb) -> Self {
        Self::spawn_with(db, |_| {}).await
    }

    /// Starts the application after `tweak` adjusts the test config.
    pub async fn spawn_with(db: TestDb, tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::for_tests(db.url.clone());
        tweak(&mut config);
        let token = config
            .internal_token
            .as_ref()
            .map(|t| t.expose().to_owned());
        let app = Application::build(config).await.unwrap();
        let addr = app.local_addr();
        let hub = app.tail_hub();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            db: Some(db),
            token,
            hub,
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// A channel to the application.
    pub async fn channel(&self) -> Channel {
        Endpoint::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// A client presenting `token` (or nothing).
    pub async fn client_with_token(&self, token: Option<&str>) -> Client {
        let secret = token.map(Secret::new);
        AuditServiceClient::with_interceptor(
            self.channel().await,
            AttachToken::new(secret.as_ref()).unwrap(),
        )
    }

    /// A client presenting the token the application requires, if any.
    pub async fn client(&self) -> Client {
        self.client_with_token(self.token.clone().as_deref()).await
    }

    /// Sends `batches` on one stream, half-closes it and collects the acks.
    pub async fn ingest(&self, batches: Vec<IngestBatch>) -> IngestOutcome {
        let mut client = self.client().await;
        let mut acks = Vec::new();
        let mut stream = match client.ingest(tokio_stream::iter(batches)).await {
            Ok(response) => response.into_inner(),
            Err(status) => {
                return IngestOutcome {
                    acks,
                    error: Some(status),
                };
            }
        };
        loop {
            match stream.message().await {
                Ok(Some(IngestAck {
                    batch_seq,
                    inserted,
                    ..
                })) => acks.push((batch_seq, inserted)),
                Ok(None) => return IngestOutcome { acks, error: None },
                Err(status) => {
                    return IngestOutcome {
                        acks,
                        error: Some(status),
                    };
                }
            }
        }
    }

    /// Ingests `attempts` as one batch, asserting it is acked in full.
    pub async fn ingest_ok(&self, attempts: Vec<Attempt>) {
        let n = u32::try_from(attempts.len()).unwrap();
        let outcome = self.ingest(vec![batch(1, attempts)]).await;
        assert!(outcome.error.is_none(), "{outcome:?}");
        assert_eq!(outcome.acks, vec![(1, n)]);
    }

    /// One `ListAttempts` call.
    pub async fn list(
        &self,
        request: ListAttemptsRequest,
    ) -> Result<proto::audit::v1::ListAttemptsResponse, Status> {
        self.client()
            .await
            .list_attempts(request)
            .await
            .map(tonic::Response::into_inner)
    }

    /// One `CountAttempts` call.
    pub async fn count(
        &self,
        request: proto::audit::v1::CountAttemptsRequest,
    ) -> Result<proto::audit::v1::CountAttemptsResponse, Status> {
        self.client()
            .await
            .count_attempts(request)
            .await
            .map(tonic::Response::into_inner)
    }

    /// Every record matching `request`, following cursors to the end.
    pub async fn list_all(&self, mut request: ListAttemptsRequest) -> Vec<AttemptRecord> {
        let mut all = Vec::new();
        loop {
            let page = self.list(request.clone()).await.unwrap();
            all.extend(page.attempts);
            if page.next_cursor.is_empty() {
                return all;
            }
            request.cursor = page.next_cursor;
        }
    }

    /// Its database.
    pub fn db(&self) -> &TestDb {
        self.db.as_ref().unwrap()
    }

    /// Triggers shutdown, asserts `run_until` returns cleanly, and hands the
    /// database back (a SQLite temp dir lives as long as it).
    pub async fn stop(mut self) -> TestDb {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let server = self.server.take().unwrap();
        tokio::time::timeout(Duration::from_secs(30), server)
            .await
            .expect("the server did not stop")
            .unwrap()
            .unwrap();
        self.db.take().unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Event ids of `records`, in order.
pub fn event_ids(records: &[AttemptRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| r.attempt.as_ref().unwrap().event_id.clone())
        .collect()
}

//! What several scenarios use: requests from a chosen client address,
//! bursts of them released at one instant, and waiting for a condition.

use std::{sync::Arc, time::Duration};

use proto::audit::v1::{Attempt, IngestBatch, audit_service_client::AuditServiceClient};
use serde_json::Value;
use system_tests::TestSystem;
use tokio::sync::Barrier;

/// Status and JSON body of one response.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: Value,
}

/// Sends `n` requests built by `request`, all released by one barrier once
/// every task is ready, and returns the replies in task order.
pub(crate) async fn burst<F, Fut>(n: usize, request: F) -> Vec<Reply>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = reqwest::Result<reqwest::Response>> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (barrier, send) = (barrier.clone(), request(i));
            tokio::spawn(async move {
                barrier.wait().await;
                let resp = send.await.unwrap();
                let status = resp.status().as_u16();
                let body = resp.json().await.unwrap_or(Value::Null);
                Reply { status, body }
            })
        })
        .collect();
    let mut replies = Vec::with_capacity(n);
    for task in tasks {
        replies.push(task.await.unwrap());
    }
    replies
}

/// How many replies have `status`.
pub(crate) fn count(replies: &[Reply], status: u16) -> usize {
    replies.iter().filter(|r| r.status == status).count()
}

/// Every reply is one of `statuses`; shows the odd one otherwise.
pub(crate) fn only(replies: &[Reply], statuses: &[u16]) {
    if let Some(odd) = replies.iter().find(|r| !statuses.contains(&r.status)) {
        panic!("unexpected reply {} {}", odd.status, odd.body);
    }
}

/// A POST of `body` to `path` from client address `ip` (sent as
/// `X-Forwarded-For`, which the gateway trusts from loopback here).
pub(crate) fn post_from(
    sys: &TestSystem,
    ip: &str,
    path: &str,
    body: Value,
) -> impl Future<Output = reqwest::Result<reqwest::Response>> + Send + use<> {
    sys.http
        .post(sys.url(path))
        .header("x-forwarded-for", ip)
        .json(&body)
        .send()
}

/// Status, `Retry-After` and JSON body of a response.
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<u64>,
    pub(crate) body: Value,
}

impl Response {
    pub(crate) async fn read(resp: reqwest::Response) -> Self {
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().parse().unwrap());
        let body = resp.json().await.unwrap_or(Value::Null);
        Self {
            status,
            retry_after,
            body,
        }
    }

    /// Asserts a 429 `throttled` with a `Retry-After` of at least a second,
    /// and returns it.
    pub(crate) fn assert_throttled(&self) -> u64 {
        assert_eq!(self.status, 429, "{}", self.body);
        assert_eq!(self.body["code"], "throttled");
        let wait = self.retry_after.expect("429 carries Retry-After");
        assert!(wait >= 1, "Retry-After {wait}");
        wait
    }
}

/// [`post_from`], read into a [`Response`].
pub(crate) async fn answer_from(sys: &TestSystem, ip: &str, path: &str, body: Value) -> Response {
    Response::read(post_from(sys, ip, path, body).await.unwrap()).await
}

/// Now, in Unix seconds.
pub(crate) fn unix_now() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(since_epoch.as_secs()).unwrap()
}

/// An attempt from `ip` for `identifier` failed for `reason` (a success
/// when empty), now.
pub(crate) fn attempt(ip: &str, identifier: &str, reason: &str) -> Attempt {
    attempt_at(ip, identifier, reason, unix_now())
}

/// [`attempt`] at `seconds` (Unix time).
pub(crate) fn attempt_at(ip: &str, identifier: &str, reason: &str, seconds: i64) -> Attempt {
    Attempt {
        event_id: uuid::Uuid::now_v7().to_string(),
        occurred_at: Some(prost_types::Timestamp { seconds, nanos: 0 }),
        identifier: identifier.to_owned(),
        email: identifier.to_owned(),
        successful: reason.is_empty(),
        reason: proto::audit::v1::RejectReason::from_code(reason).map_or(0, |r| r as i32),
        ip: ip.to_owned(),
        request_id: uuid::Uuid::new_v4().to_string(),
        ..Default::default()
    }
}

/// Ingests `attempts` straight into audit-service, in batches of 500.
pub(crate) async fn ingest(sys: &TestSystem, attempts: Vec<Attempt>) {
    let mut client = AuditServiceClient::connect(sys.audit_url()).await.unwrap();
    let batches: Vec<IngestBatch> = attempts
        .chunks(500)
        .enumerate()
        .map(|(i, chunk)| IngestBatch {
            batch_seq: u64::try_from(i).unwrap(),
            attempts: chunk.to_vec(),
            admin_events: Vec::new(),
        })
        .collect();
    let n = batches.len();
    let mut acks = client
        .ingest(tokio_stream::iter(batches))
        .await
        .unwrap()
        .into_inner();
    for _ in 0..n {
        acks.message().await.unwrap().unwrap();
    }
}

/// Makes the gateway believe `X-Forwarded-For` from loopback, so a test
/// can speak from as many client addresses as it needs.
pub(crate) fn trust_loopback(gateway: &mut gateway::Config) {
    gateway.trusted_proxies = "127.0.0.0/8".parse().unwrap();
}

/// One bound parameter of [`auth_sql`] and [`auth_count`].
pub(crate) enum Bind {
    Text(String),
    Bytes(Vec<u8>),
    Int(i64),
}

/// Runs `sql` (with `$1`.. bound to `binds`) on auth-service's database,
/// behind the service's back as an operator would; rows affected.
pub(crate) async fn auth_sql(sys: &TestSystem, sql: &'static str, binds: Vec<Bind>) -> u64 {
    macro_rules! run {
        ($pool:ty) => {{
            let url = sys.auth_config.database_url.expose();
            let pool = <$pool>::connect(url).await.unwrap();
            let mut query = sqlx::query(sql);
            for b in binds {
                query = match b {
                    Bind::Text(t) => query.bind(t),
                    Bind::Bytes(b) => query.bind(b),
                    Bind::Int(i) => query.bind(i),
                };
            }
            let n = query.execute(&pool).await.unwrap().rows_affected();
            pool.close().await;
            n
        }};
    }
    if sys.auth_config.database_url.expose().starts_with("sqlite:") {
        run!(sqlx::SqlitePool)
    } else {
        run!(sqlx::PgPool)
    }
}

/// The number `sql` (one `BIGINT` column, one row, `$1` bound to `text`)
/// reads from auth-service's database.
pub(crate) async fn auth_count(sys: &TestSystem, sql: &'static str, text: &str) -> i64 {
    macro_rules! run {
        ($pool:ty) => {{
            let url = sys.auth_config.database_url.expose();
            let pool = <$pool>::connect(url).await.unwrap();
            let n: i64 = sqlx::query_scalar(sql)
                .bind(text)
                .fetch_one(&pool)
                .await
                .unwrap();
            pool.close().await;
            n
        }};
    }
    if sys.auth_config.database_url.expose().starts_with("sqlite:") {
        run!(sqlx::SqlitePool)
    } else {
        run!(sqlx::PgPool)
    }
}

/// Polls `condition` for up to 10 s.
pub(crate) async fn wait_for(condition: impl Fn() -> bool) {
    for _ in 0..1000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not met within 10 s");
}

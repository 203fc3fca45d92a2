//! The live tail of the login log ends when the admin who opened it may no
//! longer read it: demoted, disabled, logged out everywhere, or holding an
//! expired access token.

use std::time::{Duration, Instant};

use system_tests::{Backend, TestSystem};

use crate::support::{auth_sql, wait_for};

on_every_backend!(
    the_tail_ends_soon_after_its_admin_is_demoted,
    the_tail_ends_soon_after_its_admin_is_disabled,
    the_tail_ends_soon_after_its_admin_logs_out_everywhere,
    the_tail_ends_when_its_access_token_expires,
);

const STREAM: &str = "/api/accounts/logs/login/attemps/stream/";
/// `GATEWAY_STREAM_RECHECK` in these tests.
const RECHECK: Duration = Duration::from_millis(250);
/// How soon after the change the tail must have ended: the re-check
/// interval plus generous room for a loaded CI machine.
const PROMPTLY: Duration = Duration::from_secs(4);

/// A system whose gateway re-checks live tails every [`RECHECK`].
async fn start(backend: Backend) -> Option<TestSystem> {
    TestSystem::start_with(backend, |_, gateway| gateway.stream_recheck = RECHECK).await
}

/// Opens the live tail as `token` and waits until audit-service serves it.
async fn open_tail(sys: &TestSystem, token: &str) -> reqwest::Response {
    let response = sys
        .http
        .get(sys.url(STREAM))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    wait_for(|| sys.audit_tail_subscribers() == 1).await;
    response
}

/// Reads the tail until the gateway closes it (at most `limit`); returns
/// everything it sent.
async fn read_to_end(response: &mut reqwest::Response, limit: Duration) -> String {
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .unwrap_or_else(|_| panic!("the tail was still open after {limit:?}: {seen:?}"))
            .unwrap();
        match chunk {
            Some(bytes) => seen.push_str(std::str::from_utf8(&bytes).unwrap()),
            None => return seen,
        }
    }
}

/// Checks the tail ended promptly with `reason`, and freed its
/// subscription in audit-service.
async fn assert_ended(
    sys: &TestSystem,
    response: &mut reqwest::Response,
    since: Instant,
    reason: &str,
    limit: Duration,
) {
    let seen = read_to_end(response, limit).await;
    let took = since.elapsed();
    eprintln!("the tail ended {took:?} after the change ({reason})");
    assert!(
        seen.contains(&format!(
            "event: end\ndata: {{\"reason\":\"{reason}\"}}\n\n"
        )),
        "{seen:?}"
    );
    assert!(
        seen.trim_end().ends_with(&format!("\"{reason}\"}}")),
        "{seen:?}"
    );
    wait_for(|| sys.audit_tail_subscribers() == 0).await;
}

async fn the_tail_ends_soon_after_its_admin_is_demoted(backend: Backend) {
    the_tail_ends_soon_after_an_operator_changes_its_admin(
        backend,
        "UPDATE users SET is_staff = FALSE WHERE username_lower = 'root'",
        "not_staff",
    )
    .await;
}

async fn the_tail_ends_soon_after_its_admin_is_disabled(backend: Backend) {
    the_tail_ends_soon_after_an_operator_changes_its_admin(
        backend,
        "UPDATE users SET is_active = FALSE WHERE username_lower = 'root'",
        "token_inactive",
    )
    .await;
}

/// An operator's `sql` on the admin's account ends their open tail with
/// `reason` within [`PROMPTLY`].
async fn the_tail_ends_soon_after_an_operator_changes_its_admin(
    backend: Backend,
    sql: &'static str,
    reason: &str,
) {
    let Some(sys) = start(backend).await else {
        return;
    };
    let admin = sys.admin_token().await;
    let mut tail = open_tail(&sys, &admin).await;

    assert_eq!(auth_sql(&sys, sql, vec![]).await, 1, "{sql}");
    let changed = Instant::now();

    assert_ended(&sys, &mut tail, changed, reason, PROMPTLY).await;
    sys.shutdown().await;
}

async fn the_tail_ends_soon_after_its_admin_logs_out_everywhere(backend: Backend) {
    let Some(sys) = start(backend).await else {
        return;
    };
    let admin = sys.admin_token().await;
    let mut tail = open_tail(&sys, &admin).await;
    // Still open across several re-checks before the logout.
    tokio::time::sleep(RECHECK * 4).await;
    assert_eq!(sys.audit_tail_subscribers(), 1);

    let response = sys
        .http
        .post(sys.url("/api/accounts/logout/all/"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let changed = Instant::now();

    assert_ended(&sys, &mut tail, changed, "token_inactive", PROMPTLY).await;
    sys.shutdown().await;
}

async fn the_tail_ends_when_its_access_token_expires(backend: Backend) {
    const TTL: Duration = Duration::from_secs(3);
    // Re-checks far apart, so only the expiry can end the tail in time.
    let Some(sys) = TestSystem::start_with(backend, |auth, _| auth.access_ttl = TTL).await else {
        return;
    };
    let admin = sys.admin_token().await;
    let issued = Instant::now();
    let mut tail = open_tail(&sys, &admin).await;

    assert_ended(&sys, &mut tail, issued, "token_expired", TTL + PROMPTLY).await;
    // Not before `exp` (whole seconds, so up to 1 s before the TTL is over).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let exp = claims(&admin)["exp"].as_f64().unwrap();
    assert!(now >= exp, "ended at {now}, before exp {exp}");
    sys.shutdown().await;
}

/// The claims of a JWT, unverified.
fn claims(token: &str) -> serde_json::Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&json).unwrap()
}

//! Changing and resetting a password through the real gateway: what each
//! proves and revokes, the lockout a change shares with login, the reset
//! code rules with the code read from the real mail, the limits under
//! bursts, hostile input, and the audit log's new kinds.

use serde_json::{Value, json};
use system_tests::{Backend, TestSystem};

use crate::support::{burst, count, only, post_from, trust_loopback};

on_every_backend!(
    a_change_keeps_only_the_callers_session_and_is_logged_as_its_own_kind,
    a_burst_of_wrong_current_passwords_locks_the_account_as_logins_would,
    a_reset_by_the_mailed_code_ends_every_session_and_the_code_is_single_use,
    a_burst_of_one_right_reset_code_succeeds_exactly_once,
    reset_requests_are_limited_per_client_and_per_address,
    hostile_password_requests_get_a_4xx_naming_the_field,
);

const CHANGE: &str = "/api/accounts/password/change/";
const RESET: &str = "/api/accounts/password/reset/";
const CONFIRM: &str = "/api/accounts/password/reset/confirm/";
const LOGS: &str = "/api/accounts/logs/login/attemps/";

async fn change(sys: &TestSystem, access: &str, old: &str, new: &str) -> (u16, Value) {
    let resp = sys
        .http
        .post(sys.url(CHANGE))
        .bearer_auth(access)
        .json(&json!({"old_password": old, "new_password": new, "new_password2": new}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

fn token(pair: &Value, name: &str) -> String {
    pair[name].as_str().unwrap().to_owned()
}

/// The log's items of `kind` through the REST listing, newest first, once
/// `n` of them are there.
async fn logged(sys: &TestSystem, admin: &str, kind: &str, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        let (status, body) = sys
            .get(&format!("{LOGS}?kind={kind}&limit=500"), Some(admin))
            .await;
        assert_eq!(status, 200, "{body}");
        let items = body["results"].as_array().unwrap().clone();
        if items.len() >= n {
            return items;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} {kind} attempts in the log");
}

/// (successful, reject_reason) of each item.
fn outcomes(items: &[Value]) -> Vec<(bool, Value)> {
    items
        .iter()
        .map(|i| {
            (
                i["successful"].as_bool().unwrap(),
                i["reject_reason"].clone(),
            )
        })
        .collect()
}

async fn a_change_keeps_only_the_callers_session_and_is_logged_as_its_own_kind(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    let admin = sys.admin_token().await;
    sys.active_user("alice", "alice@example.com", "alice-pass-1")
        .await;
    let laptop = sys.login("alice", "alice-pass-1").await;
    let phone = sys.login("alice@example.com", "alice-pass-1").await;

    let (status, body) = change(
        &sys,
        &token(&laptop, "access"),
        "wrong-pass-1",
        "tiger-lamp-42",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body,
        json!({"old_password": ["Your old password was entered incorrectly. Please enter it again."]})
    );
    let (status, fresh) = change(
        &sys,
        &token(&laptop, "access"),
        "alice-pass-1",
        "tiger-lamp-42",
    )
    .await;
    assert_eq!(status, 200, "{fresh}");

    // Every earlier session is over ...
    for old in [&laptop, &phone] {
        let (status, body) = sys.refresh(&token(old, "refresh")).await;
        assert_eq!(status, 401, "{body}");
    }
    // ... and an access token from before cannot change it again.
    let (status, body) = change(
        &sys,
        &token(&phone, "access"),
        "tiger-lamp-42",
        "thief-pass-99",
    )
    .await;
    assert_eq!(
        (status, &body["code"]),
        (401, &json!("token_not_valid")),
        "{body}"
    );
    // The fresh pair is the caller's session.
    let (status, body) = sys.refresh(&token(&fresh, "refresh")).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = sys
        .post_json(
            "/api/accounts/login/",
            json!({"username": "alice", "password": "alice-pass-1"}),
        )
        .await;
    assert_eq!(status, 401);
    sys.login("alice", "tiger-lamp-42").await;
    // The owner is told.
    let notices = sys.smtp.messages_to("alice@example.com");
    assert!(
        notices
            .iter()
            .any(|m| m.data.contains("Your password was changed")),
        "{notices:?}"
    );

    // The log keeps both tries as password changes, apart from logins.
    let items = logged(&sys, &admin, "password_change", 2).await;
    assert_eq!(
        outcomes(&items),
        [(true, Value::Null), (false, json!("bad_password"))]
    );
    for item in &items {
        assert_eq!(item["kind"], "password_change");
        assert_eq!(item["user"], items[0]["user"]);
        assert_eq!(item["identifier"], "alice");
    }
    let logins = logged(&sys, &admin, "login", 5).await;
    assert!(logins.iter().all(|i| i["kind"] == "login"));
    // The CSV export says the kind too.
    let csv = sys
        .http
        .get(sys.url(&format!("{LOGS}?kind=password_change&format=csv")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    // The kind column, then the original reason text (empty: none here).
    assert!(
        lines[0].ends_with(",kind,original_reject_reason"),
        "{}",
        lines[0]
    );
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(
        lines[1..].iter().all(|l| l.ends_with(",password_change,")),
        "{csv}"
    );
    // An unknown kind is refused naming the parameter.
    let (status, body) = sys.get(&format!("{LOGS}?kind=logout"), Some(&admin)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["kind"].is_array(), "{body}");
}

async fn a_burst_of_wrong_current_passwords_locks_the_account_as_logins_would(backend: Backend) {
    let Some(sys) = TestSystem::start_with(backend, |auth, gateway| {
        auth.brute_force.account_lock_failures = 3;
        auth.brute_force.pair_free_failures = 1000;
        trust_loopback(gateway);
    })
    .await
    else {
        return;
    };
    sys.active_user("bruno", "bruno@example.com", "bruno-pass-1")
        .await;
    let stolen = sys.login("bruno", "bruno-pass-1").await;
    let access = token(&stolen, "access");

    let replies = burst(10, |i| {
        sys.http
            .post(sys.url(CHANGE))
            .header("x-forwarded-for", "203.0.113.66")
            .bearer_auth(&access)
            .json(&json!({"old_password": format!("guess-pass-{i}"), "new_password": "thief-pass-99"}))
            .send()
    })
    .await;

    // Exactly the lock threshold's worth of password checks, as for logins.
    only(&replies, &[400, 429]);
    assert_eq!(count(&replies, 400), 3, "{replies:?}");
    assert_eq!(count(&replies, 429), 7, "{replies:?}");
    // The account is locked for logins too, from an address it never used.
    let (status, _) = sys
        .http
        .post(sys.url("/api/accounts/login/"))
        .header("x-forwarded-for", "198.51.100.9")
        .json(&json!({"username": "bruno", "password": "bruno-pass-1"}))
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(status, 429);
}

async fn a_reset_by_the_mailed_code_ends_every_session_and_the_code_is_single_use(
    backend: Backend,
) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    let admin = sys.admin_token().await;
    sys.active_user("fred", "fred@example.com", "fred-pass-12")
        .await;
    // Registered, never verified: it should verify, not reset.
    let (status, _) = sys
        .post_json(
            "/api/accounts/register/",
            json!({"username": "gina", "email": "gina@example.com", "password": "gina-pass-12"}),
        )
        .await;
    assert_eq!(status, 201);
    let session = sys.login("fred", "fred-pass-12").await;

    // The same answer for an unknown, an unverified and a real account.
    for email in ["nobody@example.com", "gina@example.com", "FRED@example.com"] {
        let (status, body) = sys.post_json(RESET, json!({"email": email})).await;
        assert_eq!(
            (status, body),
            (200, json!({"status": "success"})),
            "{email}"
        );
    }
    // Fred's second mail (the first was his verification code).
    let code = sys.smtp.wait_for_code("fred@example.com", 2).await;
    assert!(sys.smtp.messages_to("nobody@example.com").is_empty());
    assert!(sys.smtp.messages_to("gina@example.com").is_empty());

    let wrong = if code == "000000" { "000001" } else { "000000" };
    let confirm = |code: &str, new: &str| {
        sys.post_json(
            CONFIRM,
            json!({"email": "fred@example.com", "code": code, "new_password": new}),
        )
    };
    let (status, body) = confirm(wrong, "tiger-lamp-42").await;
    assert_eq!(
        (status, body),
        (400, json!({"status": "failed", "message": "code-wrong"}))
    );
    let (status, body) = confirm(&code, "12345678").await;
    assert_eq!(status, 400);
    assert!(body["new_password"].is_array(), "{body}");
    let (status, body) = confirm(&code, "tiger-lamp-42").await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"status": "success", "message": "password-reset"})
        )
    );

    let (status, _) = sys.refresh(&token(&session, "refresh")).await;
    assert_eq!(status, 401);
    sys.login("fred", "tiger-lamp-42").await;
    let (status, body) = confirm(&code, "other-pass-77").await;
    assert_eq!(
        (status, body),
        (400, json!({"status": "failed", "message": "code-wrong"}))
    );
    // An unverified account has no code to confirm either.
    let (status, body) = sys
        .post_json(
            CONFIRM,
            json!({"email": "gina@example.com", "code": code, "new_password": "tiger-lamp-42"}),
        )
        .await;
    assert_eq!(
        (status, body),
        (400, json!({"status": "failed", "message": "code-wrong"}))
    );

    let items = logged(&sys, &admin, "password_reset", 4).await;
    assert_eq!(
        outcomes(&items),
        [
            (false, json!("code_wrong")),
            (false, json!("code_wrong")),
            (true, Value::Null),
            (false, json!("code_wrong")),
        ]
    );
    assert!(items.iter().all(|i| i["kind"] == "password_reset"));
    // A failed reset filters like any failure.
    let (status, body) = sys
        .get(
            &format!("{LOGS}?kind=password_reset&reason=code_wrong&successful=false"),
            Some(&admin),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["results"].as_array().unwrap().len(), 3, "{body}");
}

async fn a_burst_of_one_right_reset_code_succeeds_exactly_once(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    sys.active_user("jana", "jana@example.com", "jana-pass-12")
        .await;
    let (status, _) = sys
        .post_json(RESET, json!({"email": "jana@example.com"}))
        .await;
    assert_eq!(status, 200);
    let code = sys.smtp.wait_for_code("jana@example.com", 2).await;

    let replies = burst(8, |i| {
        sys.http
            .post(sys.url(CONFIRM))
            .json(&json!({"email": "jana@example.com", "code": code, "new_password": format!("burst-pass-{i}")}))
            .send()
    })
    .await;

    only(&replies, &[200, 400]);
    let winners: Vec<usize> = (0..replies.len())
        .filter(|&i| replies[i].status == 200)
        .collect();
    assert_eq!(winners.len(), 1, "{replies:?}");
    // The losers were told the code is spent or out of tries.
    for reply in replies.iter().filter(|r| r.status == 400) {
        let message = reply.body["message"].as_str().unwrap();
        assert!(
            ["code-wrong", "too-many-attempts"].contains(&message),
            "{}",
            reply.body
        );
    }
    sys.login("jana", &format!("burst-pass-{}", winners[0]))
        .await;
}

async fn reset_requests_are_limited_per_client_and_per_address(backend: Backend) {
    let Some(sys) = TestSystem::start_with(backend, |auth, gateway| {
        auth.rate_limits.reset_request.max = 3;
        auth.rate_limits.reset_request_email.max = 2;
        trust_loopback(gateway);
    })
    .await
    else {
        return;
    };
    // One client, many addresses: three pass, the rest wait.
    let replies = burst(6, |i| {
        post_from(
            &sys,
            "192.0.2.10",
            RESET,
            json!({"email": format!("u{i}@example.com")}),
        )
    })
    .await;
    only(&replies, &[200, 429]);
    assert_eq!(count(&replies, 200), 3, "{replies:?}");
    assert_eq!(count(&replies, 429), 3, "{replies:?}");
    assert!(
        replies
            .iter()
            .filter(|r| r.status == 429)
            .all(|r| r.body["code"] == "throttled")
    );

    // One address, many clients: two pass, the rest wait, with a wait.
    let replies = burst(5, |i| {
        post_from(
            &sys,
            &format!("198.51.100.{i}"),
            RESET,
            json!({"email": "victim@example.com"}),
        )
    })
    .await;
    only(&replies, &[200, 429]);
    assert_eq!(count(&replies, 200), 2, "{replies:?}");
    let resp = post_from(
        &sys,
        "198.51.100.99",
        RESET,
        json!({"email": "Victim@Example.com"}),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 429);
    let wait: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&wait), "{wait}");
}

/// What a hostile request must get.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// 400 naming this field.
    Field(&'static str),
    /// 400 with a `detail`: the body itself could not be read.
    Unreadable,
    /// The code check's 400 `code-wrong`.
    CodeWrong,
    /// 400 naming this field, or the reset request's uniform 200 (an odd
    /// but well-formed address is just another address).
    FieldOrUniform(&'static str),
}

async fn hostile_password_requests_get_a_4xx_naming_the_field(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    sys.active_user("hugo", "hugo@example.com", "hugo-pass-12")
        .await;
    let pair = sys.login("hugo", "hugo-pass-12").await;
    let access = token(&pair, "access");
    let json_type = "application/json";
    let form = "application/x-www-form-urlencoded";
    let long_password = "p".repeat(5000);
    let cases: Vec<(&str, &str, Vec<u8>, Expect)> = vec![
        // NUL, raw and percent-encoded (PostgreSQL text refuses NUL).
        (RESET, json_type, br#"{"email": "hu\u0000go@example.com"}"#.to_vec(), Expect::Field("email")),
        (RESET, form, b"email=hu%00go@example.com".to_vec(), Expect::Field("email")),
        // Invalid UTF-8, raw and percent-encoded.
        (RESET, json_type, b"{\"email\": \"hu\xffgo@example.com\"}".to_vec(), Expect::Unreadable),
        (RESET, form, b"email=hu%FFgo@example.com".to_vec(), Expect::FieldOrUniform("email")),
        // Oversized, and a lookalike (Cyrillic a) of the real address.
        (
            RESET,
            json_type,
            format!("{{\"email\": \"{}@example.com\"}}", "a".repeat(60_000)).into_bytes(),
            Expect::Field("email"),
        ),
        (
            RESET,
            json_type,
            "{\"email\": \"hugo@ex\u{0430}mple.com\"}".as_bytes().to_vec(),
            Expect::FieldOrUniform("email"),
        ),
        (
            CONFIRM,
            json_type,
            br#"{"email": "hugo@example.com", "code": "12\u00003456", "new_password": "tiger-lamp-42"}"#.to_vec(),
            Expect::CodeWrong,
        ),
        (
            CONFIRM,
            form,
            b"email=hugo@example.com&code=%FF%FE%00&new_password=tiger-lamp-42".to_vec(),
            Expect::CodeWrong,
        ),
        (
            CONFIRM,
            json_type,
            format!(r#"{{"email": "hugo@example.com", "code": "123456", "new_password": "{long_password}"}}"#).into_bytes(),
            Expect::Field("new_password"),
        ),
        (
            CHANGE,
            json_type,
            format!(r#"{{"old_password": "hugo-pass-12", "new_password": "{long_password}"}}"#).into_bytes(),
            Expect::Field("new_password"),
        ),
        (
            CHANGE,
            json_type,
            br#"{"old_password": "hugo-pass-12", "new_password": "hugo-pass-12"}"#.to_vec(),
            Expect::Field("new_password"),
        ),
        (CHANGE, json_type, b"{\"old_password\": \"hugo\xff\"}".to_vec(), Expect::Unreadable),
    ];
    for (path, content_type, body, expect) in &cases {
        let resp = sys
            .http
            .post(sys.url(path))
            .bearer_auth(&access)
            .header("content-type", *content_type)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let reply: Value = resp.json().await.unwrap_or(Value::Null);
        let shown = String::from_utf8_lossy(&body[..body.len().min(100)]).into_owned();
        let ok = match expect {
            Expect::Field(field) => status == 400 && reply[field].is_array(),
            Expect::Unreadable => status == 400 && reply["detail"].is_string(),
            Expect::CodeWrong => {
                status == 400 && reply == json!({"status": "failed", "message": "code-wrong"})
            }
            Expect::FieldOrUniform(field) => {
                (status == 400 && reply[field].is_array())
                    || (status == 200 && reply == json!({"status": "success"}))
            }
        };
        assert!(ok, "{expect:?}: {status} {reply} for {path} {shown}");
    }
    // A garbage bearer token is refused before anything is read.
    for bad in ["not-a-jwt", "a.b.c", &token(&pair, "refresh")] {
        let (status, body) = change(&sys, bad, "hugo-pass-12", "tiger-lamp-42").await;
        assert_eq!(status, 401, "{bad:?}: {body}");
    }
    // None of it changed anything or mailed hugo (his one mail is the
    // verification code).
    sys.login("hugo", "hugo-pass-12").await;
    assert_eq!(sys.smtp.messages_to("hugo@example.com").len(), 1);
}

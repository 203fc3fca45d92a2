//! User administration through the real gateway (issue #16): every action,
//! every refusal, the last-administrator rule under a burst, and what
//! deactivation and deletion do to sessions and to the log.

use serde_json::{Value, json};
use system_tests::{Backend, TestSystem};

use crate::support::{burst, count, only, trust_loopback};

on_every_backend!(
    the_user_routes_refuse_non_admins_and_bad_input_with_structured_errors,
    an_admin_lists_searches_and_inspects_accounts,
    deactivating_a_user_ends_its_sessions_and_refuses_its_login,
    an_admin_unlocks_logs_out_grants_and_resends_verification,
    deleting_a_user_keeps_its_attempts_in_the_log,
    the_last_admin_cannot_be_removed_even_by_two_admins_at_once,
);

const USERS: &str = "/api/admin/users/";
const LOGIN: &str = "/api/accounts/login/";
const LOGS: &str = "/api/accounts/logs/login/attemps/";

/// Requests with one bearer token; each returns status and JSON body.
struct As<'a> {
    sys: &'a TestSystem,
    token: String,
}

impl As<'_> {
    async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = req.bearer_auth(&self.token).send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("non-JSON body ({status}): {text:?}"));
        (status, body)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.sys.get(path, Some(&self.token)).await
    }

    async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(self.sys.http.patch(self.sys.url(path)).json(&body))
            .await
    }

    async fn post(&self, path: &str) -> (u16, Value) {
        self.send(self.sys.http.post(self.sys.url(path))).await
    }

    async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(self.sys.http.delete(self.sys.url(path))).await
    }
}

fn user(id: i64) -> String {
    format!("{USERS}{id}/")
}

/// The id of the account `username`, found through the listing.
async fn id_of(admin: &As<'_>, username: &str) -> i64 {
    let (status, body) = admin.get(&format!("{USERS}?q={username}")).await;
    assert_eq!(status, 200, "{body}");
    body["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == username)
        .unwrap_or_else(|| panic!("no {username} in {body}"))["id"]
        .as_i64()
        .unwrap()
}

/// Registers `username` without verifying it.
async fn unverified(sys: &TestSystem, username: &str, password: &str) {
    let (status, body) = sys
        .post_json(
            "/api/accounts/register/",
            json!({"username": username, "email": format!("{username}@example.com"), "password": password}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

/// Status of a login.
async fn login_status(sys: &TestSystem, username: &str, password: &str) -> u16 {
    sys.post_json(LOGIN, json!({"username": username, "password": password}))
        .await
        .0
}

/// Waits until the wall clock has entered the next second.
async fn next_second() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let left = 1_000 - u64::from(now.subsec_millis()) + 20;
    tokio::time::sleep(std::time::Duration::from_millis(left)).await;
}

fn assert_refusal(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["code"], want_code, "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
}

async fn the_user_routes_refuse_non_admins_and_bad_input_with_structured_errors(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    let admin = As {
        sys: &sys,
        token: sys.admin_token().await,
    };
    sys.active_user("nina", "nina@example.com", "nina-pass-123")
        .await;
    let nina_pair = sys.login("nina", "nina-pass-123").await;
    let nina = As {
        sys: &sys,
        token: nina_pair["access"].as_str().unwrap().to_owned(),
    };
    let nina_id = id_of(&admin, "nina").await;

    // Who may call: no token 401, a refresh token 401, a user 403.
    let (status, body) = sys.get(USERS, None).await;
    assert_refusal(status, &body, 401, "not_authenticated");
    let refresh = As {
        sys: &sys,
        token: nina_pair["refresh"].as_str().unwrap().to_owned(),
    };
    let (status, body) = refresh.get(&user(nina_id)).await;
    assert_refusal(status, &body, 401, "token_not_valid");
    for (status, body) in [
        nina.get(USERS).await,
        nina.get(&user(nina_id)).await,
        nina.patch(&user(nina_id), json!({"is_staff": true})).await,
        nina.delete(&user(nina_id)).await,
        nina.post(&format!("{}unlock/", user(nina_id))).await,
        nina.post(&format!("{}logout/", user(nina_id))).await,
        nina.post(&format!("{}verification/", user(nina_id))).await,
    ] {
        assert_refusal(status, &body, 403, "permission_denied");
    }

    // Bad query values, each named.
    let long = "q".repeat(255);
    for (query, field) in [
        ("limit=501", "limit"),
        ("limit=zero", "limit"),
        ("is_active=maybe", "is_active"),
        ("verified=2", "verified"),
        ("q=ro%00ot", "q"),
        (&format!("q={long}") as &str, "q"),
        ("cursor=garbage!", "cursor"),
        ("cursor=MA", "cursor"),
    ] {
        let (status, body) = admin.get(&format!("{USERS}?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body[field].is_array(), "{query}: {body}");
    }
    // A lookalike of a name is another name: nothing is found.
    let (status, body) = admin.get(&format!("{USERS}?q=nіna")).await; // Cyrillic і
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"], json!([]));

    // Ids that are not positive integers: 400 naming `id`; unknown: 404.
    for bad in [
        "abc",
        "0",
        "-1",
        "1.5",
        "99999999999999999999",
        "%00",
        "%FF",
    ] {
        let (status, body) = admin.get(&format!("{USERS}{bad}/")).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["id"].is_array(), "{bad}: {body}");
    }
    let ghost = user(nina_id + 1000);
    for (status, body) in [
        admin.get(&ghost).await,
        admin.patch(&ghost, json!({"is_active": false})).await,
        admin.delete(&ghost).await,
        admin.post(&format!("{ghost}unlock/")).await,
        admin.post(&format!("{ghost}logout/")).await,
        admin.post(&format!("{ghost}verification/")).await,
    ] {
        assert_refusal(status, &body, 404, "not_found");
    }

    // PATCH bodies: nothing to change, not booleans, an unknown type.
    let (status, body) = admin.patch(&user(nina_id), json!({})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["non_field_errors"].is_array(), "{body}");
    let (status, body) = admin
        .patch(
            &user(nina_id),
            json!({"is_active": "maybe", "is_staff": null}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["is_active"].is_array() && body["is_staff"].is_array(),
        "{body}"
    );
    let (status, _) = admin
        .send(
            sys.http
                .patch(sys.url(&user(nina_id)))
                .header("content-type", "text/plain")
                .body("is_active=false"),
        )
        .await;
    assert_eq!(status, 415);
    // Nothing above changed nina.
    let (_, body) = admin.get(&user(nina_id)).await;
    assert_eq!(
        (body["is_active"].as_bool(), body["is_staff"].as_bool()),
        (Some(true), Some(false))
    );

    // A demoted admin's token still claims staff: the gateway lets it
    // through, auth-service refuses it.
    auth_service::admin::create_admin(&sys.auth_config, "ola", "ola@example.com", "ola-pass-1234")
        .await
        .unwrap();
    let ola = As {
        sys: &sys,
        token: sys.login("ola", "ola-pass-1234").await["access"]
            .as_str()
            .unwrap()
            .to_owned(),
    };
    let ola_id = id_of(&admin, "ola").await;
    let (status, body) = admin.patch(&user(ola_id), json!({"is_staff": false})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = ola.get(USERS).await;
    assert_refusal(status, &body, 403, "permission_denied");
    sys.shutdown().await;
}

async fn an_admin_lists_searches_and_inspects_accounts(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    let admin = As {
        sys: &sys,
        token: sys.admin_token().await,
    };
    for name in ["pam", "Pablo", "quinn"] {
        sys.active_user(
            name,
            &format!("{}@example.com", name.to_lowercase()),
            "some-pass-123",
        )
        .await;
    }
    unverified(&sys, "rex", "rex-pass-1234").await;

    // Pages of two, newest first, `next` keeping the filters.
    let mut url = format!("{USERS}?limit=2");
    let mut names = Vec::new();
    loop {
        let (status, body) = admin.get(&url).await;
        assert_eq!(status, 200, "{body}");
        for item in body["results"].as_array().unwrap() {
            for field in [
                "id",
                "username",
                "email",
                "is_active",
                "is_staff",
                "verified",
                "date_joined",
                "verified_at",
                "last_login",
            ] {
                assert!(item.get(field).is_some(), "missing {field} in {item}");
            }
            assert!(item.get("password_hash").is_none() && item.get("password").is_none());
            names.push(item["username"].as_str().unwrap().to_owned());
        }
        match body["next"].as_str() {
            Some(next) => {
                assert!(next.contains("limit=2"), "{next}");
                url = next.to_owned();
            }
            None => break,
        }
    }
    assert_eq!(names, ["rex", "quinn", "Pablo", "pam", "root"]);

    // Search (case-insensitive, username or email) and filters together.
    let listed = |body: &Value| -> Vec<String> {
        body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["username"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, body) = admin.get(&format!("{USERS}?q=PA")).await;
    assert_eq!(listed(&body), ["Pablo", "pam"]);
    let (_, body) = admin.get(&format!("{USERS}?q=quinn%40EXAMPLE")).await;
    assert_eq!(listed(&body), ["quinn"]);
    let (_, body) = admin.get(&format!("{USERS}?verified=false")).await;
    assert_eq!(listed(&body), ["rex"]);
    let (_, body) = admin
        .get(&format!("{USERS}?is_staff=true&is_active=1"))
        .await;
    assert_eq!(listed(&body), ["root"]);
    let (_, body) = admin.get(&format!("{USERS}?is_active=false&q=x")).await;
    assert_eq!(listed(&body), ["rex"]);

    // One account in detail: joined, verified, last login, sessions.
    let pam = id_of(&admin, "pam").await;
    let (status, body) = admin.get(&user(pam)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["last_login"], Value::Null);
    assert_eq!(body["active_sessions"], 0);
    sys.login("pam", "some-pass-123").await;
    sys.login("pam@example.com", "some-pass-123").await;
    let (_, body) = admin.get(&user(pam)).await;
    assert_eq!(body["active_sessions"], 2, "{body}");
    assert_eq!(body["locked_until"], Value::Null);
    assert_eq!(body["delayed_clients"], 0);
    assert!(
        body["last_login"].as_str().unwrap().ends_with('Z'),
        "{body}"
    );
    assert!(body["verified"].as_bool().unwrap());
    assert!(body["date_joined"].as_str().is_some());
    let rex = id_of(&admin, "rex").await;
    let (_, body) = admin.get(&user(rex)).await;
    assert_eq!(
        (body["verified"].as_bool(), body["is_active"].as_bool()),
        (Some(false), Some(false))
    );
    assert_eq!(body["verified_at"], Value::Null);
    sys.shutdown().await;
}

async fn deactivating_a_user_ends_its_sessions_and_refuses_its_login(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    let admin = As {
        sys: &sys,
        token: sys.admin_token().await,
    };
    sys.active_user("sam", "sam@example.com", "sam-pass-1234")
        .await;
    let pair = sys.login("sam", "sam-pass-1234").await;
    let sam = id_of(&admin, "sam").await;

    let (status, body) = admin.patch(&user(sam), json!({"is_active": false})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["is_active"], false);
    assert_eq!(body["active_sessions"], 0);
    let (status, body) = sys.refresh(&pair["refresh"]).await;
    assert_eq!(status, 401, "the session is over: {body}");
    assert_eq!(login_status(&sys, "sam", "sam-pass-1234").await, 401);

    // The refusal is in the log, as `inactive`.
    sys.wait_for_attempts(3).await;
    let (status, body) = admin
        .get(&format!("{LOGS}?user_id={sam}&successful=false"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["reject_reason"], "inactive", "{body}");

    // Reactivated with a form body: old sessions stay over, logins work.
    let (status, body) = admin
        .send(
            sys.http
                .patch(sys.url(&user(sam)))
                .form(&[("is_active", "true")]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["is_active"], true);
    let (status, _) = sys.refresh(&pair["refresh"]).await;
    assert_eq!(status, 401);
    assert_eq!(login_status(&sys, "sam", "sam-pass-1234").await, 200);

    // An unverified account is not activated by an admin.
    unverified(&sys, "tia", "tia-pass-1234").await;
    let tia = id_of(&admin, "tia").await;
    let (status, body) = admin.patch(&user(tia), json!({"is_active": true})).await;
    assert_refusal(status, &body, 409, "not_verified");
    assert_eq!(login_status(&sys, "tia", "tia-pass-1234").await, 401);
    sys.shutdown().await;
}

async fn an_admin_unlocks_logs_out_grants_and_resends_verification(backend: Backend) {
    let Some(sys) = TestSystem::start_with(backend, |auth, gw| {
        auth.brute_force.account_lock_failures = 3;
        auth.brute_force.account_lock_tiers = vec![600];
        trust_loopback(gw);
    })
    .await
    else {
        return;
    };
    let admin = As {
        sys: &sys,
        token: sys.admin_token().await,
    };
    sys.active_user("uma", "uma@example.com", "uma-pass-1234")
        .await;
    let uma = id_of(&admin, "uma").await;

    // Locked by failures from three addresses; unlocked by the admin.
    for i in 0..3 {
        let r = crate::support::answer_from(
            &sys,
            &format!("203.0.113.{i}"),
            LOGIN,
            json!({"username": "uma", "password": "wrong-pass-1"}),
        )
        .await;
        assert_eq!(r.status, 401);
    }
    let r = crate::support::answer_from(
        &sys,
        "198.51.100.1",
        LOGIN,
        json!({"username": "uma", "password": "uma-pass-1234"}),
    )
    .await;
    r.assert_throttled();
    let (_, body) = admin.get(&user(uma)).await;
    assert!(body["locked_until"].as_str().is_some(), "{body}");
    let (status, body) = admin.post(&format!("{}unlock/", user(uma))).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["cleared_counters"].as_u64().unwrap() >= 1, "{body}");
    assert_eq!(body["user"]["locked_until"], Value::Null);
    let pair = sys.login("uma", "uma-pass-1234").await;

    // Logged out everywhere: refresh and introspection both end.
    let (status, body) = admin.post(&format!("{}logout/", user(uma))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["revoked_sessions"], 1);
    assert_eq!(body["user"]["active_sessions"], 0);
    let (status, _) = sys.refresh(&pair["refresh"]).await;
    assert_eq!(status, 401);

    // Granted admin rights, uma's next login administers too (from the
    // next second: a logout ends every token issued up to and including
    // its second, as `iat` has whole seconds only).
    next_second().await;
    let (status, body) = admin.patch(&user(uma), json!({"is_staff": true})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["is_staff"], true);
    let uma_admin = As {
        sys: &sys,
        token: sys.login("uma", "uma-pass-1234").await["access"]
            .as_str()
            .unwrap()
            .to_owned(),
    };
    assert_eq!(uma_admin.get(USERS).await.0, 200);

    // Verification resent to an unverified account: the code in the real
    // mail activates it; once verified, there is nothing to resend.
    unverified(&sys, "vic", "vic-pass-1234").await;
    let vic = id_of(&admin, "vic").await;
    let (status, body) = admin.post(&format!("{}verification/", user(vic))).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["code_expires_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(body["user"]["verified"], false);
    let code = sys.smtp.wait_for_code("vic@example.com", 1).await;
    let resp = sys
        .http
        .post(sys.url(&format!("{}verification/", user(vic))))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429, "one code a minute");
    assert!(resp.headers().contains_key("retry-after"));
    let (status, body) = sys
        .post_json(
            "/api/accounts/verification/code/verify/",
            json!({"email": "vic@example.com", "code": code, "password": "vic-pass-1234"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(login_status(&sys, "vic", "vic-pass-1234").await, 200);
    let (status, body) = admin.post(&format!("{}verification/", user(vic))).await;
    assert_refusal(status, &body, 409, "already_verified");
    sys.shutdown().await;
}

async fn deleting_a_user_keeps_its_attempts_in_the_log(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    let admin = As {
        sys: &sys,
        token: sys.admin_token().await,
    };
    sys.active_user("wes", "wes@example.com", "wes-pass-1234")
        .await;
    let pair = sys.login("wes", "wes-pass-1234").await;
    assert_eq!(login_status(&sys, "wes", "wrong-pass-1").await, 401);
    let wes = id_of(&admin, "wes").await;
    sys.wait_for_attempts(3).await;
    let logged = |body: &Value| body["results"].as_array().unwrap().len();
    let (_, before) = admin.get(&format!("{LOGS}?user_id={wes}")).await;
    assert_eq!(logged(&before), 2, "{before}");

    let (status, body) = admin.delete(&user(wes)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["login_attempts_kept"], true);
    assert_eq!(body["deleted"]["username"], "wes");
    assert!(
        body["detail"].as_str().unwrap().contains("login attempts"),
        "{body}"
    );
    let (status, body) = admin.get(&user(wes)).await;
    assert_refusal(status, &body, 404, "not_found");
    let (status, _) = sys.refresh(&pair["refresh"]).await;
    assert_eq!(status, 401);
    assert_eq!(login_status(&sys, "wes", "wes-pass-1234").await, 401);

    // Its attempts are still listed, under its id; the new refusal too.
    sys.wait_for_attempts(4).await;
    let (_, after) = admin.get(&format!("{LOGS}?user_id={wes}")).await;
    assert_eq!(logged(&after), 2, "{after}");
    assert_eq!(after["results"], before["results"]);
    let (_, unknown) = admin
        .get(&format!("{LOGS}?identifier=wes&reason=unknown_user"))
        .await;
    assert_eq!(logged(&unknown), 1, "{unknown}");
    sys.shutdown().await;
}

async fn the_last_admin_cannot_be_removed_even_by_two_admins_at_once(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    let root = As {
        sys: &sys,
        token: sys.admin_token().await,
    };
    let root_id = id_of(&root, "root").await;
    // Alone, root can neither deactivate, demote nor delete itself.
    for (status, body) in [
        root.patch(&user(root_id), json!({"is_active": false}))
            .await,
        root.patch(&user(root_id), json!({"is_staff": false})).await,
        root.delete(&user(root_id)).await,
    ] {
        assert_refusal(status, &body, 409, "last_admin");
    }

    auth_service::admin::create_admin(&sys.auth_config, "ada", "ada@example.com", "ada-pass-1234")
        .await
        .unwrap();
    let ada_id = id_of(&root, "ada").await;
    for round in 0..4 {
        let root_token = sys.login("root", "admin-pass-123").await["access"]
            .as_str()
            .unwrap()
            .to_owned();
        let ada_token = sys.login("ada", "ada-pass-1234").await["access"]
            .as_str()
            .unwrap()
            .to_owned();
        // Each demotes the other, released together.
        let replies = burst(2, |i| {
            let (token, target) = if i == 0 {
                (root_token.clone(), ada_id)
            } else {
                (ada_token.clone(), root_id)
            };
            sys.http
                .patch(sys.url(&user(target)))
                .bearer_auth(token)
                .json(&json!({"is_staff": false}))
                .send()
        })
        .await;
        // The loser is refused either by the last-admin rule (both checked
        // their authority before either committed: 409) or, when the
        // winner's demotion committed before the loser's authority was
        // checked, as no longer an administrator (403).
        only(&replies, &[200, 403, 409]);
        assert_eq!(count(&replies, 200), 1, "round {round}: {replies:?}");
        let refused = replies.iter().find(|r| r.status != 200).unwrap();
        let code = if refused.status == 409 {
            "last_admin"
        } else {
            "permission_denied"
        };
        assert_eq!(refused.body["code"], code, "{:?}", refused.body);
        // Exactly one admin is left: the winner, who restores the other.
        let (winner, loser_id) = if replies[0].status == 200 {
            (root_token, ada_id)
        } else {
            (ada_token, root_id)
        };
        let winner = As {
            sys: &sys,
            token: winner,
        };
        let (_, body) = winner
            .get(&format!("{USERS}?is_staff=true&is_active=true"))
            .await;
        assert_eq!(
            body["results"].as_array().unwrap().len(),
            1,
            "round {round}: {body}"
        );
        let (status, body) = winner
            .patch(&user(loser_id), json!({"is_staff": true}))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    sys.shutdown().await;
}

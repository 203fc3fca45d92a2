//! No pre-hijacking through unverified accounts (issue #14, case 3): an
//! attacker who registers someone else's email with their own password
//! must never end up with an account the mailbox owner verified.

use std::time::Duration;

use proto::auth::v1::{VerifyCodeRequest, auth_service_client::AuthServiceClient};
use serde_json::{Value, json};
use system_tests::{Backend, TestSystem};

use crate::support::{Bind, auth_count, auth_sql, burst, count, only, post_from, trust_loopback};

on_every_backend!(
    the_owner_registering_anew_replaces_the_attackers_unverified_account,
    the_owner_registering_replaces_an_unverified_lookalike_of_the_email_and_name,
    verifying_someone_elses_registration_ends_in_a_new_password,
    a_wrong_password_with_the_right_code_counts_a_try_and_keeps_the_code,
    a_burst_of_registrations_for_one_email_leaves_one_account,
    a_username_held_by_an_unverified_account_is_refused_until_its_ttl,
    the_sweeper_deletes_unverified_accounts_past_their_ttl,
    code_alone_verifies_only_when_the_operator_allows_it,
    a_disabled_account_gets_no_code_and_stays_disabled,
);

const REGISTER: &str = "/api/accounts/register/";
const CODE: &str = "/api/accounts/verification/code/";
const VERIFY: &str = "/api/accounts/verification/code/verify/";
const LOGIN: &str = "/api/accounts/login/";
const VICTIM: &str = "victim@example.com";
const ATTACKER_PASSWORD: &str = "mallory-pass-42";

async fn register(sys: &TestSystem, username: &str, email: &str, password: &str) -> (u16, Value) {
    sys.post_json(
        REGISTER,
        json!({"username": username, "email": email, "password": password}),
    )
    .await
}

/// Registers an account, which must be accepted.
async fn registered(sys: &TestSystem, username: &str, email: &str, password: &str) {
    let (status, body) = register(sys, username, email, password).await;
    assert_eq!(status, 201, "{body}");
}

/// Verifies `email` with `code` and the password it registered with.
async fn verify(sys: &TestSystem, email: &str, code: &str, password: &str) -> (u16, Value) {
    sys.post_json(
        VERIFY,
        json!({"email": email, "code": code, "password": password}),
    )
    .await
}

/// Asks for a code for `email` and returns it: the `nth` mail to it.
async fn mailed_code(sys: &TestSystem, email: &str, nth: usize) -> String {
    let (status, _) = sys.post_json(CODE, json!({"email": email})).await;
    assert_eq!(status, 200);
    sys.smtp.wait_for_code(email, nth).await
}

async fn login_status(sys: &TestSystem, username: &str, password: &str) -> u16 {
    sys.post_json(LOGIN, json!({"username": username, "password": password}))
        .await
        .0
}

async fn accounts_with_email(sys: &TestSystem, email: &str) -> i64 {
    auth_count(
        sys,
        "SELECT COUNT(*) FROM users WHERE email_lower = $1",
        email,
    )
    .await
}

async fn accounts_named(sys: &TestSystem, username: &str) -> i64 {
    auth_count(
        sys,
        "SELECT COUNT(*) FROM users WHERE username_lower = $1",
        username,
    )
    .await
}

/// Makes the account of `email` look `secs` older, as time passing would.
async fn backdate(sys: &TestSystem, email: &str, secs: i64) {
    let changed = auth_sql(
        sys,
        "UPDATE users SET created_at = created_at - $1 WHERE email_lower = $2",
        vec![Bind::Int(secs), Bind::Text(email.to_owned())],
    )
    .await;
    assert_eq!(changed, 1);
}

async fn the_owner_registering_anew_replaces_the_attackers_unverified_account(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    // The attacker registers the victim's address with their own password
    // and asks for a code (which goes to the victim's mailbox).
    registered(&sys, "mallory", VICTIM, ATTACKER_PASSWORD).await;
    mailed_code(&sys, VICTIM, 1).await;

    // The owner registers: not "email already exists", but a fresh account.
    let (status, body) = register(&sys, "victim", VICTIM, "victim-pass-42").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(accounts_with_email(&sys, VICTIM).await, 1);
    let code = mailed_code(&sys, VICTIM, 2).await;
    let (status, body) = verify(&sys, VICTIM, &code, "victim-pass-42").await;
    assert_eq!((status, &body["message"]), (200, &json!("user-activated")));

    // The attacker's account and password are gone; the owner's work.
    assert_eq!(login_status(&sys, "mallory", ATTACKER_PASSWORD).await, 401);
    assert_eq!(login_status(&sys, VICTIM, ATTACKER_PASSWORD).await, 401);
    assert_eq!(login_status(&sys, "victim", "victim-pass-42").await, 200);
    // The attacker's username is free again.
    assert_eq!(accounts_named(&sys, "mallory").await, 0);
    sys.shutdown().await;
}

/// The replacement follows the claimed names, not only the exact email:
/// an unverified account squatting the address as its username, or a
/// lookalike of it (a Cyrillic `а` in the domain), gives way to the owner's
/// registration at any age; once verified, the owner's names hold.
async fn the_owner_registering_replaces_an_unverified_lookalike_of_the_email_and_name(
    backend: Backend,
) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    // A username spelling an address nobody holds yet is allowed...
    let squatter = ("victim@example.com", "mallory2@example.net");
    registered(&sys, squatter.0, squatter.1, ATTACKER_PASSWORD).await;
    // ...until the address's owner registers it.
    let (status, body) = register(&sys, "victim", VICTIM, "victim-pass-42").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(login_status(&sys, squatter.1, ATTACKER_PASSWORD).await, 401);
    assert_eq!(accounts_with_email(&sys, squatter.1).await, 0);

    // The same for a lookalike of another address.
    let lookalike = "owner@ex\u{0430}mple.com";
    registered(&sys, "mallory", lookalike, ATTACKER_PASSWORD).await;
    let (status, body) = register(&sys, "owner", "owner@example.com", "owner-pass-42").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(login_status(&sys, "mallory", ATTACKER_PASSWORD).await, 401);
    assert_eq!(
        auth_count(
            &sys,
            "SELECT COUNT(*) FROM users WHERE username_lower <> $1",
            ""
        )
        .await,
        2,
        "the two owners' accounts are all that is left"
    );

    // Verified, the owner's names hold against everyone.
    let code = mailed_code(&sys, VICTIM, 1).await;
    let (status, _) = verify(&sys, VICTIM, &code, "victim-pass-42").await;
    assert_eq!(status, 200);
    for (username, email) in [
        ("mallory", "victim@ex\u{0430}mple.com"),
        (VICTIM, "mallory3@example.net"),
    ] {
        let (status, body) = register(&sys, username, email, ATTACKER_PASSWORD).await;
        assert_eq!(status, 400, "{username} {email}: {body}");
    }
    assert_eq!(login_status(&sys, "victim", "victim-pass-42").await, 200);
    sys.shutdown().await;
}

async fn verifying_someone_elses_registration_ends_in_a_new_password(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    registered(&sys, "mallory", VICTIM, ATTACKER_PASSWORD).await;
    // The owner does not register; they ask for a code and verify.
    let code = mailed_code(&sys, VICTIM, 1).await;

    // The code alone activates nothing: the password is not the owner's.
    let (status, body) = sys
        .post_json(VERIFY, json!({"email": VICTIM, "code": code}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["password"][0].is_string(), "{body}");
    // The same over gRPC: INVALID_ARGUMENT.
    let mut client = AuthServiceClient::connect(sys.auth_url.clone())
        .await
        .unwrap();
    let refused = client
        .verify_code(VerifyCodeRequest {
            email: VICTIM.into(),
            code: code.clone(),
            password: None,
            new_password: None,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    // A guess at the password is a wrong code, and keeps the code.
    let (status, body) = verify(&sys, VICTIM, &code, "guess-pass-1").await;
    assert_eq!(
        (status, body),
        (400, json!({"status": "failed", "message": "code-wrong"}))
    );
    // A new password must follow the registration rules (no try used).
    let (status, body) = sys
        .post_json(
            VERIFY,
            json!({"email": VICTIM, "code": code, "new_password": "12345678"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["new_password"][0].is_string(), "{body}");

    let (status, body) = sys
        .post_json(
            VERIFY,
            json!({"email": VICTIM, "code": code, "new_password": "owner-chosen-42"}),
        )
        .await;

    assert_eq!((status, &body["message"]), (200, &json!("user-activated")));
    assert_eq!(login_status(&sys, "mallory", ATTACKER_PASSWORD).await, 401);
    assert_eq!(login_status(&sys, VICTIM, ATTACKER_PASSWORD).await, 401);
    assert_eq!(login_status(&sys, VICTIM, "owner-chosen-42").await, 200);
    // Sending both is refused, naming the field.
    let (status, body) = sys
        .post_json(
            VERIFY,
            json!({"email": VICTIM, "code": code, "password": "a", "new_password": "b"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["new_password"][0].is_string(), "{body}");
    sys.shutdown().await;
}

async fn a_wrong_password_with_the_right_code_counts_a_try_and_keeps_the_code(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    registered(&sys, "nell", "nell@example.com", "nell-pass-42").await;
    let code = mailed_code(&sys, "nell@example.com", 1).await;

    for _ in 0..5 {
        let (status, body) = verify(&sys, "nell@example.com", &code, "nell-pass-43").await;
        assert_eq!(
            (status, body),
            (400, json!({"status": "failed", "message": "code-wrong"}))
        );
    }
    let (status, body) = verify(&sys, "nell@example.com", &code, "nell-pass-42").await;

    assert_eq!(
        (status, &body["message"]),
        (400, &json!("too-many-attempts"))
    );
    assert_eq!(login_status(&sys, "nell", "nell-pass-42").await, 401);
    sys.shutdown().await;
}

async fn a_burst_of_registrations_for_one_email_leaves_one_account(backend: Backend) {
    let Some(sys) = TestSystem::start_with(backend, |_, gateway| trust_loopback(gateway)).await
    else {
        return;
    };
    let replies = burst(10, |i| {
        post_from(
            &sys,
            &format!("192.0.2.{}", i + 1),
            REGISTER,
            json!({"username": format!("racer{i}"), "email": "race@example.com", "password": format!("racer-pass-{i}")}),
        )
    })
    .await;

    only(&replies, &[201, 400]);
    assert!(count(&replies, 201) >= 1, "{replies:?}");
    for refused in replies.iter().filter(|r| r.status == 400) {
        assert!(refused.body["email"][0].is_string(), "{}", refused.body);
    }
    assert_eq!(accounts_with_email(&sys, "race@example.com").await, 1);
    // The one left is one that was answered 201, and it can be verified.
    let mut survivor = None;
    for (i, reply) in replies.iter().enumerate() {
        let name = format!("racer{i}");
        let n = accounts_named(&sys, &name).await;
        if n == 1 {
            assert_eq!(reply.status, 201);
            survivor = Some(i);
        }
    }
    let i = survivor.expect("one racer's account remains");
    let code = mailed_code(&sys, "race@example.com", 1).await;
    let (status, body) = verify(&sys, "race@example.com", &code, &format!("racer-pass-{i}")).await;
    assert_eq!((status, &body["message"]), (200, &json!("user-activated")));
    sys.shutdown().await;
}

async fn a_username_held_by_an_unverified_account_is_refused_until_its_ttl(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    registered(&sys, "olive", "olive@example.com", "olive-pass-42").await;
    let code = mailed_code(&sys, "olive@example.com", 1).await;

    // Someone else cannot take the pending username...
    let (status, body) = register(&sys, "Olive", "other@example.com", "other-pass-42").await;
    assert_eq!(status, 400, "{body}");
    assert!(body["username"][0].is_string(), "{body}");

    // ... until the unverified account is older than the TTL (24 h); it can
    // no longer be verified then either.
    backdate(&sys, "olive@example.com", 24 * 3600 + 5).await;
    let (status, body) = verify(&sys, "olive@example.com", &code, "olive-pass-42").await;
    assert_eq!(
        (status, body),
        (400, json!({"status": "failed", "message": "code-wrong"}))
    );
    let (status, body) = register(&sys, "Olive", "other@example.com", "other-pass-42").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(accounts_with_email(&sys, "olive@example.com").await, 0);
    // A verified account's username is never taken over.
    sys.active_user("pia", "pia@example.com", "pia-pass-4242")
        .await;
    backdate(&sys, "pia@example.com", 48 * 3600).await;
    let (status, _) = register(&sys, "pia", "pia2@example.com", "pia2-pass-42").await;
    assert_eq!(status, 400);
    sys.shutdown().await;
}

async fn the_sweeper_deletes_unverified_accounts_past_their_ttl(backend: Backend) {
    let Some(sys) = TestSystem::start_with(backend, |auth, _| {
        // Upkeep runs on this tick.
        auth.key_reload_interval = Duration::from_millis(200);
    })
    .await
    else {
        return;
    };
    registered(&sys, "stale", "stale@example.com", "stale-pass-42").await;
    mailed_code(&sys, "stale@example.com", 1).await;
    registered(&sys, "fresh", "fresh@example.com", "fresh-pass-42").await;
    sys.active_user("kept", "kept@example.com", "kept-pass-4242")
        .await;
    backdate(&sys, "kept@example.com", 48 * 3600).await;

    backdate(&sys, "stale@example.com", 24 * 3600 + 5).await;

    let mut left = 1;
    for _ in 0..100 {
        left = accounts_with_email(&sys, "stale@example.com").await;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "the stale unverified account is deleted");
    // Its code went with it (foreign keys cascade).
    assert_eq!(
        auth_count(
            &sys,
            "SELECT COUNT(*) FROM verification_codes
             WHERE user_id NOT IN (SELECT id FROM users WHERE email_lower <> $1)",
            "stale@example.com",
        )
        .await,
        0
    );
    assert_eq!(accounts_with_email(&sys, "fresh@example.com").await, 1);
    assert_eq!(accounts_with_email(&sys, "kept@example.com").await, 1);
    assert_eq!(login_status(&sys, "kept", "kept-pass-4242").await, 200);
    sys.shutdown().await;
}

async fn code_alone_verifies_only_when_the_operator_allows_it(backend: Backend) {
    let Some(sys) = TestSystem::start_with(backend, |auth, _| {
        auth.verify_without_password = true;
    })
    .await
    else {
        return;
    };
    registered(&sys, "old", "old@example.com", "old-client-42").await;
    let code = mailed_code(&sys, "old@example.com", 1).await;

    let (status, body) = sys
        .post_json(VERIFY, json!({"email": "old@example.com", "code": code}))
        .await;

    assert_eq!((status, &body["message"]), (200, &json!("user-activated")));
    assert_eq!(login_status(&sys, "old", "old-client-42").await, 200);
    sys.shutdown().await;
}

async fn a_disabled_account_gets_no_code_and_stays_disabled(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    sys.active_user("quinn", "quinn@example.com", "quinn-pass-42")
        .await;
    let disabled = auth_sql(
        &sys,
        "UPDATE users SET is_active = FALSE WHERE email_lower = $1",
        vec![Bind::Text("quinn@example.com".into())],
    )
    .await;
    assert_eq!(disabled, 1);

    let (status, _) = sys
        .post_json(CODE, json!({"email": "quinn@example.com"}))
        .await;
    assert_eq!(status, 200, "the same answer as for any address");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        sys.smtp.messages_to("quinn@example.com").len(),
        1,
        "only the first verification's mail"
    );
    let first = sys.smtp.wait_for_code("quinn@example.com", 1).await;
    let (status, body) = sys
        .post_json(
            VERIFY,
            json!({"email": "quinn@example.com", "code": first, "new_password": "taken-over-42"}),
        )
        .await;
    assert_eq!(
        (status, body),
        (400, json!({"status": "failed", "message": "code-wrong"}))
    );
    assert_eq!(login_status(&sys, "quinn", "quinn-pass-42").await, 401);
    assert_eq!(login_status(&sys, "quinn", "taken-over-42").await, 401);
    sys.shutdown().await;
}

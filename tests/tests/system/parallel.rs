//! Limits under parallel attack: requests released at the same instant (a
//! barrier), through the real gateway, on every backend. Each limit must
//! count a try before the slow work it protects (argon2, a code comparison,
//! a registration), so a burst gets exactly as much of that work as the
//! limit allows, and the rest are refused with 429 without it.

use std::{sync::Arc, time::Duration};

use serde_json::json;
use system_tests::{Backend, TestSystem};

use crate::support::{burst, count, only, post_from, trust_loopback};

on_every_backend!(
    a_burst_of_wrong_passwords_from_one_address_checks_only_the_allowed_few,
    a_burst_on_one_account_from_many_addresses_locks_it_once_and_mails_once,
    a_burst_of_stuffed_credentials_from_one_address_checks_only_the_allowed_few,
    a_burst_of_code_guesses_compares_at_most_five,
    per_address_limits_on_register_and_codes_hold_under_a_burst,
    addresses_in_one_ipv6_network_share_their_limits,
    callers_without_an_address_are_limited_as_one_client,
    an_attacker_relocking_the_account_cannot_keep_its_owner_out,
);

const LOGIN: &str = "/api/accounts/login/";

/// The log's reject reasons once it holds `n` attempts, counted.
async fn reasons(sys: &TestSystem, n: usize) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for record in sys.wait_for_attempts(n).await {
        let attempt = record.attempt.unwrap();
        let reason = if attempt.successful {
            "success".to_owned()
        } else {
            attempt.reason().code().to_owned()
        };
        *counts.entry(reason).or_insert(0) += 1;
    }
    counts
}

async fn a_burst_of_wrong_passwords_from_one_address_checks_only_the_allowed_few(backend: Backend) {
    // Defaults (5 free failures per account and address), with a first
    // delay long enough to outlast the burst.
    let Some(sys) = TestSystem::start_with(backend, |auth, gw| {
        auth.brute_force.pair_base_delay = 120;
        trust_loopback(gw);
    })
    .await
    else {
        return;
    };
    sys.active_user("ada", "ada@example.com", "ada-pass-123")
        .await;
    let replies = burst(150, |i| {
        post_from(
            &sys,
            "203.0.113.9",
            LOGIN,
            json!({"username": "ada", "password": format!("guess-{i}")}),
        )
    })
    .await;
    only(&replies, &[401, 429]);
    assert_eq!(count(&replies, 401), 5, "passwords checked");
    assert_eq!(count(&replies, 429), 145);
    // The right password, next, is refused like any other: the block is
    // decided before the password is looked at.
    let after = post_from(
        &sys,
        "203.0.113.9",
        LOGIN,
        json!({"username": "ada", "password": "ada-pass-123"}),
    )
    .await
    .unwrap();
    assert_eq!(after.status(), 429);

    let log = reasons(&sys, 151).await;
    assert_eq!(log.get("bad_password"), Some(&5), "{log:?}");
    assert_eq!(log.get("rate_limited"), Some(&146), "{log:?}");
    sys.shutdown().await;
}

async fn a_burst_on_one_account_from_many_addresses_locks_it_once_and_mails_once(backend: Backend) {
    let Some(sys) = TestSystem::start_with(backend, |auth, gw| {
        auth.brute_force.account_lock_failures = 5;
        auth.brute_force.account_lock_tiers = vec![120];
        trust_loopback(gw);
    })
    .await
    else {
        return;
    };
    sys.active_user("bea", "bea@example.com", "bea-pass-123")
        .await;
    let replies = burst(120, |i| {
        post_from(
            &sys,
            &format!("198.51.{}.{}", i / 200, i % 200 + 1),
            LOGIN,
            json!({"username": "bea", "password": format!("guess-{i}")}),
        )
    })
    .await;
    only(&replies, &[401, 429]);
    assert_eq!(count(&replies, 401), 5, "passwords checked");
    assert_eq!(count(&replies, 429), 115);

    let log = reasons(&sys, 120).await;
    assert_eq!(log.get("bad_password"), Some(&5), "{log:?}");
    assert_eq!(log.get("locked_out"), Some(&115), "{log:?}");

    let lock_mails = || {
        sys.smtp
            .messages_to("bea@example.com")
            .iter()
            .filter(|m| m.data.contains("temporarily locked"))
            .count()
    };
    for _ in 0..100 {
        if lock_mails() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Give any second mail the time to arrive before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(lock_mails(), 1, "one lock, one email");
    sys.shutdown().await;
}

async fn a_burst_of_stuffed_credentials_from_one_address_checks_only_the_allowed_few(
    backend: Backend,
) {
    let Some(sys) = TestSystem::start_with(backend, |auth, gw| {
        auth.brute_force.ip_failures = 10;
        trust_loopback(gw);
    })
    .await
    else {
        return;
    };
    let replies = burst(100, |i| {
        post_from(
            &sys,
            "192.0.2.77",
            LOGIN,
            json!({"username": format!("victim{i}"), "password": "leaked-pass-1"}),
        )
    })
    .await;
    only(&replies, &[401, 429]);
    assert_eq!(count(&replies, 401), 10, "passwords checked");
    let log = reasons(&sys, 100).await;
    assert_eq!(log.get("unknown_user"), Some(&10), "{log:?}");
    assert_eq!(log.get("rate_limited"), Some(&90), "{log:?}");
    sys.shutdown().await;
}

async fn a_burst_of_code_guesses_compares_at_most_five(backend: Backend) {
    let Some(sys) = TestSystem::start_with(backend, |_, gw| trust_loopback(gw)).await else {
        return;
    };
    let (status, _) = sys
        .post_json(
            "/api/accounts/register/",
            json!({"username": "cai", "email": "cai@example.com", "password": "cai-pass-123"}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = sys
        .post_json(
            "/api/accounts/verification/code/",
            json!({"email": "cai@example.com"}),
        )
        .await;
    assert_eq!(status, 200);
    let code: u32 = sys
        .smtp
        .wait_for_code("cai@example.com", 1)
        .await
        .parse()
        .unwrap();
    // Sixty wrong guesses from sixty addresses (the per-address limit is
    // not what is tested here).
    let replies = burst(60, |i| {
        let guess = format!("{:06}", (code + 1 + i as u32) % 1_000_000);
        post_from(
            &sys,
            &format!("192.0.2.{}", i + 1),
            "/api/accounts/verification/code/verify/",
            json!({"email": "cai@example.com", "code": guess, "password": "cai-pass-123"}),
        )
    })
    .await;
    only(&replies, &[400]);
    let wrong = replies
        .iter()
        .filter(|r| r.body["message"] == "code-wrong")
        .count();
    let exhausted = replies
        .iter()
        .filter(|r| r.body["message"] == "too-many-attempts")
        .count();
    assert_eq!((wrong, exhausted), (5, 55), "compared against the code");
    // The right code is of no use now.
    let (status, body) = sys
        .post_json(
            "/api/accounts/verification/code/verify/",
            json!({"email": "cai@example.com", "code": format!("{code:06}"), "password": "cai-pass-123"}),
        )
        .await;
    assert_eq!(
        (status, &body["message"]),
        (400, &json!("too-many-attempts"))
    );
    sys.shutdown().await;
}

async fn per_address_limits_on_register_and_codes_hold_under_a_burst(backend: Backend) {
    let Some(sys) = TestSystem::start_with(backend, |auth, gw| {
        auth.rate_limits.register = auth_service::throttle::Limit::parse("8/1h").unwrap();
        auth.rate_limits.code_request = auth_service::throttle::Limit::parse("6/10m").unwrap();
        auth.rate_limits.code_verify = auth_service::throttle::Limit::parse("7/10m").unwrap();
        trust_loopback(gw);
    })
    .await
    else {
        return;
    };
    let registered = burst(40, |i| {
        post_from(
            &sys,
            "198.51.100.40",
            "/api/accounts/register/",
            json!({"username": format!("reg{i}"), "email": format!("reg{i}@example.com"), "password": "long-pass-123"}),
        )
    })
    .await;
    only(&registered, &[201, 429]);
    assert_eq!(count(&registered, 201), 8, "accounts created");

    let requested = burst(40, |i| {
        post_from(
            &sys,
            "198.51.100.41",
            "/api/accounts/verification/code/",
            json!({"email": format!("reg{i}@example.com")}),
        )
    })
    .await;
    only(&requested, &[200, 429]);
    assert_eq!(count(&requested, 200), 6, "code requests served");

    let verified = burst(40, |i| {
        post_from(
            &sys,
            "198.51.100.42",
            "/api/accounts/verification/code/verify/",
            json!({"email": format!("reg{i}@example.com"), "code": "000000", "password": "x"}),
        )
    })
    .await;
    only(&verified, &[400, 429]);
    assert_eq!(count(&verified, 400), 7, "codes compared");
    sys.shutdown().await;
}

async fn addresses_in_one_ipv6_network_share_their_limits(backend: Backend) {
    let Some(sys) = TestSystem::start_with(backend, |auth, gw| {
        auth.brute_force.ip_failures = 5;
        auth.rate_limits.register = auth_service::throttle::Limit::parse("3/1h").unwrap();
        trust_loopback(gw);
    })
    .await
    else {
        return;
    };
    sys.active_user("dee", "dee@example.com", "dee-pass-123")
        .await;
    // Credential stuffing, one new address of the same /64 per try.
    for i in 1..=5 {
        let r = post_from(
            &sys,
            &format!("2001:db8:1:2::{i:x}"),
            LOGIN,
            json!({"username": format!("victim{i}"), "password": "leaked-pass-1"}),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 401);
    }
    let login = |ip: &str| {
        post_from(
            &sys,
            ip,
            LOGIN,
            json!({"username": "dee", "password": "dee-pass-123"}),
        )
    };
    assert_eq!(login("2001:db8:1:2:ffff::99").await.unwrap().status(), 429);
    assert_eq!(login("2001:db8:1:3::1").await.unwrap().status(), 200);

    // Registration, the same way.
    let register = |ip: String, i: usize| {
        post_from(
            &sys,
            &ip,
            "/api/accounts/register/",
            json!({"username": format!("six{i}"), "email": format!("six{i}@example.com"), "password": "long-pass-123"}),
        )
    };
    for i in 1..=3 {
        let r = register(format!("2001:db8:7:7::{i}"), i).await.unwrap();
        assert_eq!(r.status(), 201);
    }
    let r = register("2001:db8:7:7:1:2:3:4".into(), 4).await.unwrap();
    assert_eq!(r.status(), 429);

    // IPv4 written as IPv4-mapped IPv6 is the same client as the IPv4.
    for i in 0..3 {
        let ip = if i % 2 == 0 {
            "198.51.100.66"
        } else {
            "::ffff:198.51.100.66"
        };
        let r = register(ip.into(), 10 + i).await.unwrap();
        assert_eq!(r.status(), 201);
    }
    let r = register("::ffff:198.51.100.66".into(), 20).await.unwrap();
    assert_eq!(r.status(), 429);

    // The log keeps each full address, not the network.
    let log = sys.wait_for_attempts(7).await;
    let ips: Vec<String> = log.into_iter().map(|r| r.attempt.unwrap().ip).collect();
    assert!(ips.contains(&"2001:db8:1:2::3".to_owned()), "{ips:?}");
    assert!(ips.contains(&"2001:db8:1:2:ffff::99".to_owned()), "{ips:?}");
    sys.shutdown().await;
}

async fn callers_without_an_address_are_limited_as_one_client(backend: Backend) {
    let Some(sys) = TestSystem::start_with(backend, |auth, _| {
        auth.rate_limits.code_request = auth_service::throttle::Limit::parse("3/10m").unwrap();
    })
    .await
    else {
        return;
    };
    // An internal caller that sends no client address: straight to gRPC.
    let mut client =
        proto::auth::v1::auth_service_client::AuthServiceClient::connect(sys.auth_url.clone())
            .await
            .unwrap();
    let mut statuses = Vec::new();
    for i in 0..5 {
        let r = client
            .request_verification_code(proto::auth::v1::RequestVerificationCodeRequest {
                email: format!("anon{i}@example.com"),
            })
            .await;
        statuses.push(r.map(|_| tonic::Code::Ok).unwrap_or_else(|s| s.code()));
    }
    assert_eq!(
        statuses,
        [
            tonic::Code::Ok,
            tonic::Code::Ok,
            tonic::Code::Ok,
            tonic::Code::ResourceExhausted,
            tonic::Code::ResourceExhausted,
        ]
    );
    sys.shutdown().await;
}

async fn an_attacker_relocking_the_account_cannot_keep_its_owner_out(backend: Backend) {
    // The numbers: a lock after 4 failures, locks of 3 s then 6 s.
    let Some(sys) = TestSystem::start_with(backend, |auth, gw| {
        auth.brute_force.account_lock_failures = 4;
        auth.brute_force.account_lock_tiers = vec![3, 6];
        trust_loopback(gw);
    })
    .await
    else {
        return;
    };
    sys.active_user("eve", "eve@example.com", "eve-pass-123")
        .await;
    let owner = "198.51.100.10";
    let login = |ip: &str, password: &str| {
        post_from(
            &sys,
            ip,
            LOGIN,
            json!({"username": "eve", "password": password}),
        )
    };
    // The owner has logged in from home before: a known client.
    assert_eq!(login(owner, "eve-pass-123").await.unwrap().status(), 200);

    // An attacker on four addresses locks the account.
    let attackers = ["203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4"];
    for ip in attackers {
        assert_eq!(login(ip, "guess-pass-1").await.unwrap().status(), 401);
    }
    // Locked for an unknown client, even with the right password...
    assert_eq!(
        login("198.51.100.11", "eve-pass-123")
            .await
            .unwrap()
            .status(),
        429
    );
    // ...but not for the owner's known one, and the owner's login does not
    // lift the lock for anyone else.
    assert_eq!(login(owner, "eve-pass-123").await.unwrap().status(), 200);
    assert_eq!(
        login(attackers[0], "guess-pass-2").await.unwrap().status(),
        429
    );

    // Now the attacker re-locks continuously from four addresses while the
    // owner logs in 30 times.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let started = std::time::Instant::now();
    let attack: Vec<_> = attackers
        .iter()
        .map(|ip| {
            let (stop, http, url, ip) = (
                stop.clone(),
                sys.http.clone(),
                sys.url(LOGIN),
                ip.to_string(),
            );
            tokio::spawn(async move {
                let mut checked = 0;
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    let status = http
                        .post(&url)
                        .header("x-forwarded-for", &ip)
                        .json(&json!({"username": "eve", "password": format!("guess-{i}")}))
                        .send()
                        .await
                        .unwrap()
                        .status()
                        .as_u16();
                    assert!(status == 401 || status == 429, "attacker got {status}");
                    if status == 401 {
                        checked += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                checked
            })
        })
        .collect();
    let mut owner_in = 0;
    for _ in 0..30 {
        if login(owner, "eve-pass-123").await.unwrap().status() == 200 {
            owner_in += 1;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut attacker_checked = 0;
    for task in attack {
        attacker_checked += task.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert!(owner_in >= 29, "the owner got in {owner_in} of 30 times");
    // Within the limit: 4 guesses per lock, and a lock at most every 3 s
    // (the shortest tier), from the attack's start.
    let allowed = 4 * (1 + (elapsed / 3.0).ceil() as usize);
    assert!(
        attacker_checked <= allowed,
        "attacker had {attacker_checked} passwords checked in {elapsed:.1} s (allowed {allowed})"
    );
    sys.shutdown().await;
}

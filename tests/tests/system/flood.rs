//! A flood of refused logins costs bounded storage: attempts refused
//! before any password work (throttled, malformed) are stored as one
//! record per client, reason and window, with a count, so every one is
//! still accounted for (case 7 of issue 11).

use std::time::Instant;

use proto::audit::v1::Attempt;
use serde_json::json;
use system_tests::{Backend, TestSystem};

use crate::support::{burst, post_from, trust_loopback};

on_every_backend!(a_flood_of_refused_logins_is_stored_as_counted_records,);

const LOGIN: &str = "/api/accounts/login/";
/// Requests per burst, released together.
const BURST: usize = 60;
/// Bursts per kind of refusal.
const BURSTS: usize = 5;

/// `BURST` logins with `body` from `ip`, released by one barrier; their
/// statuses.
async fn flood(sys: &TestSystem, ip: &str, body: &serde_json::Value) -> Vec<u16> {
    burst(BURST, |_| post_from(sys, ip, LOGIN, body.clone()))
        .await
        .into_iter()
        .map(|reply| reply.status)
        .collect()
}

async fn a_flood_of_refused_logins_is_stored_as_counted_records(backend: Backend) {
    let Some(sys) = TestSystem::start_with(backend, |auth, gw| {
        auth.brute_force.ip_failures = 3;
        trust_loopback(gw);
    })
    .await
    else {
        return;
    };
    let started = Instant::now();
    // 60 KB names, as the flood that stored ~390 rows/s of ~2.8 KB each.
    let huge = "n".repeat(60_000);

    // Malformed: no password at all.
    let malformed = json!({"username": huge});
    let mut refused_malformed = 0;
    for _ in 0..BURSTS {
        let statuses = flood(&sys, "198.51.100.1", &malformed).await;
        assert!(statuses.iter().all(|&s| s == 400), "{statuses:?}");
        refused_malformed += statuses.len();
    }

    // Throttled: three wrong guesses block the address, the rest are
    // refused before any password work.
    let guess = json!({"username": huge, "password": "guess-pass-1"});
    let mut checked = 0;
    let mut throttled = 0;
    for _ in 0..BURSTS {
        let statuses = flood(&sys, "198.51.100.2", &guess).await;
        checked += statuses.iter().filter(|&&s| s == 401).count();
        throttled += statuses.iter().filter(|&&s| s == 429).count();
    }
    assert_eq!(checked, 3, "passwords checked before the block");
    assert_eq!(throttled, BURST * BURSTS - 3);
    let elapsed = started.elapsed().as_secs_f64().ceil() as usize;

    // Every attempt is counted...
    let total = refused_malformed + checked + throttled;
    sys.wait_for_attempts(total).await;
    let records: Vec<Attempt> = sys
        .all_attempts()
        .await
        .into_iter()
        .map(|r| r.attempt.unwrap())
        .collect();
    let sum = |reason: &str| -> (usize, usize) {
        let of: Vec<&Attempt> = records
            .iter()
            .filter(|a| a.reason().code() == reason)
            .collect();
        let attempts = of.iter().map(|a| a.count.max(1) as usize).sum();
        (of.len(), attempts)
    };
    let (malformed_records, malformed_attempts) = sum("malformed_request");
    let (throttled_records, throttled_attempts) = sum("rate_limited");
    assert_eq!(malformed_attempts, refused_malformed);
    assert_eq!(throttled_attempts, throttled);
    assert_eq!(
        sum("unknown_user"),
        (3, 3),
        "decided attempts stay one each"
    );

    println!(
        "{backend:?}: {refused_malformed} malformed in {malformed_records} records, \
         {throttled} throttled in {throttled_records} records, over {elapsed} s"
    );
    // ...in at most one record per (one-second) window the flood touched,
    // or two where a refusal decided just before a window's end was
    // written just after the forwarder closed that window's record.
    let windows = 2 * (elapsed + 1);
    assert!(
        malformed_records <= windows && throttled_records <= windows,
        "{malformed_records} and {throttled_records} records for {elapsed} s"
    );
    for a in records.iter().filter(|a| a.count > 1) {
        assert!(a.last_occurred_at.is_some(), "{a:?}");
        assert!(a.identifier.len() <= 254 * 4, "kept identifiers stay cut");
    }

    // The REST listing shows the count too.
    let admin = sys.admin_token().await;
    let (status, page) = sys
        .get(
            "/api/accounts/logs/login/attemps/?reason=rate_limited",
            Some(&admin),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let listed: u64 = page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["count"].as_u64().unwrap())
        .sum();
    assert_eq!(listed as usize, throttled);
    // So do the chart's counts: attempts, not records.
    let (status, counts) = sys
        .get(
            "/api/accounts/logs/login/attemps/counts/?bucket=1d&reason=rate_limited",
            Some(&admin),
        )
        .await;
    assert_eq!(status, 200, "{counts}");
    let counted: u64 = counts["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["failures"].as_u64().unwrap())
        .sum();
    assert_eq!(counted as usize, throttled);
    sys.shutdown().await;
}

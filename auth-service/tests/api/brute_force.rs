//! The login brute-force rules (SECURITY.md, "How throttled logins
//! behave"), at a fixed clock: every wait is exact and every expiry is
//! reached by naming a later instant, not by sleeping.

use auth_service::{store::AuthStore, throttle::BruteForcePolicy};

use crate::helpers::{Outcome::*, Rules, T0, outcome};

on_every_backend!(
    failures_on_one_account_from_one_address_get_doubling_delays,
    an_account_lock_ends_by_itself_and_spares_no_address,
    credential_stuffing_blocks_the_address_only_until_its_block_ends,
);

async fn failures_on_one_account_from_one_address_get_doubling_delays<S: AuthStore>(
    rules: Rules<S>,
) {
    let rules = rules.with_policy(BruteForcePolicy {
        pair_base_delay: 3,
        ..BruteForcePolicy::default()
    });
    rules.active_user("alice", "alice-pass-1").await;
    let attacker = "203.0.113.1";
    for _ in 0..5 {
        let r = rules.login(attacker, "alice", "guess-pass-1", T0).await;
        assert_eq!(outcome(r), Refused);
    }
    // The fifth failure starts the first delay; even the right password is
    // refused during it, as the answer is decided before the password.
    let r = rules.login(attacker, "alice", "alice-pass-1", T0).await;
    assert_eq!(outcome(r), Wait(3));
    let r = rules.login(attacker, "alice", "alice-pass-1", T0 + 2).await;
    assert_eq!(outcome(r), Wait(1));
    // The owner elsewhere is not held back.
    let r = rules
        .login("198.51.100.2", "alice", "alice-pass-1", T0)
        .await;
    assert_eq!(outcome(r), LoggedIn);
    // Each further failure doubles the delay.
    let r = rules.login(attacker, "alice", "guess-pass-2", T0 + 3).await;
    assert_eq!(outcome(r), Refused);
    let r = rules.login(attacker, "alice", "guess-pass-3", T0 + 3).await;
    assert_eq!(outcome(r), Wait(6));
    let r = rules.login(attacker, "alice", "guess-pass-3", T0 + 9).await;
    assert_eq!(outcome(r), Refused);
    let r = rules.login(attacker, "alice", "guess-pass-4", T0 + 9).await;
    assert_eq!(outcome(r), Wait(12));
}

async fn an_account_lock_ends_by_itself_and_spares_no_address<S: AuthStore>(rules: Rules<S>) {
    let rules = rules.with_policy(BruteForcePolicy {
        account_lock_failures: 3,
        account_lock_tiers: vec![120, 600],
        ..BruteForcePolicy::default()
    });
    rules.active_user("cleo", "cleo-pass-12").await;
    // Username and email, in any case, count together.
    for (i, who) in ["cleo", "CLEO@example.com", "Cleo"].iter().enumerate() {
        let r = rules
            .login(&format!("10.1.0.{i}"), who, "guess-pass-1", T0)
            .await;
        assert_eq!(outcome(r), Refused);
    }
    // Locked for every address that never logged in to it, right password
    // or not, until the first tier ends.
    let r = rules
        .login("10.1.1.1", "cleo", "cleo-pass-12", T0 + 1)
        .await;
    assert_eq!(outcome(r), Wait(119));
    let r = rules
        .login("10.1.1.2", "cleo@example.com", "cleo-pass-12", T0 + 119)
        .await;
    assert_eq!(outcome(r), Wait(1));
    let r = rules
        .login("10.1.1.1", "cleo", "cleo-pass-12", T0 + 120)
        .await;
    assert_eq!(outcome(r), LoggedIn);
}

async fn credential_stuffing_blocks_the_address_only_until_its_block_ends<S: AuthStore>(
    rules: Rules<S>,
) {
    let rules = rules.with_policy(BruteForcePolicy {
        ip_failures: 5,
        ..BruteForcePolicy::default()
    });
    rules.active_user("dan", "dan-pass-123").await;
    let stuffer = "198.51.100.7";
    for i in 0..5 {
        let r = rules
            .login(stuffer, &format!("victim{i}"), "leaked-pass-1", T0 + i)
            .await;
        assert_eq!(outcome(r), Refused);
    }
    // Valid leaked credentials are refused from that address for the
    // whole block (AUTH_BF_IP_BLOCK, 600 s from the fifth failure)...
    let r = rules.login(stuffer, "dan", "dan-pass-123", T0 + 4).await;
    assert_eq!(outcome(r), Wait(600));
    let r = rules.login(stuffer, "dan", "dan-pass-123", T0 + 603).await;
    assert_eq!(outcome(r), Wait(1));
    // ...but work from anywhere else, and from it once the block ends.
    let r = rules
        .login("198.51.100.8", "dan", "dan-pass-123", T0 + 5)
        .await;
    assert_eq!(outcome(r), LoggedIn);
    let r = rules.login(stuffer, "dan", "dan-pass-123", T0 + 604).await;
    assert_eq!(outcome(r), LoggedIn);
}

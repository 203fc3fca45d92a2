//! The suspicious-activity flag, computed at ingest (threshold 3 here).

use proto::audit::v1::{Attempt, ListAttemptsRequest};

use crate::helpers::{TestApp, TestDb, batch, failure, success};

async fn spawn(db: TestDb) -> TestApp {
    TestApp::spawn_with(db, |c| c.suspicious_threshold = 3).await
}

/// The flag of each attempt in `attempts`, looked up by event id.
async fn flags(app: &TestApp, attempts: &[Attempt]) -> Vec<bool> {
    let listed = app.list_all(ListAttemptsRequest::default()).await;
    attempts
        .iter()
        .map(|a| {
            listed
                .iter()
                .find(|r| r.attempt.as_ref().unwrap().event_id == a.event_id)
                .unwrap()
                .suspicious
        })
        .collect()
}

async fn the_third_failure_from_one_ip_within_an_hour_is_suspicious(db: TestDb) {
    let app = spawn(db).await;
    // Different emails, so only the IP links them; separate batches, so the
    // rule sees committed rows from earlier transactions.
    let attempts = vec![
        failure("10.0.0.1", "a@x.io", 0),
        failure("10.0.0.1", "b@x.io", 600),
        failure("10.0.0.1", "c@x.io", 1200),
        failure("10.0.0.1", "d@x.io", 1800),
        failure("10.0.0.2", "e@x.io", 1800),
    ];
    for (seq, a) in attempts.iter().enumerate() {
        let seq = u64::try_from(seq).unwrap();
        let outcome = app.ingest(vec![batch(seq, vec![a.clone()])]).await;
        assert_eq!(outcome.acks, vec![(seq, 1)]);
    }

    assert_eq!(
        flags(&app, &attempts).await,
        vec![false, false, true, true, false]
    );
}

async fn failures_for_one_email_from_many_ips_are_suspicious(db: TestDb) {
    let app = spawn(db).await;
    // One batch: earlier rows of the same transaction count too.
    let attempts = vec![
        failure("10.0.0.1", "alice@x.io", 0),
        failure("10.0.0.2", "ALICE@x.io", 1),
        failure("10.0.0.3", "Alice@X.io", 2),
    ];
    app.ingest_ok(attempts.clone()).await;

    assert_eq!(flags(&app, &attempts).await, vec![false, false, true]);
}

async fn failures_older_than_an_hour_do_not_count(db: TestDb) {
    let app = spawn(db).await;
    let attempts = vec![
        failure("10.0.0.1", "a@x.io", 0),
        failure("10.0.0.1", "b@x.io", 1800),
        // Exactly one hour after the first: it has left the window.
        failure("10.0.0.1", "c@x.io", 3600),
        // Two others within the hour before this one.
        failure("10.0.0.1", "d@x.io", 3601),
    ];
    app.ingest_ok(attempts.clone()).await;

    assert_eq!(
        flags(&app, &attempts).await,
        vec![false, false, false, true]
    );
}

async fn successes_are_never_suspicious_and_do_not_count(db: TestDb) {
    let app = spawn(db).await;
    let attempts = vec![
        success("10.0.0.1", "a@x.io", 0),
        success("10.0.0.1", "a@x.io", 1),
        failure("10.0.0.1", "a@x.io", 2),
        failure("10.0.0.1", "a@x.io", 3),
        failure("10.0.0.1", "a@x.io", 4),
        success("10.0.0.1", "a@x.io", 5),
    ];
    app.ingest_ok(attempts.clone()).await;

    assert_eq!(
        flags(&app, &attempts).await,
        vec![false, false, false, false, true, false]
    );
}

async fn unknown_ips_and_emails_are_not_one_client(db: TestDb) {
    let app = spawn(db).await;
    let attempts: Vec<Attempt> = (0..4).map(|s| failure("", "", s)).collect();
    app.ingest_ok(attempts.clone()).await;

    assert_eq!(flags(&app, &attempts).await, vec![false; 4]);
}

/// One address however it is written: IPv4, IPv4-mapped IPv6, and IPv6
/// with different zero compression are one client to the rule, stored
/// rows and rows of the same batch alike.
async fn one_address_in_different_spellings_is_one_client(db: TestDb) {
    let app = spawn(db).await;
    let first = vec![
        failure("10.0.0.7", "a@x.io", 0),
        failure("::ffff:10.0.0.7", "b@x.io", 60),
    ];
    app.ingest(vec![batch(1, first.clone())]).await;
    let third = vec![failure("::FFFF:0a00:0007", "c@x.io", 120)];
    app.ingest(vec![batch(2, third.clone())]).await;
    let other = vec![
        failure("2001:db8::1", "d@x.io", 130),
        failure("2001:db8:0:0::1", "e@x.io", 140),
        failure("2001:0db8::0001", "f@x.io", 150),
    ];
    app.ingest(vec![batch(3, other.clone())]).await;

    assert_eq!(flags(&app, &first).await, vec![false, false]);
    assert_eq!(flags(&app, &third).await, vec![true]);
    assert_eq!(flags(&app, &other).await, vec![false, false, true]);
}

/// A producer's own flag (an imported row's) is stored as it says, both
/// ways, while the rule judges the attempts without one; a failure whose
/// flag was given still counts toward the rule for the others.
async fn a_producers_own_flag_is_stored_and_the_rule_judges_the_rest(db: TestDb) {
    let app = spawn(db).await;
    let given = |a: Attempt, flag: bool| Attempt {
        suspicious: Some(flag),
        ..a
    };
    let attempts = vec![
        failure("10.0.0.1", "a@x.io", 0),
        failure("10.0.0.1", "b@x.io", 60),
        // The rule would flag this third failure; its producer said no.
        given(failure("10.0.0.1", "c@x.io", 120), false),
        // The fourth is flagged by the rule: the third counted.
        failure("10.0.0.1", "d@x.io", 180),
        // A lone failure and a success, flagged by their producer.
        given(failure("10.0.0.9", "e@x.io", 0), true),
        given(success("10.0.0.8", "f@x.io", 0), true),
    ];
    for (seq, a) in attempts.iter().enumerate() {
        let seq = u64::try_from(seq).unwrap();
        let outcome = app.ingest(vec![batch(seq, vec![a.clone()])]).await;
        assert_eq!(outcome.acks, vec![(seq, 1)]);
    }

    assert_eq!(
        flags(&app, &attempts).await,
        [false, false, false, true, true, true]
    );
}

on_every_backend!(
    a_producers_own_flag_is_stored_and_the_rule_judges_the_rest,
    one_address_in_different_spellings_is_one_client,
    the_third_failure_from_one_ip_within_an_hour_is_suspicious,
    failures_for_one_email_from_many_ips_are_suspicious,
    failures_older_than_an_hour_do_not_count,
    successes_are_never_suspicious_and_do_not_count,
    unknown_ips_and_emails_are_not_one_client,
);

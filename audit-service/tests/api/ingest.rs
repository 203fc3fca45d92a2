//! Ingest: acks, idempotency, validation, failure handling.

use proto::audit::v1::{Attempt, ListAttemptsRequest};
use tonic::Code;

use crate::helpers::{TestApp, TestDb, at, batch, event_ids, failure, success};

async fn each_batch_is_acked_in_order_with_its_inserted_count(db: TestDb) {
    let app = TestApp::spawn(db).await;

    let outcome = app
        .ingest(vec![
            batch(
                7,
                vec![
                    failure("10.0.0.1", "a@x.io", 1),
                    success("10.0.0.1", "a@x.io", 2),
                ],
            ),
            batch(
                8,
                vec![
                    failure("10.0.0.2", "b@x.io", 3),
                    failure("10.0.0.2", "b@x.io", 4),
                    failure("10.0.0.2", "b@x.io", 5),
                ],
            ),
            batch(9, vec![]),
        ])
        .await;

    assert!(outcome.error.is_none(), "{outcome:?}");
    assert_eq!(outcome.acks, vec![(7, 2), (8, 3), (9, 0)]);
    assert_eq!(app.list_all(ListAttemptsRequest::default()).await.len(), 5);
}

async fn resending_a_batch_inserts_nothing_and_each_event_is_listed_once(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let attempts = vec![
        failure("10.0.0.1", "a@x.io", 1),
        failure("10.0.0.1", "a@x.io", 2),
        success("10.0.0.1", "a@x.io", 3),
    ];
    app.ingest_ok(attempts.clone()).await;

    // As a producer would after a reconnect: same batch, new stream.
    let resent = app.ingest(vec![batch(1, attempts.clone())]).await;

    assert!(resent.error.is_none(), "{resent:?}");
    assert_eq!(resent.acks, vec![(1, 0)]);
    let mut listed = event_ids(&app.list_all(ListAttemptsRequest::default()).await);
    listed.sort();
    let mut sent: Vec<String> = attempts.into_iter().map(|a| a.event_id).collect();
    sent.sort();
    assert_eq!(listed, sent);
}

async fn a_duplicate_within_one_batch_is_stored_once(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let a = failure("10.0.0.1", "a@x.io", 1);
    // The same UUID in upper case is the same event.
    let shouted = Attempt {
        event_id: a.event_id.to_uppercase(),
        ..a.clone()
    };

    let outcome = app
        .ingest(vec![batch(1, vec![a.clone(), a, shouted])])
        .await;

    assert_eq!(outcome.acks, vec![(1, 1)]);
    assert_eq!(app.list_all(ListAttemptsRequest::default()).await.len(), 1);
}

async fn an_invalid_event_id_ends_the_stream_and_stores_nothing_of_its_batch(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let good = failure("10.0.0.1", "a@x.io", 1);
    let bad = Attempt {
        event_id: "not-a-uuid".to_owned(),
        ..failure("10.0.0.1", "a@x.io", 2)
    };

    let outcome = app
        .ingest(vec![
            batch(1, vec![good.clone()]),
            batch(2, vec![failure("10.0.0.9", "z@x.io", 3), bad]),
            batch(3, vec![failure("10.0.0.1", "a@x.io", 4)]),
        ])
        .await;

    assert_eq!(outcome.acks, vec![(1, 1)]);
    let status = outcome.error.unwrap();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("attempts[1].event_id"),
        "{status:?}"
    );
    let listed = app.list_all(ListAttemptsRequest::default()).await;
    assert_eq!(event_ids(&listed), vec![good.event_id]);
}

async fn an_attempt_without_a_time_is_refused(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let timeless = Attempt {
        occurred_at: None,
        ..failure("10.0.0.1", "a@x.io", 1)
    };

    let outcome = app.ingest(vec![batch(1, vec![timeless])]).await;

    assert!(outcome.acks.is_empty());
    let status = outcome.error.unwrap();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("attempts[0].occurred_at"),
        "{status:?}"
    );
}

/// The ways a single row can be refused: its batch is not acked and nothing
/// of it is stored, and the message names the row, the field and the event,
/// so the producer can find and set aside the one row.
async fn assert_refused(db: TestDb, bad: Attempt, field: &str) {
    let app = TestApp::spawn(db).await;
    let earlier = failure("10.0.0.1", "a@x.io", 1);

    let outcome = app
        .ingest(vec![
            batch(1, vec![earlier.clone()]),
            batch(2, vec![failure("10.0.0.9", "z@x.io", 3), bad.clone()]),
        ])
        .await;

    assert_eq!(outcome.acks, vec![(1, 1)]);
    let status = outcome.error.unwrap();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .starts_with(&format!("attempts[1].{field} ")),
        "{status:?}"
    );
    assert!(status.message().contains(&bad.event_id), "{status:?}");
    let listed = app.list_all(ListAttemptsRequest::default()).await;
    assert_eq!(event_ids(&listed), vec![earlier.event_id]);
}

async fn an_ip_that_is_no_address_is_refused(db: TestDb) {
    assert_refused(db, failure("10.0.0.300", "a@x.io", 2), "ip").await;
}

async fn a_failure_with_an_unknown_reason_is_refused(db: TestDb) {
    let bad = Attempt {
        reason: 99,
        ..failure("10.0.0.1", "a@x.io", 2)
    };
    assert_refused(db, bad, "reason").await;
}

async fn a_failure_without_a_reason_is_refused(db: TestDb) {
    let bad = Attempt {
        reason: 0,
        ..failure("10.0.0.1", "a@x.io", 2)
    };
    assert_refused(db, bad, "reason").await;
}

async fn a_success_with_a_reason_is_refused(db: TestDb) {
    let bad = Attempt {
        reason: proto::audit::v1::RejectReason::BadPassword as i32,
        ..success("10.0.0.1", "a@x.io", 2)
    };
    assert_refused(db, bad, "reason").await;
}

async fn an_attempt_dated_ten_minutes_ahead_is_refused(db: TestDb) {
    // T0 is a day ago.
    assert_refused(
        db,
        failure("10.0.0.1", "a@x.io", 86_400 + 600),
        "occurred_at",
    )
    .await;
}

async fn a_success_counting_several_attempts_is_refused(db: TestDb) {
    let bad = Attempt {
        count: 2,
        last_occurred_at: Some(at(3)),
        ..success("10.0.0.1", "a@x.io", 2)
    };
    assert_refused(db, bad, "count").await;
}

async fn a_tally_without_its_last_time_is_refused(db: TestDb) {
    let bad = Attempt {
        count: 5,
        ..failure("10.0.0.1", "a@x.io", 2)
    };
    assert_refused(db, bad, "last_occurred_at").await;
}

async fn a_tally_ending_before_it_began_is_refused(db: TestDb) {
    let bad = Attempt {
        count: 5,
        last_occurred_at: Some(at(1)),
        ..failure("10.0.0.1", "a@x.io", 2)
    };
    assert_refused(db, bad, "last_occurred_at").await;
}

async fn an_attempt_dated_over_a_year_ago_is_refused(db: TestDb) {
    let bad = failure("10.0.0.1", "a@x.io", -366 * 86_400);
    assert_refused(db, bad, "occurred_at").await;
}

/// An attempt imported from another system's log (marked `imported`) is
/// stored however old, with the producer's original reason text beside the
/// mapped reason and read back as sent; the producer's flag becomes the
/// record's (it is not echoed in the attempt).
async fn an_imported_attempt_keeps_its_age_and_original_reason_text(db: TestDb) {
    let app = TestApp::spawn(db).await;
    // 2020-09-13, years older than live attempts may be.
    let old = |seconds| prost_types::Timestamp {
        seconds,
        nanos: 250_000_000,
    };
    let wrong = Attempt {
        occurred_at: Some(old(1_600_000_000)),
        original_reject_reason: Some("Wrong password".to_owned()),
        suspicious: Some(true),
        imported: true,
        ..failure("10.9.0.1", "imp@x.io", 0)
    };
    let ok = Attempt {
        occurred_at: Some(old(1_600_000_001)),
        original_reject_reason: Some(String::new()),
        suspicious: Some(false),
        imported: true,
        ..success("10.9.0.1", "imp@x.io", 0)
    };

    app.ingest_ok(vec![wrong.clone(), ok.clone()]).await;

    let listed = app.list_all(ListAttemptsRequest::default()).await;
    let login = proto::audit::v1::AttemptKind::Login as i32;
    let as_stored = |a: Attempt| Attempt {
        suspicious: None,
        imported: false,
        count: 1,
        kind: login,
        ..a
    };
    let records: Vec<(bool, Attempt)> = listed
        .into_iter()
        .map(|r| (r.suspicious, r.attempt.unwrap()))
        .collect();
    assert_eq!(
        records,
        vec![(false, as_stored(ok)), (true, as_stored(wrong))]
    );
}

/// Text the log must keep exactly as sent, NUL aside (PostgreSQL cannot
/// store it, so it is dropped everywhere): characters outside the BMP
/// (4 bytes in UTF-8, which MariaDB keeps only in `utf8mb4`), fullwidth
/// lookalikes, combining marks, and each text field at its full length.
async fn every_field_round_trips_unchanged_but_nul_and_absent_optionals_stay_absent(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let full = Attempt {
        event_id: uuid::Uuid::now_v7().to_string(),
        occurred_at: Some(prost_types::Timestamp {
            seconds: *crate::helpers::T0,
            nanos: 123_456_000,
        }),
        identifier: "Alice".to_owned(),
        user_id: Some(42),
        username: Some("alice".to_owned()),
        email: "Alice@Example.com".to_owned(),
        successful: true,
        reason: 0,
        ip: "2001:db8::1".to_owned(),
        // What COPY's text format must escape, and what it would read as
        // NULL or end-of-data unescaped.
        user_agent: Some("Mozilla/5.0 ünïcode\ttab\nline\r\\N \\.".to_owned()),
        request_id: "req-1".to_owned(),
        trace_parent: None,
        count: 1,
        last_occurred_at: None,
        ..Default::default()
    };
    let bare = Attempt {
        event_id: uuid::Uuid::now_v7().to_string(),
        occurred_at: Some(at(-10)),
        identifier: String::new(),
        user_id: None,
        username: None,
        email: String::new(),
        successful: false,
        reason: proto::audit::v1::RejectReason::MalformedRequest as i32,
        ip: String::new(),
        user_agent: None,
        request_id: String::new(),
        trace_parent: None,
        count: 0,
        last_occurred_at: None,
        ..Default::default()
    };

    // Each text field at its cap (identifier and email 320, username 150,
    // user agent 512, request id 128 characters), in characters of 4 bytes
    // where that is the point, with NUL sprinkled in.
    let fraktur = "\u{1D51E}"; // 𝔞, MATHEMATICAL FRAKTUR SMALL A
    let exotic = Attempt {
        event_id: uuid::Uuid::now_v7().to_string(),
        occurred_at: Some(at(-20)),
        identifier: format!("\0{}", fraktur.repeat(319)) + "\0😀",
        user_id: Some(i64::MAX),
        // e + COMBINING ACUTE ACCENT: two characters, one on screen.
        username: Some("e\u{301}".repeat(75)),
        // Fullwidth lookalikes of admin@example.com, then 4-byte padding.
        email: format!("ａｄｍｉｎ＠ｅｘａｍｐｌｅ．ｃｏｍ{}", "🦀".repeat(303)),
        successful: false,
        reason: proto::audit::v1::RejectReason::LockedOut as i32,
        ip: "\0::ffff:192.0.2.1".to_owned(),
        // A family emoji (ZWJ sequence), a flag, a skin tone, an RTL mark.
        user_agent: Some(
            "👨\u{200D}👩\u{200D}👧🇩🇪👍🏽\u{200F}"
                .repeat(64)
                .chars()
                .take(512)
                .collect(),
        ),
        request_id: "ｒｅｑ-𝔞\u{301}ｉｄ".repeat(16),
        trace_parent: None,
        // A producer's tally of refusals keeps its count and last time.
        count: u32::MAX,
        last_occurred_at: Some(at(-15)),
        ..Default::default()
    };
    let exotic_stored = Attempt {
        identifier: exotic.identifier.replace('\0', ""),
        ip: "::ffff:192.0.2.1".to_owned(),
        ..exotic.clone()
    };
    assert_eq!(exotic_stored.identifier.chars().count(), 320);
    assert_eq!(exotic_stored.email.chars().count(), 320);
    assert_eq!(
        exotic_stored.user_agent.as_ref().unwrap().chars().count(),
        512
    );
    assert_eq!(exotic_stored.request_id.chars().count(), 128);

    app.ingest_ok(vec![full.clone(), bare.clone(), exotic.clone()])
        .await;

    let listed = app.list_all(ListAttemptsRequest::default()).await;
    let stored: Vec<Attempt> = listed.into_iter().map(|r| r.attempt.unwrap()).collect();
    // A count of 0 means one attempt, and is listed as 1; an unspecified
    // kind (a producer from before kinds) is a login, and listed as one.
    let login = proto::audit::v1::AttemptKind::Login as i32;
    let full = Attempt {
        kind: login,
        ..full
    };
    let bare_stored = Attempt {
        count: 1,
        kind: login,
        ..bare
    };
    let exotic_stored = Attempt {
        kind: login,
        ..exotic_stored
    };
    assert_eq!(stored, vec![full, bare_stored, exotic_stored]);
}

async fn overlong_text_is_truncated_rather_than_rejected(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let long = Attempt {
        user_agent: Some("u".repeat(5_000)),
        email: format!("{}@x.io", "e".repeat(1_000)),
        identifier: "i".repeat(1_000),
        ..failure("10.0.0.1", "", 1)
    };

    app.ingest_ok(vec![long]).await;

    let listed = app.list_all(ListAttemptsRequest::default()).await;
    let stored = listed[0].attempt.as_ref().unwrap();
    assert_eq!(stored.user_agent.as_ref().unwrap().len(), 512);
    assert_eq!(stored.email.len(), 320);
    assert_eq!(stored.identifier.len(), 320);
}

/// Many batches sent at once are committed in groups; acks still come one
/// per batch, in order, and a row repeated in the next batch counts only
/// for the first.
async fn batches_sent_ahead_are_acked_in_order_across_group_commits(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let mut batches = Vec::new();
    let mut previous: Option<Attempt> = None;
    for seq in 0..24u64 {
        let mut attempts: Vec<Attempt> = (0..300)
            .map(|i| failure(&format!("10.9.{}.{}", seq, i % 200), "bulk@x.io", i))
            .collect();
        let fresh = attempts.len();
        if let Some(repeat) = previous.take() {
            attempts.push(repeat);
        }
        previous = Some(attempts[0].clone());
        assert_eq!(fresh, 300);
        batches.push(batch(seq, attempts));
    }

    let outcome = app.ingest(batches).await;

    assert!(outcome.error.is_none(), "{outcome:?}");
    let expected: Vec<(u64, u32)> = (0..24).map(|seq| (seq, 300)).collect();
    assert_eq!(outcome.acks, expected);
    let listed = app.list_all(ListAttemptsRequest::default()).await;
    assert_eq!(listed.len(), 24 * 300);
}

async fn a_database_failure_ends_the_stream_unavailable_without_an_ack(db: TestDb) {
    let app = TestApp::spawn(db).await;
    app.ingest_ok(vec![failure("10.0.0.1", "a@x.io", 1)]).await;
    app.db().execute("DROP TABLE login_attempts").await;

    let outcome = app
        .ingest(vec![batch(2, vec![failure("10.0.0.1", "a@x.io", 2)])])
        .await;

    assert!(outcome.acks.is_empty(), "{outcome:?}");
    let status = outcome.error.unwrap();
    assert_eq!(status.code(), Code::Unavailable);
    // Internal details stay in the server log.
    assert!(!status.message().contains("login_attempts"), "{status:?}");
}

/// More producers at once than the service keeps database connections
/// (PostgreSQL's pool holds 10, and a large group may use two): every
/// stream is served, nothing fails for want of a connection, and each event
/// is stored once.
async fn more_producers_than_pooled_connections_are_all_stored(db: TestDb) {
    const PRODUCERS: u64 = 12;
    let app = TestApp::spawn(db).await;
    let streams: Vec<Vec<_>> = (0..PRODUCERS)
        .map(|p| {
            (0..3u64)
                .map(|seq| {
                    let attempts = (0..700)
                        .map(|i| failure(&format!("10.{p}.{seq}.{}", i % 250), "", i))
                        .collect();
                    batch(seq, attempts)
                })
                .collect()
        })
        .collect();

    let outcomes =
        futures::future::join_all(streams.into_iter().map(|batches| app.ingest(batches))).await;

    for outcome in &outcomes {
        assert!(outcome.error.is_none(), "{outcome:?}");
        assert_eq!(outcome.acks, vec![(0, 700), (1, 700), (2, 700)]);
    }
    let listed = event_ids(&app.list_all(ListAttemptsRequest::default()).await);
    let unique: std::collections::HashSet<&String> = listed.iter().collect();
    assert_eq!(listed.len(), usize::try_from(PRODUCERS).unwrap() * 3 * 700);
    assert_eq!(unique.len(), listed.len());
}

on_every_backend!(
    an_imported_attempt_keeps_its_age_and_original_reason_text,
    more_producers_than_pooled_connections_are_all_stored,
    each_batch_is_acked_in_order_with_its_inserted_count,
    resending_a_batch_inserts_nothing_and_each_event_is_listed_once,
    a_duplicate_within_one_batch_is_stored_once,
    an_invalid_event_id_ends_the_stream_and_stores_nothing_of_its_batch,
    an_attempt_without_a_time_is_refused,
    an_ip_that_is_no_address_is_refused,
    a_failure_with_an_unknown_reason_is_refused,
    a_failure_without_a_reason_is_refused,
    a_success_with_a_reason_is_refused,
    an_attempt_dated_ten_minutes_ahead_is_refused,
    an_attempt_dated_over_a_year_ago_is_refused,
    a_success_counting_several_attempts_is_refused,
    a_tally_without_its_last_time_is_refused,
    a_tally_ending_before_it_began_is_refused,
    every_field_round_trips_unchanged_but_nul_and_absent_optionals_stay_absent,
    overlong_text_is_truncated_rather_than_rejected,
    batches_sent_ahead_are_acked_in_order_across_group_commits,
    a_database_failure_ends_the_stream_unavailable_without_an_ack,
);

/// PostgreSQL copies rows in, and `COPY` has no `ON CONFLICT`: an event
/// another stream commits while this one is storing it (a producer that
/// reconnected and resent) is still stored once, and the rest of the batch
/// with it.
#[tokio::test]
async fn postgres_an_event_committed_meanwhile_by_another_stream_is_stored_once() {
    use sqlx::{Connection, PgConnection};

    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let mut other_stream = PgConnection::connect(&db.url).await.unwrap();
    let mut watcher = PgConnection::connect(&db.url).await.unwrap();
    let app = TestApp::spawn(db).await;
    let racing = failure("10.0.0.1", "a@x.io", 1);
    let fresh = failure("10.0.0.2", "b@x.io", 2);
    let mut held = other_stream.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO login_attempts (event_id, occurred_at, identifier, email, email_lower, \
         successful, reject_reason, ip, request_id, suspicious, ip_key) \
         VALUES ($1::uuid, $2, 'a@x.io', 'a@x.io', 'a@x.io', FALSE, 'bad_password', \
         '10.0.0.1', '', FALSE, '00000000000000000000ffff0a000001')",
    )
    .bind(&racing.event_id)
    .bind((*crate::helpers::T0 + 1) * 1_000_000)
    .execute(&mut *held)
    .await
    .unwrap();

    let ingest = app.ingest(vec![batch(1, vec![racing.clone(), fresh.clone()])]);
    let commit_once_blocked = async {
        // The service's insert waits on the held row's unique key.
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(&mut watcher)
            .await
            .unwrap();
            if waiting > 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        held.commit().await.unwrap();
    };
    let (outcome, ()) = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        tokio::join!(ingest, commit_once_blocked)
    })
    .await
    .expect("the insert never waited on the held row");

    assert!(outcome.error.is_none(), "{outcome:?}");
    assert_eq!(outcome.acks, vec![(1, 1)]);
    let mut listed = event_ids(&app.list_all(ListAttemptsRequest::default()).await);
    listed.sort();
    let mut sent = vec![racing.event_id, fresh.event_id];
    sent.sort();
    assert_eq!(listed, sent);
}

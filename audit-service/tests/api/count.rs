//! CountAttempts: attempts per time bucket, for a chart. Sums of attempts
//! (a tallied record counts as its `count`), buckets aligned to the epoch,
//! empty ones included, the listing's filters, and the limits.

use std::collections::BTreeMap;

use prost_types::{Duration, Timestamp};
use proto::audit::v1::{
    Attempt, AttemptBucket, AttemptFilter, AttemptKind, CountAttemptsRequest, ListAttemptsRequest,
    RejectReason,
};
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::helpers::{TestApp, TestDb, failure, success};

/// 2020-09-14T00:00:00Z, a midnight UTC: imported history may lie this far
/// back, so bucket boundaries can be fixed instants.
const DAY: i64 = 1_600_041_600;
const HOUR: i64 = 3_600;

fn ts(seconds: i64) -> Timestamp {
    Timestamp { seconds, nanos: 0 }
}

/// `a` as imported history at `seconds` (Unix).
fn at(a: Attempt, seconds: i64) -> Attempt {
    Attempt {
        occurred_at: Some(ts(seconds)),
        imported: true,
        ..a
    }
}

/// A record standing for `count` refused attempts, the first at `seconds`.
fn tally(ip: &str, seconds: i64, count: u32) -> Attempt {
    Attempt {
        reason: RejectReason::RateLimited as i32,
        count,
        last_occurred_at: Some(ts(seconds + 20)),
        ..at(failure(ip, "flood@x.io", 0), seconds)
    }
}

fn flagged(a: Attempt, flag: bool) -> Attempt {
    Attempt {
        suspicious: Some(flag),
        ..a
    }
}

fn request(
    filter: AttemptFilter,
    since: Option<i64>,
    until: Option<i64>,
    bucket: i64,
) -> CountAttemptsRequest {
    CountAttemptsRequest {
        filter: Some(AttemptFilter {
            since: since.map(ts),
            until: until.map(ts),
            ..filter
        }),
        bucket: Some(Duration {
            seconds: bucket,
            nanos: 0,
        }),
    }
}

/// `(start, successes, failures, suspicious)` of each bucket.
fn table(buckets: &[AttemptBucket]) -> Vec<(i64, u64, u64, u64)> {
    buckets
        .iter()
        .map(|b| {
            (
                b.start.unwrap().seconds,
                b.successes,
                b.failures,
                b.suspicious,
            )
        })
        .collect()
}

/// A day of history: a success, a failure and a tally of 5 refusals in
/// the first hour, nothing in the second, a suspicious failure in the
/// third, a flagged success and a flagged tally of 4 in the fourth.
fn history() -> Vec<Attempt> {
    vec![
        at(success("10.0.0.1", "a@x.io", 0), DAY + 10),
        at(failure("10.0.0.1", "a@x.io", 0), DAY + 20),
        tally("10.0.0.2", DAY + 30, 5),
        flagged(
            at(failure("10.1.0.1", "b@x.io", 0), DAY + 2 * HOUR + 5),
            true,
        ),
        flagged(at(success("10.1.0.1", "b@x.io", 0), DAY + 3 * HOUR), true),
        flagged(tally("10.1.0.2", DAY + 3 * HOUR + 59, 4), true),
    ]
}

async fn counts_are_sums_of_attempts_and_empty_buckets_are_zero(db: TestDb) {
    let app = TestApp::spawn(db).await;
    app.ingest_ok(history()).await;

    let counts = app
        .count(request(
            AttemptFilter::default(),
            Some(DAY),
            Some(DAY + 4 * HOUR),
            HOUR,
        ))
        .await
        .unwrap();

    assert_eq!(
        table(&counts.buckets),
        [
            (DAY, 1, 6, 0),
            (DAY + HOUR, 0, 0, 0),
            (DAY + 2 * HOUR, 0, 1, 1),
            (DAY + 3 * HOUR, 1, 4, 5),
        ]
    );
    assert_eq!(counts.since, Some(ts(DAY)));
    assert_eq!(counts.until, Some(ts(DAY + 4 * HOUR)));
    assert_eq!(counts.bucket.unwrap().seconds, HOUR);
    // The same total as the listing's records' counts.
    let listed: u64 = app
        .list_all(ListAttemptsRequest::default())
        .await
        .iter()
        .map(|r| u64::from(r.attempt.as_ref().unwrap().count))
        .sum();
    let counted: u64 = counts
        .buckets
        .iter()
        .map(|b| b.successes + b.failures)
        .sum();
    assert_eq!((listed, counted), (13, 13));
}

async fn buckets_align_to_the_epoch_and_only_the_range_counts(db: TestDb) {
    let app = TestApp::spawn(db).await;
    app.ingest_ok(history()).await;

    // From 00:00:15 to 03:00:00: the first hour's success (00:00:10) is
    // before the range, the fourth hour after it; the first bucket still
    // starts at 00:00.
    let counts = app
        .count(request(
            AttemptFilter::default(),
            Some(DAY + 15),
            Some(DAY + 3 * HOUR),
            HOUR,
        ))
        .await
        .unwrap();
    assert_eq!(
        table(&counts.buckets),
        [
            (DAY, 0, 6, 0),
            (DAY + HOUR, 0, 0, 0),
            (DAY + 2 * HOUR, 0, 1, 1)
        ]
    );
    assert_eq!(counts.since, Some(ts(DAY + 15)));

    // A row exactly at a boundary is in the bucket it starts; `since` is
    // inclusive, `until` exclusive.
    let counts = app
        .count(request(
            AttemptFilter::default(),
            Some(DAY + 3 * HOUR),
            Some(DAY + 3 * HOUR + 59),
            60,
        ))
        .await
        .unwrap();
    assert_eq!(table(&counts.buckets), [(DAY + 3 * HOUR, 1, 0, 1)]);

    // Seven-day buckets start on a Thursday, as 1970-01-01 did; a day's at
    // midnight UTC.
    let counts = app
        .count(request(
            AttemptFilter::default(),
            Some(DAY),
            Some(DAY + 1),
            7 * 86_400,
        ))
        .await
        .unwrap();
    let start = counts.buckets[0].start.unwrap().seconds;
    assert_eq!(start % (7 * 86_400), 0);
    assert!(start <= DAY && DAY < start + 7 * 86_400);
    let counts = app
        .count(request(
            AttemptFilter::default(),
            Some(DAY + 5 * HOUR),
            Some(DAY + 86_400),
            86_400,
        ))
        .await
        .unwrap();
    assert_eq!(table(&counts.buckets), [(DAY, 0, 0, 0)]);
}

async fn the_listings_filters_select_what_is_counted(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let mut attempts = history();
    attempts.push(Attempt {
        kind: AttemptKind::PasswordReset as i32,
        reason: RejectReason::CodeWrong as i32,
        ..at(failure("2001:db8::1", "C@x.io", 0), DAY + HOUR + 1)
    });
    attempts.push(Attempt {
        user_id: Some(42),
        ..at(success("10.0.0.1", "a@x.io", 0), DAY + HOUR + 2)
    });
    app.ingest_ok(attempts).await;
    let filters = [
        AttemptFilter::default(),
        AttemptFilter {
            successful: Some(false),
            ..Default::default()
        },
        AttemptFilter {
            successful: Some(true),
            ..Default::default()
        },
        AttemptFilter {
            suspicious: Some(true),
            ..Default::default()
        },
        AttemptFilter {
            suspicious: Some(false),
            ..Default::default()
        },
        AttemptFilter {
            ip: Some("10.1.0.0/16".to_owned()),
            ..Default::default()
        },
        AttemptFilter {
            ip: Some("::ffff:10.0.0.2".to_owned()),
            ..Default::default()
        },
        AttemptFilter {
            ip: Some("2001:db8::/32".to_owned()),
            ..Default::default()
        },
        AttemptFilter {
            email: Some("c@X.IO".to_owned()),
            ..Default::default()
        },
        AttemptFilter {
            identifier: Some("flood@x.io".to_owned()),
            ..Default::default()
        },
        AttemptFilter {
            user_id: Some(42),
            ..Default::default()
        },
        AttemptFilter {
            reason: Some(RejectReason::RateLimited as i32),
            ..Default::default()
        },
        AttemptFilter {
            kind: Some(AttemptKind::PasswordReset as i32),
            ..Default::default()
        },
        AttemptFilter {
            kind: Some(AttemptKind::Login as i32),
            ip: Some("10.0.0.0/8".to_owned()),
            successful: Some(false),
            ..Default::default()
        },
        AttemptFilter {
            email: Some("nobody@x.io".to_owned()),
            ..Default::default()
        },
    ];

    for filter in filters {
        let counts = app
            .count(request(
                filter.clone(),
                Some(DAY),
                Some(DAY + 4 * HOUR),
                HOUR,
            ))
            .await
            .unwrap();

        // What the listing returns for the same filter, summed per hour
        // by hand.
        let listed = app
            .list_all(ListAttemptsRequest {
                filter: Some(AttemptFilter {
                    since: Some(ts(DAY)),
                    until: Some(ts(DAY + 4 * HOUR)),
                    ..filter.clone()
                }),
                ..Default::default()
            })
            .await;
        let mut expected: BTreeMap<i64, (i64, u64, u64, u64)> = (0..4)
            .map(|h| (DAY + h * HOUR, (DAY + h * HOUR, 0, 0, 0)))
            .collect();
        for record in &listed {
            let a = record.attempt.as_ref().unwrap();
            let start = a.occurred_at.unwrap().seconds.div_euclid(HOUR) * HOUR;
            let row = expected.get_mut(&start).unwrap();
            let n = u64::from(a.count.max(1));
            if a.successful {
                row.1 += n;
            } else {
                row.2 += n;
            }
            if record.suspicious {
                row.3 += n;
            }
        }
        let expected: Vec<_> = expected.into_values().collect();
        assert_eq!(table(&counts.buckets), expected, "{filter:?}");
    }
}

async fn without_a_range_the_last_day_is_counted_in_whole_buckets(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    app.ingest_ok(vec![
        at(failure("10.0.0.1", "a@x.io", 0), now - 86_400 + 600),
        at(success("10.0.0.1", "a@x.io", 0), now - 60),
        // Older than the range.
        at(failure("10.0.0.1", "a@x.io", 0), DAY),
    ])
    .await;

    let counts = app
        .count(request(AttemptFilter::default(), None, None, HOUR))
        .await
        .unwrap();

    let since = counts.since.unwrap().seconds;
    let until = counts.until.unwrap().seconds;
    assert!(now <= until && until < now + 60, "until is now");
    assert_eq!(since % HOUR, 0, "since starts a bucket");
    assert!(until - 86_400 - HOUR < since && since <= until - 86_400);
    assert_eq!(counts.buckets.len(), 24 + usize::from(until % HOUR != 0));
    assert_eq!(counts.buckets[0].start.unwrap().seconds, since);
    let totals = counts
        .buckets
        .iter()
        .fold((0, 0), |(s, f), b| (s + b.successes, f + b.failures));
    assert_eq!(totals, (1, 1));

    // With `until` alone, the day before it.
    let until = now - 2 * HOUR;
    let counts = app
        .count(request(AttemptFilter::default(), None, Some(until), 60))
        .await
        .unwrap();
    assert_eq!(counts.since.unwrap().seconds, (until - 86_400) / 60 * 60);
    assert_eq!(counts.buckets.len(), 1_440 + usize::from(until % 60 != 0));
    let totals = counts
        .buckets
        .iter()
        .fold((0, 0), |(s, f), b| (s + b.successes, f + b.failures));
    assert_eq!(totals, (0, 1));
}

/// A refusal's status: INVALID_ARGUMENT whose message starts with the
/// field, and a BadRequest detail naming it.
fn assert_refused(status: &tonic::Status, field: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().starts_with(field), "{status:?}");
    let details = status
        .get_details_bad_request()
        .expect("a BadRequest detail");
    assert_eq!(details.field_violations[0].field, field, "{status:?}");
}

async fn too_many_buckets_and_bad_buckets_are_refused_naming_the_field(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let none = AttemptFilter::default;

    // 10,000 buckets is the most; one more is refused.
    let most = app
        .count(request(none(), Some(DAY), Some(DAY + 10_000), 1))
        .await
        .unwrap();
    assert_eq!(most.buckets.len(), 10_000);
    assert!(most.buckets.iter().all(|b| b.failures == 0));
    let status = app
        .count(request(none(), Some(DAY), Some(DAY + 10_001), 1))
        .await
        .unwrap_err();
    assert_refused(&status, "bucket");
    assert!(status.message().contains("10001 buckets"), "{status:?}");
    // A second's bucket over the default day.
    let status = app.count(request(none(), None, None, 1)).await.unwrap_err();
    assert_refused(&status, "bucket");

    for seconds in [0, -60, 366 * 86_400 + 1, i64::MAX, i64::MIN] {
        let status = app
            .count(request(none(), None, None, seconds))
            .await
            .unwrap_err();
        assert_refused(&status, "bucket");
    }
    let mut fraction = request(none(), None, None, HOUR);
    fraction.bucket = Some(Duration {
        seconds: 1,
        nanos: 1,
    });
    assert_refused(&app.count(fraction).await.unwrap_err(), "bucket");
    let mut missing = request(none(), None, None, HOUR);
    missing.bucket = None;
    assert_refused(&app.count(missing).await.unwrap_err(), "bucket");
}

async fn empty_ranges_and_bad_filters_are_refused(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let none = AttemptFilter::default;

    let status = app
        .count(request(none(), Some(DAY), Some(DAY), HOUR))
        .await
        .unwrap_err();
    assert_refused(&status, "until");
    let status = app
        .count(request(none(), Some(DAY), Some(DAY - 1), HOUR))
        .await
        .unwrap_err();
    assert_refused(&status, "until");
    // A `since` in the future, with `until` left to be now.
    let status = app
        .count(request(none(), Some(4_000_000_000), None, HOUR))
        .await
        .unwrap_err();
    assert_refused(&status, "since");
    // Year 1 in a year's bucket would start in year 0.
    let year_1 = -62_135_596_800;
    let status = app
        .count(request(
            none(),
            Some(year_1),
            Some(year_1 + 1),
            366 * 86_400,
        ))
        .await
        .unwrap_err();
    assert_refused(&status, "since");

    // The listing's own refusals, word for word.
    for (filter, field) in [
        (
            AttemptFilter {
                ip: Some("10.0.0.0/33".to_owned()),
                ..none()
            },
            "ip",
        ),
        (
            AttemptFilter {
                reason: Some(99),
                ..none()
            },
            "reason",
        ),
        (
            AttemptFilter {
                kind: Some(99),
                ..none()
            },
            "kind",
        ),
        (
            AttemptFilter {
                since: Some(Timestamp {
                    seconds: DAY,
                    nanos: -1,
                }),
                ..none()
            },
            "since",
        ),
        (
            AttemptFilter {
                until: Some(ts(i64::MAX)),
                ..none()
            },
            "until",
        ),
    ] {
        let status = app
            .count(CountAttemptsRequest {
                filter: Some(filter.clone()),
                bucket: Some(Duration {
                    seconds: HOUR,
                    nanos: 0,
                }),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().starts_with(field),
            "{filter:?}: {status:?}"
        );
    }
}

/// Hostile filter values count nothing and break nothing: a lookalike of
/// a stored email (Cyrillic `а`), a quote, a lone NUL, and a value far
/// longer than any stored one. A NUL inside a value is dropped, as ingest
/// drops it.
async fn hostile_filter_values_count_nothing(db: TestDb) {
    let app = TestApp::spawn(db).await;
    app.ingest_ok(history()).await;
    for email in [
        "\0".to_owned(),
        "\u{430}@x.io".to_owned(),
        "a@x.io' OR '1'='1".to_owned(),
        "a".repeat(100_000),
    ] {
        let counts = app
            .count(request(
                AttemptFilter {
                    email: Some(email.clone()),
                    ..Default::default()
                },
                Some(DAY),
                Some(DAY + 4 * HOUR),
                HOUR,
            ))
            .await
            .unwrap_or_else(|s| panic!("{}: {s:?}", email.len()));
        assert_eq!(counts.buckets.len(), 4);
        assert!(
            counts.buckets.iter().all(|b| b.successes + b.failures == 0),
            "{email:?}"
        );
    }
    // The real one counts, NUL or not.
    for email in ["A@X.io", "a@x.io\0"] {
        let counts = app
            .count(request(
                AttemptFilter {
                    email: Some(email.to_owned()),
                    ..Default::default()
                },
                Some(DAY),
                Some(DAY + 4 * HOUR),
                HOUR,
            ))
            .await
            .unwrap();
        assert_eq!(table(&counts.buckets)[0], (DAY, 1, 1, 0), "{email:?}");
    }
}

on_every_backend!(
    counts_are_sums_of_attempts_and_empty_buckets_are_zero,
    buckets_align_to_the_epoch_and_only_the_range_counts,
    the_listings_filters_select_what_is_counted,
    without_a_range_the_last_day_is_counted_in_whole_buckets,
    too_many_buckets_and_bad_buckets_are_refused_naming_the_field,
    empty_ranges_and_bad_filters_are_refused,
    hostile_filter_values_count_nothing,
);

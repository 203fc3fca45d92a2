//! The log's counts per time bucket end to end: the admin token, the
//! query (the listing's filters plus `bucket`), the call to audit-service,
//! the answer's shape and audit-service's refusals.

use proto::audit::v1::{AttemptBucket, CountAttemptsResponse, RejectReason};
use serde_json::json;
use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt as _};

use crate::helpers::{md, parts, spawn_app};

const COUNTS: &str = "/api/accounts/logs/login/attemps/counts/";

fn ts(seconds: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos: 0 })
}

#[tokio::test]
async fn an_admin_gets_every_bucket_of_the_range() {
    let app = spawn_app().await;
    app.audit.count.reply_with(|_| {
        Ok(CountAttemptsResponse {
            since: ts(1_704_067_200),
            until: ts(1_704_067_200 + 120),
            bucket: Some(prost_types::Duration {
                seconds: 60,
                nanos: 0,
            }),
            buckets: vec![
                AttemptBucket {
                    start: ts(1_704_067_200),
                    successes: 1,
                    failures: 7,
                    suspicious: 5,
                },
                AttemptBucket {
                    start: ts(1_704_067_260),
                    ..Default::default()
                },
            ],
        })
    });

    let response = app
        .get_authorized(
            &format!(
                "{COUNTS}?bucket=1m&successful=false&ip=::ffff:198.51.100.7&reason=locked_out\
                 &since=2024-01-01T00:00:00Z&until=2024-01-01T00:02:00%2B00:00&limit=3&cursor=x"
            ),
            &app.key.access_token(true),
        )
        .await;

    let (status, headers, body) = parts(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(
        body,
        json!({
            "bucket_seconds": 60,
            "since": "2024-01-01T00:00:00Z",
            "until": "2024-01-01T00:02:00Z",
            "buckets": [
                {"start": "2024-01-01T00:00:00Z", "successes": 1, "failures": 7, "suspicious": 5},
                {"start": "2024-01-01T00:01:00Z", "successes": 0, "failures": 0, "suspicious": 0},
            ],
        })
    );
    let (request, metadata) = app.audit.count.only_call();
    assert_eq!(request.bucket.unwrap().seconds, 60);
    let filter = request.filter.unwrap();
    assert_eq!(filter.successful, Some(false));
    assert_eq!(filter.ip.as_deref(), Some("198.51.100.7"));
    assert_eq!(filter.reason, Some(RejectReason::LockedOut as i32));
    assert_eq!(filter.since.unwrap().seconds, 1_704_067_200);
    assert_eq!(filter.until.unwrap().seconds, 1_704_067_320);
    assert!(md(&metadata, "x-request-id").is_some());
    assert!(app.audit.list.calls().is_empty());
}

#[tokio::test]
async fn without_a_range_audit_service_chooses_it() {
    let app = spawn_app().await;
    app.audit.count.reply_with(|_| {
        Ok(CountAttemptsResponse {
            since: ts(0),
            until: ts(86_400),
            bucket: Some(prost_types::Duration {
                seconds: 86_400,
                nanos: 0,
            }),
            buckets: vec![AttemptBucket {
                start: ts(0),
                ..Default::default()
            }],
        })
    });

    let response = app
        .get_authorized(&format!("{COUNTS}?bucket=1d"), &app.key.access_token(true))
        .await;

    let (status, _, body) = parts(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["since"], "1970-01-01T00:00:00Z");
    let (request, _) = app.audit.count.only_call();
    let filter = request.filter.unwrap();
    assert_eq!((filter.since, filter.until), (None, None));
    assert_eq!(request.bucket.unwrap().seconds, 86_400);
}

#[tokio::test]
async fn a_bad_or_missing_bucket_is_400_naming_it() {
    let app = spawn_app().await;
    let token = app.key.access_token(true);

    for bad in [
        "0",
        "0s",
        "-5m",
        "1.5h",
        "1w",
        "soon",
        "%00",
        "1%20h",
        "%EF%BC%91h",
    ] {
        let response = app
            .get_authorized(&format!("{COUNTS}?bucket={bad}"), &token)
            .await;
        let (status, _, body) = parts(response).await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(
            body.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["bucket"],
            "{bad}: {body}"
        );
    }
    let (status, _, body) = parts(app.get_authorized(COUNTS, &token).await).await;
    assert_eq!(status, 400);
    assert_eq!(body, json!({"bucket": ["This field is required."]}));
    assert!(app.audit.count.calls().is_empty());
}

#[tokio::test]
async fn every_bad_parameter_is_named_as_the_listing_names_it() {
    let app = spawn_app().await;

    let response = app
        .get_authorized(
            &format!("{COUNTS}?bucket=x&successful=perhaps&ip=999.1.1.1&until=tomorrow"),
            &app.key.access_token(true),
        )
        .await;

    let (status, _, body) = parts(response).await;
    assert_eq!(status, 400);
    assert_eq!(
        body.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["bucket", "ip", "successful", "until"]
    );
    assert_eq!(body["successful"], json!(["Must be a valid boolean."]));
    let long = "a".repeat(2_000);
    let response = app
        .get_authorized(
            &format!("{COUNTS}?bucket=1h&email={long}"),
            &app.key.access_token(true),
        )
        .await;
    let (status, _, body) = parts(response).await;
    assert_eq!(status, 400);
    assert!(body.get("email").is_some(), "{body}");
    assert!(app.audit.count.calls().is_empty());
}

#[tokio::test]
async fn audit_services_refusal_of_the_range_is_400_naming_the_field() {
    let app = spawn_app().await;
    app.audit.count.reply_with(|_| {
        Err(tonic::Status::with_error_details(
            Code::InvalidArgument,
            "bucket: 86400 buckets from since to until are more than the 10000 answered",
            ErrorDetails::with_bad_request_violation(
                "bucket",
                "86400 buckets from since to until are more than the 10000 answered.",
            ),
        ))
    });

    let response = app
        .get_authorized(&format!("{COUNTS}?bucket=1s"), &app.key.access_token(true))
        .await;

    let (status, _, body) = parts(response).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"bucket": ["86400 buckets from since to until are more than the 10000 answered."]})
    );
}

#[tokio::test]
async fn anonymous_callers_are_401_before_the_query_is_read() {
    let app = spawn_app().await;

    let response = app.get(&format!("{COUNTS}?bucket=0")).await;

    let (status, headers, body) = parts(response).await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({"detail": "Authentication credentials were not provided.", "code": "not_authenticated"})
    );
    assert_eq!(headers["www-authenticate"], "Bearer realm=\"api\"");
    assert!(app.audit.count.calls().is_empty());
}

#[tokio::test]
async fn a_non_admin_is_403() {
    let app = spawn_app().await;

    let response = app
        .get_authorized(&format!("{COUNTS}?bucket=1h"), &app.key.access_token(false))
        .await;

    let (status, _, body) = parts(response).await;
    assert_eq!(status, 403);
    assert_eq!(
        body,
        json!({"detail": "You do not have permission to perform this action.", "code": "permission_denied"})
    );
    assert!(app.audit.count.calls().is_empty());
}

#[tokio::test]
async fn audit_service_down_is_503() {
    let dead = crate::helpers::dead_url().await;
    let app = crate::helpers::spawn_app_with(|c| c.audit_grpc_url = dead).await;

    let response = app
        .get_authorized(&format!("{COUNTS}?bucket=1h"), &app.key.access_token(true))
        .await;

    assert_eq!(response.status(), 503);
}

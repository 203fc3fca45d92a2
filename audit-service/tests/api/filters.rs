//! ListAttempts filters added for operators: IP or CIDR, identifier, user
//! id, reason, suspicious flag.

use proto::audit::v1::ListAttemptsRequest;
use tonic::Code;

use crate::helpers::{TestApp, TestDb, event_ids, failure, success};

async fn an_ip_filter_matches_a_cidr_block_and_any_spelling(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let a = failure("10.1.2.3", "a@x.io", 1);
    let b = failure("::ffff:10.9.9.9", "a@x.io", 2);
    let outside = failure("11.0.0.1", "a@x.io", 3);
    let v6 = failure("2001:db8::5", "a@x.io", 4);
    let unknown = failure("", "a@x.io", 5);
    app.ingest_ok(vec![a.clone(), b.clone(), outside, v6.clone(), unknown])
        .await;

    let list = |ip: &str| {
        app.list_all(ListAttemptsRequest {
            filter: Some(proto::audit::v1::AttemptFilter {
                ip: Some(ip.to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        })
    };

    assert_eq!(
        event_ids(&list("10.0.0.0/8").await),
        vec![b.event_id.clone(), a.event_id.clone()]
    );
    assert_eq!(event_ids(&list("::ffff:10.1.2.3").await), vec![a.event_id]);
    assert_eq!(event_ids(&list("10.9.9.9").await), vec![b.event_id]);
    assert_eq!(event_ids(&list("2001:db8::/32").await), vec![v6.event_id]);
    assert!(list("192.168.0.0/16").await.is_empty());
}

async fn identifier_user_reason_and_flag_filters_select_their_rows(db: TestDb) {
    let app = TestApp::spawn_with(db, |c| c.suspicious_threshold = 1).await;
    let bad_password = failure("10.0.0.1", "a@x.io", 1);
    let unknown_user = proto::audit::v1::Attempt {
        reason: proto::audit::v1::RejectReason::UnknownUser as i32,
        identifier: "ghost".to_owned(),
        ..failure("10.0.0.2", "ghost", 2)
    };
    let ok = success("10.0.0.3", "b@x.io", 3);
    app.ingest_ok(vec![bad_password.clone(), unknown_user.clone(), ok.clone()])
        .await;

    let by_identifier = app
        .list_all(ListAttemptsRequest {
            filter: Some(proto::audit::v1::AttemptFilter {
                identifier: Some("ghost".to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
    let by_user = app
        .list_all(ListAttemptsRequest {
            filter: Some(proto::audit::v1::AttemptFilter {
                user_id: Some(7),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
    let by_reason = app
        .list_all(ListAttemptsRequest {
            filter: Some(proto::audit::v1::AttemptFilter {
                reason: Some(proto::audit::v1::RejectReason::BadPassword as i32),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
    // With a threshold of 1 every failure is flagged and no success is.
    let flagged = app
        .list_all(ListAttemptsRequest {
            filter: Some(proto::audit::v1::AttemptFilter {
                suspicious: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
    let unflagged = app
        .list_all(ListAttemptsRequest {
            filter: Some(proto::audit::v1::AttemptFilter {
                suspicious: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;

    assert_eq!(
        event_ids(&by_identifier),
        vec![unknown_user.event_id.clone()]
    );
    assert_eq!(event_ids(&by_user), vec![ok.event_id.clone()]);
    assert_eq!(event_ids(&by_reason), vec![bad_password.event_id.clone()]);
    assert_eq!(
        event_ids(&flagged),
        vec![unknown_user.event_id, bad_password.event_id]
    );
    assert_eq!(event_ids(&unflagged), vec![ok.event_id]);
}

async fn bad_filters_are_refused_naming_the_field(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let cases = [
        (
            ListAttemptsRequest {
                filter: Some(proto::audit::v1::AttemptFilter {
                    ip: Some("10.0.0.0/33".to_owned()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            "ip",
        ),
        (
            ListAttemptsRequest {
                filter: Some(proto::audit::v1::AttemptFilter {
                    ip: Some("not-an-ip".to_owned()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            "ip",
        ),
        (
            ListAttemptsRequest {
                filter: Some(proto::audit::v1::AttemptFilter {
                    reason: Some(99),
                    ..Default::default()
                }),
                ..Default::default()
            },
            "reason",
        ),
    ];
    for (request, field) in cases {
        let status = app.list(request).await.unwrap_err();

        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().starts_with(field), "{status:?}");
    }
}

/// The kind is stored on every backend (a new column), shown on each
/// record, and filters; an attempt that names none (a producer from before
/// kinds) is a login.
async fn a_kind_filter_selects_its_kind_and_unspecified_is_a_login(db: TestDb) {
    use proto::audit::v1::{AttemptFilter, AttemptKind, RejectReason};
    let app = TestApp::spawn(db).await;
    let old_login = failure("10.0.0.1", "a@x.io", 1);
    let change = proto::audit::v1::Attempt {
        kind: AttemptKind::PasswordChange as i32,
        ..failure("10.0.0.1", "a@x.io", 2)
    };
    let reset = proto::audit::v1::Attempt {
        kind: AttemptKind::PasswordReset as i32,
        reason: RejectReason::CodeExpired as i32,
        ..failure("10.0.0.2", "b@x.io", 3)
    };
    let login = proto::audit::v1::Attempt {
        kind: AttemptKind::Login as i32,
        ..success("10.0.0.3", "c@x.io", 4)
    };
    app.ingest_ok(vec![
        old_login.clone(),
        change.clone(),
        reset.clone(),
        login.clone(),
    ])
    .await;

    let of = |kind: AttemptKind| {
        app.list_all(ListAttemptsRequest {
            filter: Some(AttemptFilter {
                kind: Some(kind as i32),
                ..Default::default()
            }),
            ..Default::default()
        })
    };
    let logins = of(AttemptKind::Login).await;
    assert_eq!(
        event_ids(&logins),
        vec![login.event_id.clone(), old_login.event_id.clone()]
    );
    assert_eq!(
        event_ids(&of(AttemptKind::Unspecified).await),
        event_ids(&logins)
    );
    let changes = of(AttemptKind::PasswordChange).await;
    assert_eq!(event_ids(&changes), vec![change.event_id.clone()]);
    let resets = of(AttemptKind::PasswordReset).await;
    assert_eq!(event_ids(&resets), vec![reset.event_id.clone()]);
    let stored = resets[0].attempt.as_ref().unwrap();
    assert_eq!(stored.kind(), AttemptKind::PasswordReset);
    assert_eq!(stored.reason(), RejectReason::CodeExpired);
    // Unfiltered, every record says what it was; the old one is a login.
    let kinds: Vec<AttemptKind> = app
        .list_all(ListAttemptsRequest::default())
        .await
        .iter()
        .map(|r| r.attempt.as_ref().unwrap().kind())
        .collect();
    assert_eq!(
        kinds,
        [
            AttemptKind::Login,
            AttemptKind::PasswordReset,
            AttemptKind::PasswordChange,
            AttemptKind::Login
        ]
    );
    // Filters combine.
    let both = app
        .list_all(ListAttemptsRequest {
            filter: Some(AttemptFilter {
                kind: Some(AttemptKind::PasswordChange as i32),
                ip: Some("10.0.0.1".to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
    assert_eq!(event_ids(&both), vec![change.event_id]);
}

async fn an_unknown_kind_is_refused_at_ingest_and_in_filters(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let status = app
        .list(ListAttemptsRequest {
            filter: Some(proto::audit::v1::AttemptFilter {
                kind: Some(99),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().starts_with("kind"), "{status:?}");

    let unknown = proto::audit::v1::Attempt {
        kind: 99,
        ..failure("10.0.0.1", "a@x.io", 1)
    };
    let outcome = app
        .ingest(vec![crate::helpers::batch(1, vec![unknown])])
        .await;
    let status = outcome.error.expect("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("kind"), "{status:?}");
    assert!(
        app.list_all(ListAttemptsRequest::default())
            .await
            .is_empty()
    );
}

/// A filter value is read as ingest stores text: without NUL (PostgreSQL
/// text cannot hold one; the query used to fail as if the log were down)
/// and cut where ingest cuts, so it finds the attempts sent with it.
async fn text_filters_match_what_ingest_stored_for_the_same_text(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let long = "x".repeat(1_000);
    let nul = failure("10.0.0.1", "a\0b@x.io", 1);
    let overlong = proto::audit::v1::Attempt {
        identifier: long.clone(),
        ..failure("10.0.0.2", "c@x.io", 2)
    };
    app.ingest_ok(vec![nul.clone(), overlong.clone()]).await;
    let list = |filter: proto::audit::v1::AttemptFilter| {
        app.list_all(ListAttemptsRequest {
            filter: Some(filter),
            ..Default::default()
        })
    };

    for email in ["a\0b@x.io", "A\0\0B@X.io", "ab@x.io"] {
        let found = list(proto::audit::v1::AttemptFilter {
            email: Some(email.to_owned()),
            ..Default::default()
        })
        .await;
        assert_eq!(event_ids(&found), vec![nul.event_id.clone()], "{email:?}");
    }
    let found = list(proto::audit::v1::AttemptFilter {
        identifier: Some("a\0b@x.io".to_owned()),
        ..Default::default()
    })
    .await;
    assert_eq!(event_ids(&found), vec![nul.event_id.clone()]);
    let found = list(proto::audit::v1::AttemptFilter {
        identifier: Some(long),
        ..Default::default()
    })
    .await;
    assert_eq!(event_ids(&found), [overlong.event_id]);
    let none = list(proto::audit::v1::AttemptFilter {
        email: Some("\0".to_owned()),
        ..Default::default()
    })
    .await;
    assert!(none.is_empty());
}

on_every_backend!(
    text_filters_match_what_ingest_stored_for_the_same_text,
    an_ip_filter_matches_a_cidr_block_and_any_spelling,
    identifier_user_reason_and_flag_filters_select_their_rows,
    bad_filters_are_refused_naming_the_field,
    a_kind_filter_selects_its_kind_and_unspecified_is_a_login,
    an_unknown_kind_is_refused_at_ingest_and_in_filters,
);

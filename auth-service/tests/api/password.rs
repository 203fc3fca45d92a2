//! Password change and reset (SECURITY.md, "Changing and resetting a
//! password") at a fixed clock, on both backends: what each proves, what
//! it revokes, the counters it shares with login and the reset code rules.

use std::sync::Arc;

use auth_service::{
    error::Error,
    store::AuthStore,
    throttle::{BruteForcePolicy, Limit, RateLimits},
};
use proto::{
    audit::v1::{Attempt, AttemptKind, RejectReason},
    auth::v1::{IntrospectTokenRequest, RefreshRequest, ResetOutcome, TokenPair},
};

use crate::helpers::{Outcome::*, Rules, T0, code_in, outcome};

on_every_backend!(
    a_change_with_the_current_password_keeps_only_the_callers_session,
    a_wrong_current_password_counts_toward_the_login_lock,
    a_burst_of_wrong_current_passwords_gets_only_the_checks_login_would,
    a_change_breaking_a_password_rule_names_the_field_and_counts_nothing,
    an_access_token_from_before_a_change_cannot_change_the_password,
    a_reset_by_emailed_code_sets_the_password_and_ends_every_session,
    only_verified_active_accounts_get_a_reset_code_and_the_answer_never_differs,
    a_reset_code_dies_after_five_tries_and_after_ten_minutes,
    a_burst_of_one_right_reset_code_succeeds_exactly_once,
    a_reset_ends_the_account_lock,
    reset_requests_are_limited_per_address_from_any_client,
);

const OWNER: &str = "198.51.100.7";
const THIEF: &str = "203.0.113.66";

async fn introspects<S: AuthStore>(rules: &Rules<S>, access: &str) -> bool {
    rules
        .api
        .introspect(IntrospectTokenRequest {
            token: access.to_owned(),
        })
        .await
        .unwrap()
        .active
}

async fn refreshes<S: AuthStore>(rules: &Rules<S>, refresh: &str, at: i64) -> bool {
    match rules
        .api
        .refresh_session(
            RefreshRequest {
                refresh: refresh.to_owned(),
            },
            at,
        )
        .await
    {
        Ok(_) => true,
        Err(Error::InvalidToken) => false,
        Err(other) => panic!("unexpected error: {other:?}"),
    }
}

/// (kind, successful, reason code) of each attempt in the outbox.
fn kinds(attempts: &[Attempt]) -> Vec<(AttemptKind, bool, &'static str)> {
    attempts
        .iter()
        .map(|a| {
            (
                a.kind(),
                a.successful,
                RejectReason::try_from(a.reason).unwrap().code(),
            )
        })
        .collect()
}

/// The [`Outcome`](crate::helpers::Outcome) of a password change: a wrong
/// current password is a field error naming `old_password`.
fn changed(result: Result<TokenPair, Error>) -> crate::helpers::Outcome {
    match result {
        Err(Error::Invalid(fields)) if fields.len() == 1 && fields[0].field == "old_password" => {
            assert_eq!(
                fields[0].message,
                "Your old password was entered incorrectly. Please enter it again."
            );
            Refused
        }
        other => outcome(other),
    }
}

fn field_names(e: Error) -> Vec<String> {
    match e {
        Error::Invalid(fields) => fields.into_iter().map(|f| f.field).collect(),
        other => panic!("expected invalid fields, got {other:?}"),
    }
}

async fn a_change_with_the_current_password_keeps_only_the_callers_session<S: AuthStore>(
    rules: Rules<S>,
) {
    rules.active_user("alice", "alice-pass-1").await;
    let laptop = rules
        .login(OWNER, "alice", "alice-pass-1", T0)
        .await
        .unwrap();
    let phone = rules
        .login("192.0.2.3", "alice", "alice-pass-1", T0 + 1)
        .await
        .unwrap();

    let changed = rules
        .change(
            OWNER,
            &laptop.access,
            "alice-pass-1",
            "tiger-lamp-42",
            T0 + 5,
        )
        .await
        .unwrap();

    // Every earlier session is over, refresh and access token alike ...
    assert!(!refreshes(&rules, &laptop.refresh, T0 + 6).await);
    assert!(!refreshes(&rules, &phone.refresh, T0 + 6).await);
    assert!(!introspects(&rules, &laptop.access).await);
    assert!(!introspects(&rules, &phone.access).await);
    // ... but the caller's fresh pair works, even within the second of the
    // change (token times have whole seconds only).
    assert!(introspects(&rules, &changed.access).await);
    assert!(refreshes(&rules, &changed.refresh, T0 + 6).await);
    // The old password is gone, the new one logs in.
    let r = rules.login(OWNER, "alice", "alice-pass-1", T0 + 7).await;
    assert_eq!(outcome(r), Refused);
    let r = rules.login(OWNER, "alice", "tiger-lamp-42", T0 + 7).await;
    assert_eq!(outcome(r), LoggedIn);
    let recorded = rules.outbox().await;
    assert_eq!(
        kinds(&recorded),
        [
            (AttemptKind::Login, true, ""),
            (AttemptKind::Login, true, ""),
            (AttemptKind::PasswordChange, true, ""),
            (AttemptKind::Login, false, "bad_password"),
            (AttemptKind::Login, true, ""),
        ]
    );
    assert_eq!(recorded[2].identifier, "alice");
    assert_eq!(recorded[2].ip, OWNER);
    // The owner is told.
    let mail = rules.mail_to("alice@example.com", 1).await;
    assert!(mail[0].contains("Your password was changed"), "{}", mail[0]);
}

async fn a_wrong_current_password_counts_toward_the_login_lock<S: AuthStore>(rules: Rules<S>) {
    let rules = rules.with_policy(BruteForcePolicy {
        account_lock_failures: 3,
        account_lock_tiers: vec![120],
        pair_free_failures: 100,
        ..BruteForcePolicy::default()
    });
    rules.active_user("bruno", "bruno-pass-1").await;
    let stolen = rules
        .login(OWNER, "bruno", "bruno-pass-1", T0)
        .await
        .unwrap();
    // The thief holds an access token but not the password; each guess is
    // a failed login as far as the counters go.
    for guess in ["guess-pass-1", "guess-pass-2"] {
        let r = rules
            .change(THIEF, &stolen.access, guess, "thief-pass-99", T0 + 1)
            .await;
        assert_eq!(changed(r), Refused);
    }
    // A third failure, by login this time, locks the account.
    let r = rules.login(THIEF, "bruno", "guess-pass-3", T0 + 1).await;
    assert_eq!(outcome(r), Refused);
    // Locked: even the right current password is not checked.
    let r = rules
        .change(
            THIEF,
            &stolen.access,
            "bruno-pass-1",
            "thief-pass-99",
            T0 + 2,
        )
        .await;
    assert_eq!(changed(r), Wait(119));
    let r = rules.login(THIEF, "bruno", "bruno-pass-1", T0 + 2).await;
    assert_eq!(outcome(r), Wait(119));
    // The lock ends by itself.
    let r = rules
        .change(
            OWNER,
            &stolen.access,
            "bruno-pass-1",
            "owner-pass-77",
            T0 + 121,
        )
        .await;
    assert_eq!(changed(r), LoggedIn);
    assert_eq!(
        kinds(&rules.outbox().await),
        [
            (AttemptKind::Login, true, ""),
            (AttemptKind::PasswordChange, false, "bad_password"),
            (AttemptKind::PasswordChange, false, "bad_password"),
            (AttemptKind::Login, false, "bad_password"),
            (AttemptKind::PasswordChange, false, "locked_out"),
            (AttemptKind::Login, false, "locked_out"),
            (AttemptKind::PasswordChange, true, ""),
        ]
    );
}

async fn a_burst_of_wrong_current_passwords_gets_only_the_checks_login_would<S: AuthStore>(
    rules: Rules<S>,
) {
    let rules = Arc::new(rules.with_policy(BruteForcePolicy {
        account_lock_failures: 4,
        account_lock_tiers: vec![300],
        pair_free_failures: 100,
        ..BruteForcePolicy::default()
    }));
    rules.active_user("carla", "carla-pass-1").await;
    let stolen = rules
        .login(OWNER, "carla", "carla-pass-1", T0)
        .await
        .unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(12));
    let mut burst = tokio::task::JoinSet::new();
    for i in 0..12 {
        let (rules, barrier, access) = (rules.clone(), barrier.clone(), stolen.access.clone());
        burst.spawn(async move {
            barrier.wait().await;
            let guess = format!("guess-pass-{i}");
            changed(
                rules
                    .change(THIEF, &access, &guess, "thief-pass-99", T0 + 1)
                    .await,
            )
        });
    }
    let outcomes = burst.join_all().await;
    // Exactly the lock threshold's worth of password checks; the rest are
    // refused before any, as a login burst would be.
    assert_eq!(outcomes.iter().filter(|o| **o == Refused).count(), 4);
    assert_eq!(outcomes.iter().filter(|o| **o == Wait(300)).count(), 8);
    let r = rules.login(THIEF, "carla", "carla-pass-1", T0 + 2).await;
    assert_eq!(outcome(r), Wait(299));
}

async fn a_change_breaking_a_password_rule_names_the_field_and_counts_nothing<S: AuthStore>(
    rules: Rules<S>,
) {
    let rules = rules.with_policy(BruteForcePolicy {
        pair_free_failures: 1,
        ..BruteForcePolicy::default()
    });
    rules.active_user("dora", "dora-pass-12").await;
    let pair = rules
        .login(OWNER, "dora", "dora-pass-12", T0)
        .await
        .unwrap();
    let change = |old: &str, new: &str, confirm: Option<&str>| {
        let req = proto::auth::v1::ChangePasswordRequest {
            access: pair.access.clone(),
            old_password: old.to_owned(),
            new_password: new.to_owned(),
            new_password2: confirm.map(str::to_owned),
        };
        let at = time::OffsetDateTime::from_unix_timestamp(T0 + 1).unwrap();
        let api = &rules.api;
        async move {
            api.change_own_password(&crate::helpers::ctx(OWNER), req, at)
                .await
        }
    };
    let cases: [(&str, &str, Option<&str>, &[&str]); 7] = [
        ("", "tiger-lamp-42", None, &["old_password"]),
        ("wrong-pass-1", "qz7!", None, &["new_password"]),
        ("wrong-pass-1", "83920174652", None, &["new_password"]),
        (
            "wrong-pass-1",
            "doradora1",
            None,
            &["new_password", "new_password"],
        ),
        ("wrong-pass-1", &"x".repeat(1025), None, &["new_password"]),
        (
            "wrong-pass-1",
            "tiger-lamp-42",
            Some("tiger-lamp-43"),
            &["new_password2"],
        ),
        ("dora-pass-12", "dora-pass-12", None, &["new_password"]),
    ];
    for (old, new, confirm, fields) in cases {
        let e = change(old, new, confirm).await.unwrap_err();
        assert_eq!(field_names(e), *fields, "{old:?} -> {new:?}");
    }
    // None of them was a try: one wrong password would have started the
    // pair delay, and the right one still changes it.
    let r = change("dora-pass-12", "tiger-lamp-42", Some("tiger-lamp-42")).await;
    assert_eq!(changed(r), LoggedIn);
    assert_eq!(rules.outbox().await.len(), 2);
}

async fn an_access_token_from_before_a_change_cannot_change_the_password<S: AuthStore>(
    rules: Rules<S>,
) {
    rules.active_user("emil", "emil-pass-12").await;
    let stolen = rules
        .login(THIEF, "emil", "emil-pass-12", T0)
        .await
        .unwrap();
    let own = rules
        .login(OWNER, "emil", "emil-pass-12", T0 + 1)
        .await
        .unwrap();
    rules
        .change(OWNER, &own.access, "emil-pass-12", "tiger-lamp-42", T0 + 2)
        .await
        .unwrap();
    let r = rules
        .change(
            THIEF,
            &stolen.access,
            "tiger-lamp-42",
            "thief-pass-99",
            T0 + 3,
        )
        .await;
    assert!(matches!(r, Err(Error::InvalidToken)), "{r:?}");
    for junk in ["", "not.a.jwt", "\0"] {
        let r = rules
            .change(OWNER, junk, "tiger-lamp-42", "thief-pass-99", T0 + 3)
            .await;
        assert!(matches!(r, Err(Error::InvalidToken)), "{junk:?}: {r:?}");
    }
    let r = rules
        .change(
            OWNER,
            &own.refresh,
            "tiger-lamp-42",
            "thief-pass-99",
            T0 + 3,
        )
        .await;
    assert!(matches!(r, Err(Error::WrongTokenType)), "{r:?}");
}

async fn a_reset_by_emailed_code_sets_the_password_and_ends_every_session<S: AuthStore>(
    rules: Rules<S>,
) {
    rules.active_user("fred", "fred-pass-12").await;
    let session = rules
        .login(OWNER, "fred", "fred-pass-12", T0)
        .await
        .unwrap();
    rules
        .request_reset(OWNER, "Fred@Example.com", T0 + 1)
        .await
        .unwrap();
    let mail = rules.mail_to("fred@example.com", 1).await;
    assert!(mail[0].contains("Your password reset code"), "{}", mail[0]);
    let code = code_in(&mail[0]);

    let wrong = if code == "000000" { "000001" } else { "000000" };
    let r = rules
        .reset(OWNER, "fred@example.com", wrong, "tiger-lamp-42", T0 + 2)
        .await;
    assert_eq!(r.unwrap(), ResetOutcome::CodeWrong);
    // The new password follows the registration rules; a refusal keeps the code.
    let e = rules
        .reset(OWNER, "fred@example.com", &code, "fredfred1", T0 + 2)
        .await
        .unwrap_err();
    assert_eq!(field_names(e), ["new_password"]);
    let r = rules
        .reset(OWNER, "fred@example.com", &code, "tiger-lamp-42", T0 + 3)
        .await;
    assert_eq!(r.unwrap(), ResetOutcome::PasswordReset);

    assert!(!refreshes(&rules, &session.refresh, T0 + 4).await);
    assert!(!introspects(&rules, &session.access).await);
    let r = rules.login(OWNER, "fred", "fred-pass-12", T0 + 4).await;
    assert_eq!(outcome(r), Refused);
    let r = rules.login(OWNER, "fred", "tiger-lamp-42", T0 + 4).await;
    assert_eq!(outcome(r), LoggedIn);
    // Single use.
    let r = rules
        .reset(OWNER, "fred@example.com", &code, "other-pass-77", T0 + 5)
        .await;
    assert_eq!(r.unwrap(), ResetOutcome::CodeWrong);
    let recorded = rules.outbox().await;
    assert_eq!(
        kinds(&recorded),
        [
            (AttemptKind::Login, true, ""),
            (AttemptKind::PasswordReset, false, "code_wrong"),
            (AttemptKind::PasswordReset, true, ""),
            (AttemptKind::Login, false, "bad_password"),
            (AttemptKind::Login, true, ""),
            (AttemptKind::PasswordReset, false, "code_wrong"),
        ]
    );
    assert_eq!(recorded[2].identifier, "fred@example.com");
    assert_eq!(recorded[2].user_id, Some(1));
    let mail = rules.mail_to("fred@example.com", 2).await;
    assert!(mail[1].contains("Your password was reset"), "{}", mail[1]);
}

async fn only_verified_active_accounts_get_a_reset_code_and_the_answer_never_differs<
    S: AuthStore,
>(
    rules: Rules<S>,
) {
    rules.unverified_user("gina", "gina-pass-12").await;
    rules.active_user("hugo", "hugo-pass-12").await;
    for email in ["gina@example.com", "nobody@example.com", "hugo@example.com"] {
        rules.request_reset(OWNER, email, T0).await.unwrap();
    }
    // Hugo's mail is there, so the others would be too by now.
    rules.mail_to("hugo@example.com", 1).await;
    let mailed: Vec<String> = std::fs::read_dir(rules.mail_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(mailed.len(), 1, "{mailed:?}");
    // A reset of an unverified account finds no code, like an unknown one.
    for email in ["gina@example.com", "nobody@example.com"] {
        let r = rules
            .reset(OWNER, email, "123456", "tiger-lamp-42", T0 + 1)
            .await;
        assert_eq!(r.unwrap(), ResetOutcome::CodeWrong);
    }
    // Hostile input is a field error or a wrong code, never a failure.
    for email in [
        "",
        "a\0b@example.com",
        &format!("{}@example.com", "a".repeat(400)),
    ] {
        match rules.request_reset(OWNER, email, T0 + 2).await {
            Err(Error::Invalid(fields)) => assert_eq!(fields[0].field, "email"),
            other => panic!("{email:?}: {other:?}"),
        }
        let r = rules
            .reset(OWNER, email, "123456", "tiger-lamp-42", T0 + 2)
            .await;
        match r {
            Ok(ResetOutcome::CodeWrong) => {}
            Err(Error::Invalid(fields)) => assert_eq!(fields[0].field, "email"),
            other => panic!("{email:?}: {other:?}"),
        }
    }
    let r = rules
        .reset(
            OWNER,
            "hugo@example.com",
            "12345\0",
            &"p".repeat(2000),
            T0 + 3,
        )
        .await;
    assert_eq!(field_names(r.unwrap_err()), ["new_password"]);
}

async fn a_reset_code_dies_after_five_tries_and_after_ten_minutes<S: AuthStore>(rules: Rules<S>) {
    rules.active_user("ines", "ines-pass-12").await;
    rules
        .request_reset(OWNER, "ines@example.com", T0)
        .await
        .unwrap();
    let code = code_in(&rules.mail_to("ines@example.com", 1).await[0]);
    let wrong = if code == "000000" { "000001" } else { "000000" };
    for _ in 0..5 {
        let r = rules
            .reset(THIEF, "ines@example.com", wrong, "tiger-lamp-42", T0 + 1)
            .await;
        assert_eq!(r.unwrap(), ResetOutcome::CodeWrong);
    }
    let r = rules
        .reset(OWNER, "ines@example.com", &code, "tiger-lamp-42", T0 + 1)
        .await;
    assert_eq!(r.unwrap(), ResetOutcome::TooManyAttempts);

    // A new code (a minute later) starts over, and lives ten minutes.
    rules
        .request_reset(OWNER, "ines@example.com", T0 + 60)
        .await
        .unwrap();
    let code = code_in(&rules.mail_to("ines@example.com", 2).await[1]);
    let r = rules
        .reset(OWNER, "ines@example.com", &code, "tiger-lamp-42", T0 + 660)
        .await;
    assert_eq!(r.unwrap(), ResetOutcome::CodeExpired);
    let r = rules.login(OWNER, "ines", "ines-pass-12", T0 + 661).await;
    assert_eq!(outcome(r), LoggedIn);
    let reasons: Vec<_> = kinds(&rules.outbox().await)
        .into_iter()
        .filter(|(kind, ..)| *kind == AttemptKind::PasswordReset)
        .map(|(_, _, reason)| reason)
        .collect();
    assert_eq!(
        reasons,
        [
            "code_wrong",
            "code_wrong",
            "code_wrong",
            "code_wrong",
            "code_wrong",
            "too_many_attempts",
            "code_expired"
        ]
    );
}

async fn a_burst_of_one_right_reset_code_succeeds_exactly_once<S: AuthStore>(rules: Rules<S>) {
    let rules = Arc::new(rules);
    rules.active_user("jana", "jana-pass-12").await;
    rules
        .request_reset(OWNER, "jana@example.com", T0)
        .await
        .unwrap();
    let code = code_in(&rules.mail_to("jana@example.com", 1).await[0]);
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let mut burst = tokio::task::JoinSet::new();
    for i in 0..8 {
        let (rules, barrier, code) = (rules.clone(), barrier.clone(), code.clone());
        burst.spawn(async move {
            barrier.wait().await;
            let new = format!("burst-pass-{i}");
            let r = rules
                .reset(OWNER, "jana@example.com", &code, &new, T0 + 1)
                .await
                .unwrap();
            (r, new)
        });
    }
    let outcomes = burst.join_all().await;
    let winners: Vec<_> = outcomes
        .iter()
        .filter(|(r, _)| *r == ResetOutcome::PasswordReset)
        .collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    // The winner's password is the one set.
    let r = rules.login(OWNER, "jana", &winners[0].1, T0 + 2).await;
    assert_eq!(outcome(r), LoggedIn);
    let successes = rules
        .outbox()
        .await
        .iter()
        .filter(|a| a.kind() == AttemptKind::PasswordReset && a.successful)
        .count();
    assert_eq!(successes, 1);
}

async fn a_reset_ends_the_account_lock<S: AuthStore>(rules: Rules<S>) {
    let rules = rules.with_policy(BruteForcePolicy {
        account_lock_failures: 2,
        account_lock_tiers: vec![3600],
        ..BruteForcePolicy::default()
    });
    rules.active_user("karl", "karl-pass-12").await;
    for _ in 0..2 {
        let r = rules.login(THIEF, "karl", "guess-pass-1", T0).await;
        assert_eq!(outcome(r), Refused);
    }
    let r = rules.login(OWNER, "karl", "karl-pass-12", T0 + 1).await;
    assert_eq!(outcome(r), Wait(3599));
    rules
        .request_reset(OWNER, "karl@example.com", T0 + 2)
        .await
        .unwrap();
    // The lock's notice, then the code.
    let mail = rules.mail_to("karl@example.com", 2).await;
    assert!(mail[0].contains("temporarily locked"), "{}", mail[0]);
    let code = code_in(&mail[1]);
    let r = rules
        .reset(OWNER, "karl@example.com", &code, "tiger-lamp-42", T0 + 3)
        .await;
    assert_eq!(r.unwrap(), ResetOutcome::PasswordReset);
    // The lock guarded a password that no longer exists.
    let r = rules.login(OWNER, "karl", "tiger-lamp-42", T0 + 4).await;
    assert_eq!(outcome(r), LoggedIn);
}

async fn reset_requests_are_limited_per_address_from_any_client<S: AuthStore>(rules: Rules<S>) {
    let limits = RateLimits {
        reset_request_email: Limit {
            max: 2,
            window: 3600,
        },
        ..RateLimits::default()
    };
    let rules = rules.with_limits(BruteForcePolicy::default(), limits);
    rules.active_user("lena", "lena-pass-12").await;
    for (i, email) in ["lena@example.com", "nobody@example.com"]
        .iter()
        .enumerate()
    {
        for n in 0..2 {
            let ip = format!("10.0.{i}.{n}");
            rules.request_reset(&ip, email, T0 + 100).await.unwrap();
        }
        // Whether or not the address has an account.
        let r = rules.request_reset("10.9.9.9", email, T0 + 110).await;
        assert!(
            matches!(r, Err(Error::Throttled { retry_after: 3590 })),
            "{email}: {r:?}"
        );
    }
    // A new window starts over.
    rules
        .request_reset("10.9.9.9", "lena@example.com", T0 + 3700)
        .await
        .unwrap();
}

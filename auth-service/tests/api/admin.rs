//! User administration (issue #16) at a fixed clock: each action on a real
//! store, its refusals, the last-administrator rule under concurrent
//! changes, and what deactivation, logout and deletion do to sessions.

use std::sync::Arc;

use auth_service::{
    error::Error,
    store::{AccountDetail, AuthStore},
    throttle::BruteForcePolicy,
    users::{FlagChange, ListRequest, UserQuery},
};
use proto::auth::v1::{IntrospectTokenRequest, RefreshRequest, VerifyCodeRequest, VerifyOutcome};
use tokio::sync::Barrier;

use crate::helpers::{Outcome::*, Rules, T0, code_in, ctx, outcome};

on_every_backend!(
    an_admin_lists_accounts_by_search_and_filters_one_page_at_a_time,
    an_account_in_detail_shows_its_last_login_lock_and_sessions,
    deactivation_ends_every_session_and_refuses_the_next_login,
    an_unverified_account_is_not_activated_by_an_admin,
    logging_a_user_out_ends_refresh_and_earlier_access_tokens,
    unlocking_lifts_the_account_lock_at_once,
    resending_verification_mails_a_working_code_under_the_code_rules,
    deleting_an_account_keeps_its_recorded_attempts,
    the_last_active_admin_cannot_be_removed_even_by_itself,
    two_admins_demoting_each_other_at_one_instant_leave_one_admin,
    two_admins_stepping_down_at_one_instant_leave_one_admin,
    only_a_live_admin_token_acts_and_unknown_accounts_are_not_found,
);

const DEMOTE: FlagChange = FlagChange {
    is_active: None,
    is_staff: Some(false),
};
const GRANT: FlagChange = FlagChange {
    is_active: None,
    is_staff: Some(true),
};
const DEACTIVATE: FlagChange = FlagChange {
    is_active: Some(false),
    is_staff: None,
};
const ACTIVATE: FlagChange = FlagChange {
    is_active: Some(true),
    is_staff: None,
};

/// The reason of a FAILED_PRECONDITION refusal; panics on anything else.
fn refusal<T: std::fmt::Debug>(result: Result<T, Error>) -> &'static str {
    match result {
        Err(Error::Precondition { reason, .. }) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn query(req: ListRequest<'_>) -> UserQuery {
    UserQuery::parse(&req).unwrap()
}

/// How many active administrators there are.
async fn active_admins<S: AuthStore>(rules: &Rules<S>) -> usize {
    let page = rules
        .store
        .list_accounts(
            query(ListRequest {
                is_active: Some(true),
                is_staff: Some(true),
                ..Default::default()
            })
            .filter(),
        )
        .await
        .unwrap();
    page.len()
}

async fn detail<S: AuthStore>(rules: &Rules<S>, id: i64, at: i64) -> AccountDetail {
    rules.api.users().detail(id, at).await.unwrap()
}

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

async fn an_admin_lists_accounts_by_search_and_filters_one_page_at_a_time<S: AuthStore>(
    rules: Rules<S>,
) {
    rules.admin_user("root", "root-pass-123").await;
    let admin = rules.actor("root", "root-pass-123", T0).await;
    for name in ["alice", "Alicia", "bob", "carol_x", "carolyx"] {
        rules.active_user(name, "some-pass-123").await;
    }
    let pending = rules.unverified_user("dave", "dave-pass-123").await;
    let users = rules.api.users();
    let names = |page: &auth_service::users::UserPage| -> Vec<String> {
        page.accounts.iter().map(|a| a.username.clone()).collect()
    };

    // Newest first; the search folds case and width and matches emails too.
    let page = users
        .list(&admin, &query(ListRequest::default()))
        .await
        .unwrap();
    assert_eq!(
        names(&page),
        [
            "dave", "carolyx", "carol_x", "bob", "Alicia", "alice", "root"
        ]
    );
    let page = users
        .list(
            &admin,
            &query(ListRequest {
                q: "ＡＬＩ",
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    assert_eq!(names(&page), ["Alicia", "alice"]);
    let page = users
        .list(
            &admin,
            &query(ListRequest {
                q: "BOB@EXAMPLE",
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    assert_eq!(names(&page), ["bob"]);
    // `_` and `%` are text, not wildcards.
    let page = users
        .list(
            &admin,
            &query(ListRequest {
                q: "carol_",
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    assert_eq!(names(&page), ["carol_x"]);
    let page = users
        .list(
            &admin,
            &query(ListRequest {
                q: "%",
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    assert!(page.accounts.is_empty());

    // Filters.
    let page = users
        .list(
            &admin,
            &query(ListRequest {
                verified: Some(false),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    assert_eq!(names(&page), ["dave"]);
    assert_eq!(page.accounts[0].id, pending);
    let page = users
        .list(
            &admin,
            &query(ListRequest {
                is_staff: Some(true),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    assert_eq!(names(&page), ["root"]);
    let page = users
        .list(
            &admin,
            &query(ListRequest {
                is_active: Some(true),
                is_staff: Some(false),
                q: "r",
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    // "root" is an admin; the rest have no `r`.
    assert_eq!(names(&page), ["carolyx", "carol_x"]);

    // Pages of two follow each other without gaps or repeats.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let page = users
            .list(
                &admin,
                &query(ListRequest {
                    limit: 2,
                    cursor: &cursor,
                    ..Default::default()
                }),
            )
            .await
            .unwrap();
        pages += 1;
        seen.extend(names(&page));
        match page.next_cursor {
            Some(next) => cursor = next,
            None => break,
        }
    }
    assert_eq!(pages, 4);
    assert_eq!(
        seen,
        [
            "dave", "carolyx", "carol_x", "bob", "Alicia", "alice", "root"
        ]
    );
}

async fn an_account_in_detail_shows_its_last_login_lock_and_sessions<S: AuthStore>(
    rules: Rules<S>,
) {
    let rules = rules.with_policy(BruteForcePolicy {
        account_lock_failures: 3,
        account_lock_tiers: vec![300],
        ..BruteForcePolicy::default()
    });
    let id = rules.active_user("erin", "erin-pass-123").await;
    let fresh = detail(&rules, id, T0).await;
    assert_eq!(fresh.account.last_login_at, None);
    assert_eq!(
        (
            fresh.locked_until,
            fresh.delayed_clients,
            fresh.active_sessions
        ),
        (None, 0, 0)
    );
    assert_eq!(fresh.account.verified_at, Some(T0));

    rules
        .login("192.0.2.1", "erin", "erin-pass-123", T0 + 10)
        .await
        .unwrap();
    rules
        .login("192.0.2.2", "erin", "erin-pass-123", T0 + 20)
        .await
        .unwrap();
    let seen = detail(&rules, id, T0 + 30).await;
    assert_eq!(seen.account.last_login_at, Some(T0 + 20));
    assert_eq!(seen.active_sessions, 2);

    // Three failures from three addresses lock the account for 300 s.
    for i in 0..3 {
        let r = rules
            .login(&format!("203.0.113.{i}"), "erin", "wrong-pass-1", T0 + 40)
            .await;
        assert_eq!(outcome(r), Refused);
    }
    let locked = detail(&rules, id, T0 + 41).await;
    assert_eq!(locked.locked_until, Some(T0 + 340));
    assert_eq!(
        locked.account.last_login_at,
        Some(T0 + 20),
        "failures are not logins"
    );
    // Once the lock has passed it is no longer shown; sessions expire too.
    assert_eq!(detail(&rules, id, T0 + 340).await.locked_until, None);
    assert_eq!(
        detail(&rules, id, T0 + 86_400 + 20).await.active_sessions,
        0
    );
}

async fn deactivation_ends_every_session_and_refuses_the_next_login<S: AuthStore>(rules: Rules<S>) {
    rules.admin_user("root", "root-pass-123").await;
    let admin = rules.actor("root", "root-pass-123", T0).await;
    let id = rules.active_user("fay", "fay-pass-1234").await;
    let first = rules
        .login("192.0.2.1", "fay", "fay-pass-1234", T0)
        .await
        .unwrap();
    let second = rules
        .login("192.0.2.2", "fay", "fay-pass-1234", T0)
        .await
        .unwrap();

    let done = rules
        .api
        .users()
        .update(&admin, id, DEACTIVATE, T0 + 5)
        .await
        .unwrap();
    assert_eq!(done.count, 2, "both sessions revoked");
    assert!(!done.account.account.is_active);
    assert_eq!(done.account.active_sessions, 0);
    assert!(!introspects(&rules, &first.access).await);
    let refresh = rules
        .api
        .refresh_session(
            RefreshRequest {
                refresh: second.refresh.clone(),
            },
            T0 + 6,
        )
        .await;
    assert!(matches!(refresh, Err(Error::InvalidToken)), "{refresh:?}");
    let r = rules
        .login("192.0.2.1", "fay", "fay-pass-1234", T0 + 7)
        .await;
    assert_eq!(outcome(r), Refused);
    let last = rules.outbox().await.pop().unwrap();
    assert_eq!(last.reason(), proto::audit::v1::RejectReason::Inactive);

    // Reactivated, the old sessions stay ended; a new login works.
    let done = rules
        .api
        .users()
        .update(&admin, id, ACTIVATE, T0 + 8)
        .await
        .unwrap();
    assert_eq!(done.count, 0);
    assert!(done.account.account.is_active);
    let refresh = rules
        .api
        .refresh_session(
            RefreshRequest {
                refresh: first.refresh,
            },
            T0 + 9,
        )
        .await;
    assert!(matches!(refresh, Err(Error::InvalidToken)), "{refresh:?}");
    assert!(!introspects(&rules, &first.access).await);
    let again = rules
        .login("192.0.2.1", "fay", "fay-pass-1234", T0 + 10)
        .await
        .unwrap();
    assert!(introspects(&rules, &again.access).await);
}

async fn an_unverified_account_is_not_activated_by_an_admin<S: AuthStore>(rules: Rules<S>) {
    rules.admin_user("root", "root-pass-123").await;
    let admin = rules.actor("root", "root-pass-123", T0).await;
    let id = rules.unverified_user("gus", "gus-pass-1234").await;
    let r = rules.api.users().update(&admin, id, ACTIVATE, T0).await;
    assert_eq!(refusal(r), "NOT_VERIFIED");
    let after = detail(&rules, id, T0).await.account;
    assert!(!after.is_active && after.verified_at.is_none());
    // Granting it admin rights is not activating it.
    let done = rules
        .api
        .users()
        .update(&admin, id, GRANT, T0)
        .await
        .unwrap();
    assert!(done.account.account.is_staff && !done.account.account.is_active);
    // Neither flag: INVALID_ARGUMENT.
    let r = rules
        .api
        .users()
        .update(&admin, id, FlagChange::default(), T0)
        .await;
    assert!(matches!(r, Err(Error::Invalid(_))), "{r:?}");
}

async fn logging_a_user_out_ends_refresh_and_earlier_access_tokens<S: AuthStore>(rules: Rules<S>) {
    rules.admin_user("root", "root-pass-123").await;
    let admin = rules.actor("root", "root-pass-123", T0).await;
    let id = rules.active_user("hal", "hal-pass-1234").await;
    let a = rules
        .login("192.0.2.1", "hal", "hal-pass-1234", T0)
        .await
        .unwrap();
    let b = rules
        .login("192.0.2.2", "hal", "hal-pass-1234", T0 + 1)
        .await
        .unwrap();
    assert!(introspects(&rules, &b.access).await);

    let done = rules.api.users().log_out(&admin, id, T0 + 2).await.unwrap();
    assert_eq!(done.count, 2);
    assert_eq!(done.account.active_sessions, 0);
    assert!(done.account.account.is_active, "the account stays active");
    for pair in [&a, &b] {
        assert!(!introspects(&rules, &pair.access).await);
        let r = rules
            .api
            .refresh_session(
                RefreshRequest {
                    refresh: pair.refresh.clone(),
                },
                T0 + 3,
            )
            .await;
        assert!(matches!(r, Err(Error::InvalidToken)), "{r:?}");
    }
    let fresh = rules
        .login("192.0.2.1", "hal", "hal-pass-1234", T0 + 3)
        .await
        .unwrap();
    assert!(introspects(&rules, &fresh.access).await);
    // The new session ends the same way; then nothing is left to end.
    let done = rules.api.users().log_out(&admin, id, T0 + 3).await.unwrap();
    assert_eq!(done.count, 1);
    let done = rules.api.users().log_out(&admin, id, T0 + 4).await.unwrap();
    assert_eq!(done.count, 0);
}

async fn unlocking_lifts_the_account_lock_at_once<S: AuthStore>(rules: Rules<S>) {
    let rules = rules.with_policy(BruteForcePolicy {
        account_lock_failures: 3,
        account_lock_tiers: vec![600],
        ..BruteForcePolicy::default()
    });
    rules.admin_user("root", "root-pass-123").await;
    let admin = rules.actor("root", "root-pass-123", T0).await;
    let id = rules.active_user("ivy", "ivy-pass-1234").await;
    for i in 0..3 {
        let r = rules
            .login(&format!("203.0.113.{i}"), "ivy", "wrong-pass-1", T0)
            .await;
        assert_eq!(outcome(r), Refused);
    }
    let r = rules
        .login("198.51.100.9", "ivy", "ivy-pass-1234", T0 + 1)
        .await;
    assert_eq!(outcome(r), Wait(599));
    assert_eq!(
        detail(&rules, id, T0 + 1).await.locked_until,
        Some(T0 + 600)
    );

    let done = rules.api.users().unlock(&admin, id, T0 + 2).await.unwrap();
    assert!(done.count >= 1, "{}", done.count);
    assert_eq!(done.account.locked_until, None);
    assert_eq!(done.account.delayed_clients, 0);
    let r = rules
        .login("198.51.100.9", "ivy", "ivy-pass-1234", T0 + 2)
        .await;
    assert_eq!(outcome(r), LoggedIn);
    // Nothing to clear is not an error.
    assert_eq!(
        rules
            .api
            .users()
            .unlock(&admin, id, T0 + 3)
            .await
            .unwrap()
            .count,
        0
    );
}

async fn resending_verification_mails_a_working_code_under_the_code_rules<S: AuthStore>(
    rules: Rules<S>,
) {
    rules.admin_user("root", "root-pass-123").await;
    let admin = rules.actor("root", "root-pass-123", T0).await;
    let id = rules.unverified_user("jo", "jo-pass-12345").await;
    let users = rules.api.users();

    let (account, expires) = users
        .resend_verification(&admin, id, T0 + 10)
        .await
        .unwrap();
    assert_eq!(expires, T0 + 610);
    assert!(account.account.unverified());
    // The mail is sent before the answer: it is there already.
    let mail = rules.mail_to("jo@example.com", 1).await;
    let code = code_in(&mail[0]);

    // One a minute, per account: the wait is what remains of the minute.
    let r = users.resend_verification(&admin, id, T0 + 40).await;
    assert!(
        matches!(r, Err(Error::Throttled { retry_after: 30 })),
        "{r:?}"
    );
    // The code works as any verification code does.
    let outcome = rules
        .api
        .verify_email(
            &ctx("192.0.2.1"),
            VerifyCodeRequest {
                email: "jo@example.com".into(),
                code,
                password: Some("jo-pass-12345".into()),
                new_password: None,
            },
            T0 + 50,
        )
        .await
        .unwrap();
    assert_eq!(outcome, VerifyOutcome::Activated);
    let r = users.resend_verification(&admin, id, T0 + 100).await;
    assert_eq!(refusal(r), "ALREADY_VERIFIED");

    // A registration past AUTH_UNVERIFIED_TTL (1 day) is not revived.
    let late = rules.unverified_user("kim", "kim-pass-1234").await;
    let r = users.resend_verification(&admin, late, T0 + 86_401).await;
    assert_eq!(refusal(r), "REGISTRATION_EXPIRED");
}

async fn deleting_an_account_keeps_its_recorded_attempts<S: AuthStore>(rules: Rules<S>) {
    rules.admin_user("root", "root-pass-123").await;
    let admin = rules.actor("root", "root-pass-123", T0).await;
    let id = rules.active_user("lou", "lou-pass-1234").await;
    let pair = rules
        .login("192.0.2.1", "lou", "lou-pass-1234", T0)
        .await
        .unwrap();
    let r = rules.login("192.0.2.1", "lou", "wrong-pass-1", T0).await;
    assert_eq!(outcome(r), Refused);
    let attempts_before = rules
        .outbox()
        .await
        .into_iter()
        .filter(|a| a.user_id == Some(id))
        .count();
    assert_eq!(attempts_before, 2);

    let before = rules.api.users().delete(&admin, id, T0 + 1).await.unwrap();
    assert_eq!((before.id, before.username.as_str()), (id, "lou"));
    assert!(matches!(
        rules.api.users().detail(id, T0 + 1).await,
        Err(Error::NotFound(_))
    ));
    assert!(!introspects(&rules, &pair.access).await);
    let r = rules
        .api
        .refresh_session(
            RefreshRequest {
                refresh: pair.refresh,
            },
            T0 + 2,
        )
        .await;
    assert!(matches!(r, Err(Error::InvalidToken)), "{r:?}");
    // Its attempts are still on their way to the log, naming it.
    let attempts_after = rules
        .outbox()
        .await
        .into_iter()
        .filter(|a| a.user_id == Some(id))
        .count();
    assert_eq!(attempts_after, 2);
    // Deleting it again: NOT_FOUND.
    assert!(matches!(
        rules.api.users().delete(&admin, id, T0 + 3).await,
        Err(Error::NotFound(_))
    ));
    // Its name is free again.
    let new = rules.active_user("lou", "lou-pass-9876").await;
    assert!(new > id, "ids are not reused");
}

async fn the_last_active_admin_cannot_be_removed_even_by_itself<S: AuthStore>(rules: Rules<S>) {
    let root = rules.admin_user("root", "root-pass-123").await;
    let admin = rules.actor("root", "root-pass-123", T0).await;
    let users = rules.api.users();
    assert_eq!(
        refusal(users.update(&admin, root, DEMOTE, T0).await),
        "LAST_ADMIN"
    );
    assert_eq!(
        refusal(users.update(&admin, root, DEACTIVATE, T0).await),
        "LAST_ADMIN"
    );
    assert_eq!(refusal(users.delete(&admin, root, T0).await), "LAST_ADMIN");
    let both = FlagChange {
        is_active: Some(true),
        is_staff: Some(false),
    };
    assert_eq!(
        refusal(users.update(&admin, root, both, T0).await),
        "LAST_ADMIN"
    );
    // Nothing changed: the admin still acts.
    let still = detail(&rules, root, T0).await.account;
    assert!(still.is_active && still.is_staff);

    // An inactive administrator does not count.
    let idle = rules.admin_user("idle", "idle-pass-123").await;
    users.update(&admin, idle, DEACTIVATE, T0).await.unwrap();
    assert_eq!(
        refusal(users.update(&admin, root, DEMOTE, T0).await),
        "LAST_ADMIN"
    );

    // With a second active admin, either may step down; then the other
    // is the last.
    let ann = rules.active_user("ann", "ann-pass-1234").await;
    users.update(&admin, ann, GRANT, T0).await.unwrap();
    let done = users.update(&admin, root, DEMOTE, T0 + 1).await.unwrap();
    assert!(!done.account.account.is_staff);
    let ann_actor = rules.actor("ann", "ann-pass-1234", T0 + 2).await;
    assert_eq!(
        refusal(users.delete(&ann_actor, ann, T0 + 2).await),
        "LAST_ADMIN"
    );
    // The demoted one can no longer act at all, even with an actor
    // authenticated before its demotion.
    let tim = rules.active_user("tim", "tim-pass-1234").await;
    let r = users.update(&admin, tim, DEACTIVATE, T0 + 3).await;
    assert!(matches!(r, Err(Error::PermissionDenied)), "{r:?}");
    assert_eq!(active_admins(&rules).await, 1);
}

/// Runs `a` and `b` released together by a barrier.
async fn at_once<A, B, RA, RB>(a: A, b: B) -> (RA, RB)
where
    A: Future<Output = RA>,
    B: Future<Output = RB>,
{
    let barrier = Arc::new(Barrier::new(2));
    let (ba, bb) = (barrier.clone(), barrier);
    tokio::join!(
        async move {
            ba.wait().await;
            a.await
        },
        async move {
            bb.wait().await;
            b.await
        }
    )
}

async fn two_admins_demoting_each_other_at_one_instant_leave_one_admin<S: AuthStore>(
    rules: Rules<S>,
) {
    let a = rules.admin_user("amy", "amy-pass-1234").await;
    let b = rules.admin_user("ben", "ben-pass-1234").await;
    let users = rules.api.users();
    for round in 0..8 {
        let at = T0 + round * 10;
        let amy = rules.actor("amy", "amy-pass-1234", at).await;
        let ben = rules.actor("ben", "ben-pass-1234", at).await;
        let (ra, rb) = at_once(
            users.update(&amy, b, DEMOTE, at + 1),
            users.update(&ben, a, DEMOTE, at + 1),
        )
        .await;
        let (winner, loser) = match (ra, rb) {
            (Ok(_), Err(e)) => (a, e),
            (Err(e), Ok(_)) => (b, e),
            (ra, rb) => panic!("round {round}: {ra:?} / {rb:?}"),
        };
        // The second to be decided would have removed the last admin.
        assert!(
            matches!(
                &loser,
                Error::Precondition {
                    reason: "LAST_ADMIN",
                    ..
                }
            ),
            "round {round}: {loser:?}"
        );
        assert_eq!(active_admins(&rules).await, 1, "round {round}");
        assert!(detail(&rules, winner, at + 2).await.account.is_staff);
        // Put the other back for the next round.
        let survivor = if winner == a { &amy } else { &ben };
        let other = if winner == a { b } else { a };
        users.update(survivor, other, GRANT, at + 3).await.unwrap();
    }
}

async fn two_admins_stepping_down_at_one_instant_leave_one_admin<S: AuthStore>(rules: Rules<S>) {
    let a = rules.admin_user("cid", "cid-pass-1234").await;
    let b = rules.admin_user("dot", "dot-pass-1234").await;
    let users = rules.api.users();
    for round in 0..8 {
        let at = T0 + round * 10;
        let cid = rules.actor("cid", "cid-pass-1234", at).await;
        let dot = rules.actor("dot", "dot-pass-1234", at).await;
        // Deactivation and deletion race through the same decision.
        let (ra, rb) = at_once(
            users.update(&cid, a, DEACTIVATE, at + 1),
            users.update(&dot, b, DEMOTE, at + 1),
        )
        .await;
        let ok = usize::from(ra.is_ok()) + usize::from(rb.is_ok());
        assert_eq!(ok, 1, "round {round}: {ra:?} / {rb:?}");
        for r in [ra.err(), rb.err()].into_iter().flatten() {
            assert!(
                matches!(
                    &r,
                    Error::Precondition {
                        reason: "LAST_ADMIN",
                        ..
                    }
                ),
                "{r:?}"
            );
        }
        assert_eq!(active_admins(&rules).await, 1, "round {round}");
        // Restore both for the next round, by the one left.
        let (left, left_id) = if detail(&rules, a, at + 2).await.account.is_active_admin() {
            (&cid, a)
        } else {
            (&dot, b)
        };
        let restore = FlagChange {
            is_active: Some(true),
            is_staff: Some(true),
        };
        let other = if left_id == a { b } else { a };
        users.update(left, other, restore, at + 3).await.unwrap();
        assert_eq!(active_admins(&rules).await, 2);
    }
}

async fn only_a_live_admin_token_acts_and_unknown_accounts_are_not_found<S: AuthStore>(
    rules: Rules<S>,
) {
    let root = rules.admin_user("root", "root-pass-123").await;
    rules.admin_user("sue", "sue-pass-1234").await;
    let user = rules.active_user("tom", "tom-pass-1234").await;
    let client = ctx("198.51.100.7");
    let tom = rules
        .login("192.0.2.1", "tom", "tom-pass-1234", T0)
        .await
        .unwrap();
    let r = rules.api.admin_actor(&tom.access, client.clone()).await;
    assert!(matches!(r, Err(Error::PermissionDenied)), "{r:?}");
    for bad in ["", "not-a-token"] {
        let r = rules.api.admin_actor(bad, client.clone()).await;
        assert!(matches!(r, Err(Error::InvalidToken)), "{bad}: {r:?}");
    }
    // A refresh token is refused as simplejwt words it (UNAUTHENTICATED).
    let r = rules.api.admin_actor(&tom.refresh, client.clone()).await;
    assert!(matches!(r, Err(Error::WrongTokenType)), "{r:?}");

    // The claim is not trusted: a demoted admin's unexpired token stops
    // acting at once; a logged-out admin's token is dead.
    let root_pair = rules
        .login("192.0.2.2", "root", "root-pass-123", T0)
        .await
        .unwrap();
    let sue = rules.actor("sue", "sue-pass-1234", T0).await;
    rules
        .api
        .users()
        .update(&sue, root, DEMOTE, T0 + 1)
        .await
        .unwrap();
    let r = rules
        .api
        .admin_actor(&root_pair.access, client.clone())
        .await;
    assert!(matches!(r, Err(Error::PermissionDenied)), "{r:?}");
    let sue_pair = rules
        .login("192.0.2.3", "sue", "sue-pass-1234", T0 + 1)
        .await
        .unwrap();
    assert!(
        rules
            .api
            .admin_actor(&sue_pair.access, client.clone())
            .await
            .is_ok()
    );
    let sue_id = rules.store.user_by_login("sue").await.unwrap().unwrap().id;
    rules
        .api
        .users()
        .log_out(&sue, sue_id, T0 + 2)
        .await
        .unwrap();
    let r = rules
        .api
        .admin_actor(&sue_pair.access, client.clone())
        .await;
    assert!(matches!(r, Err(Error::InvalidToken)), "{r:?}");

    // Unknown accounts, for every action.
    let sue = rules.actor("sue", "sue-pass-1234", T0 + 3).await;
    let users = rules.api.users();
    let ghost = user + 1000;
    let not_found = |r: Result<(), Error>| assert!(matches!(r, Err(Error::NotFound(_))), "{r:?}");
    not_found(users.detail(ghost, T0).await.map(drop));
    not_found(users.update(&sue, ghost, DEACTIVATE, T0).await.map(drop));
    not_found(users.unlock(&sue, ghost, T0).await.map(drop));
    not_found(users.log_out(&sue, ghost, T0).await.map(drop));
    not_found(users.resend_verification(&sue, ghost, T0).await.map(drop));
    not_found(users.delete(&sue, ghost, T0).await.map(drop));
}

/// The gRPC surface of `auth.v1.AdminService`: the two tokens it needs and
/// the status (with its detail) of each refusal, over real HTTP/2.
mod grpc {
    use proto::auth::v1::{
        DeleteUserRequest, GetUserRequest, ListUsersRequest, LoginRequest, UpdateUserRequest,
        admin_service_client::AdminServiceClient,
    };
    use tonic::{Code, Request, Status};
    use tonic_types::StatusExt as _;

    use crate::helpers::TestApp;

    const INTERNAL: &str = "internal-secret-for-admin";

    /// `message` with the internal token and, when given, an access token.
    fn call<T>(message: T, access: Option<&str>) -> Request<T> {
        let mut req = Request::new(message);
        let md = req.metadata_mut();
        md.insert(
            "authorization",
            format!("Bearer {INTERNAL}").parse().unwrap(),
        );
        if let Some(access) = access {
            md.insert("x-access-token", access.parse().unwrap());
        }
        req
    }

    fn fields(status: &Status) -> Vec<String> {
        status
            .get_details_bad_request()
            .expect("a BadRequest detail")
            .field_violations
            .into_iter()
            .map(|v| v.field)
            .collect()
    }

    async fn access(app: &mut TestApp, username: &str, password: &str) -> String {
        app.client
            .login(call(
                LoginRequest {
                    username: username.into(),
                    password: password.into(),
                    ..Default::default()
                },
                None,
            ))
            .await
            .unwrap()
            .into_inner()
            .access
    }

    #[tokio::test]
    async fn the_admin_service_answers_each_refusal_with_its_status_and_detail() {
        let mut app = TestApp::spawn(|config| {
            config.internal_token = Some(common::config::Secret::new(INTERNAL));
        })
        .await;
        let root = auth_service::admin::create_admin(
            &app.config,
            "root",
            "root@example.com",
            "root-pass-123",
        )
        .await
        .unwrap();
        let other = auth_service::admin::create_admin(
            &app.config,
            "pat",
            "pat@example.com",
            "pat-pass-1234",
        )
        .await
        .unwrap();
        let root_token = access(&mut app, "root", "root-pass-123").await;
        let pat_token = access(&mut app, "pat", "pat-pass-1234").await;
        let mut admin = AdminServiceClient::new(app.channel.clone());

        // Without the internal token nothing passes, admin token or not.
        let mut bare = Request::new(ListUsersRequest::default());
        bare.metadata_mut()
            .insert("x-access-token", root_token.parse().unwrap());
        let status = admin.list_users(bare).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        // Without an access token, or with a bad one: UNAUTHENTICATED.
        for token in [None, Some("not-a-token")] {
            let status = admin
                .list_users(call(ListUsersRequest::default(), token))
                .await
                .unwrap_err();
            assert_eq!(status.code(), Code::Unauthenticated, "{token:?}");
        }

        // pat demotes itself; its token, still claiming is_staff, no longer acts.
        admin
            .update_user(call(
                UpdateUserRequest {
                    user_id: other.id,
                    is_active: None,
                    is_staff: Some(false),
                },
                Some(&pat_token),
            ))
            .await
            .unwrap();
        let status = admin
            .get_user(call(GetUserRequest { user_id: root.id }, Some(&pat_token)))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);

        // The last admin: FAILED_PRECONDITION with a PreconditionFailure.
        let status = admin
            .update_user(call(
                UpdateUserRequest {
                    user_id: root.id,
                    is_active: Some(false),
                    is_staff: None,
                },
                Some(&root_token),
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition);
        let violation = status
            .get_details_precondition_failure()
            .expect("a PreconditionFailure detail")
            .violations
            .remove(0);
        assert_eq!(violation.r#type, "LAST_ADMIN");
        assert_eq!(violation.subject, format!("user:{}", root.id));
        assert!(
            status.message().contains("last active administrator"),
            "{}",
            status.message()
        );

        // Bad input names its field; an unknown account is NOT_FOUND.
        let cases: [(ListUsersRequest, &str); 4] = [
            (
                ListUsersRequest {
                    q: "ro\0ot".into(),
                    ..Default::default()
                },
                "q",
            ),
            (
                ListUsersRequest {
                    q: "r".repeat(255),
                    ..Default::default()
                },
                "q",
            ),
            (
                ListUsersRequest {
                    cursor: "garbage!".into(),
                    ..Default::default()
                },
                "cursor",
            ),
            (
                ListUsersRequest {
                    limit: 501,
                    ..Default::default()
                },
                "limit",
            ),
        ];
        for (req, field) in cases {
            let status = admin
                .list_users(call(req, Some(&root_token)))
                .await
                .unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument);
            assert_eq!(fields(&status), [field]);
        }
        for user_id in [0, -1, i64::MIN] {
            let status = admin
                .get_user(call(GetUserRequest { user_id }, Some(&root_token)))
                .await
                .unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{user_id}");
            assert_eq!(fields(&status), ["user_id"]);
        }
        let status = admin
            .update_user(call(
                UpdateUserRequest {
                    user_id: other.id,
                    is_active: None,
                    is_staff: None,
                },
                Some(&root_token),
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(fields(&status), [""]);
        let status = admin
            .get_user(call(
                GetUserRequest { user_id: i64::MAX },
                Some(&root_token),
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound);

        // The listing and a deletion, as they answer.
        let page = admin
            .list_users(call(
                ListUsersRequest {
                    q: "PAT".into(),
                    ..Default::default()
                },
                Some(&root_token),
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.users.len(), 1);
        let pat = &page.users[0];
        assert_eq!(
            (pat.username.as_str(), pat.is_staff, pat.verified),
            ("pat", false, true)
        );
        assert!(pat.last_login.is_some() && pat.date_joined.is_some());
        assert!(page.next_cursor.is_empty());
        let deleted = admin
            .delete_user(call(
                DeleteUserRequest { user_id: other.id },
                Some(&root_token),
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(deleted.login_attempts_kept);
        assert!(
            deleted.note.contains("login attempts stay"),
            "{}",
            deleted.note
        );
        assert_eq!(deleted.user.unwrap().username, "pat");
    }
}

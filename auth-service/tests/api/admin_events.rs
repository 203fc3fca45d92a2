//! Admin events (issue #16): each administrator's action writes its event
//! into the outbox in the transaction of its change, naming who did what
//! to whom, when, from where and what it counted; a refused action writes
//! none. The operator at the command line acts through the same use cases.

use auth_service::{
    error::Error,
    throttle::BruteForcePolicy,
    users::{Actor, FlagChange},
};
use proto::audit::v1::{AdminAction, AdminEvent};

use auth_service::store::{AccountChange, AuthStore, OutboxKind};

use crate::helpers::{Outcome::*, Rules, T0, outcome};

on_every_backend!(
    each_action_writes_one_event_naming_actor_target_client_and_counts,
    an_update_of_both_flags_writes_an_event_for_each,
    a_refused_or_failed_action_writes_no_event,
    an_operators_action_is_recorded_as_the_operators,
    events_wait_in_the_outbox_beside_attempts_in_order,
);

const DEACTIVATE: FlagChange = FlagChange {
    is_active: Some(false),
    is_staff: None,
};

/// The one event written since `before` events were there.
async fn only_new_event<S: AuthStore>(rules: &Rules<S>, before: usize) -> AdminEvent {
    let mut events = rules.admin_events().await;
    assert_eq!(events.len(), before + 1, "one new event: {events:?}");
    events.pop().unwrap()
}

async fn each_action_writes_one_event_naming_actor_target_client_and_counts<S: AuthStore>(
    rules: Rules<S>,
) {
    let rules = rules.with_policy(BruteForcePolicy {
        account_lock_failures: 2,
        account_lock_tiers: vec![600],
        ..BruteForcePolicy::default()
    });
    let root = rules.admin_user("root", "root-pass-123").await;
    let admin = rules.actor("root", "root-pass-123", T0).await;
    let id = rules.active_user("fay", "fay-pass-1234").await;
    let users = rules.api.users();
    assert!(
        rules.admin_events().await.is_empty(),
        "logins are no events"
    );
    let check = |e: &AdminEvent, action: AdminAction, at: i64| {
        assert_eq!(e.action(), action);
        assert_eq!((e.actor_id, e.actor_name.as_str()), (Some(root), "root"));
        assert!(!e.operator);
        assert_eq!(
            (
                e.target_id,
                e.target_username.as_str(),
                e.target_email.as_str()
            ),
            (id, "fay", "fay@example.com")
        );
        assert_eq!(e.ip, "198.51.100.7", "the administrator's client");
        assert_eq!(e.request_id, "test");
        assert_eq!(e.occurred_at.unwrap().seconds, at);
        assert!(uuid::Uuid::parse_str(&e.event_id).is_ok());
    };

    // Two sessions, ended by the deactivation.
    for ip in ["192.0.2.1", "192.0.2.2"] {
        rules.login(ip, "fay", "fay-pass-1234", T0).await.unwrap();
    }
    users.update(&admin, id, DEACTIVATE, T0 + 1).await.unwrap();
    let e = only_new_event(&rules, 0).await;
    check(&e, AdminAction::Deactivate, T0 + 1);
    assert_eq!(e.sessions_revoked, Some(2));
    assert_eq!((e.counters_cleared, e.code_expires_at), (None, None));

    let activate = FlagChange {
        is_active: Some(true),
        is_staff: None,
    };
    users.update(&admin, id, activate, T0 + 2).await.unwrap();
    let e = only_new_event(&rules, 1).await;
    check(&e, AdminAction::Activate, T0 + 2);
    assert_eq!(e.sessions_revoked, None, "activating ends no session");

    let grant = FlagChange {
        is_active: None,
        is_staff: Some(true),
    };
    users.update(&admin, id, grant, T0 + 3).await.unwrap();
    check(
        &only_new_event(&rules, 2).await,
        AdminAction::GrantAdmin,
        T0 + 3,
    );
    let revoke = FlagChange {
        is_active: None,
        is_staff: Some(false),
    };
    users.update(&admin, id, revoke, T0 + 4).await.unwrap();
    check(
        &only_new_event(&rules, 3).await,
        AdminAction::RevokeAdmin,
        T0 + 4,
    );

    for _ in 0..2 {
        let r = rules
            .login("203.0.113.1", "fay", "wrong-pass-1", T0 + 5)
            .await;
        assert_eq!(outcome(r), Refused);
    }
    let done = users.unlock(&admin, id, T0 + 6).await.unwrap();
    let e = only_new_event(&rules, 4).await;
    check(&e, AdminAction::Unlock, T0 + 6);
    assert_eq!(e.counters_cleared, Some(done.count));
    assert!(done.count >= 1);

    rules
        .login("192.0.2.3", "fay", "fay-pass-1234", T0 + 7)
        .await
        .unwrap();
    users.log_out(&admin, id, T0 + 8).await.unwrap();
    let e = only_new_event(&rules, 5).await;
    check(&e, AdminAction::Logout, T0 + 8);
    assert_eq!(e.sessions_revoked, Some(1));

    rules
        .login("192.0.2.4", "fay", "fay-pass-1234", T0 + 9)
        .await
        .unwrap();
    users.delete(&admin, id, T0 + 10).await.unwrap();
    let e = only_new_event(&rules, 6).await;
    check(&e, AdminAction::Delete, T0 + 10);
    assert_eq!(e.sessions_revoked, Some(1), "the session deleted with it");

    let jo = rules.unverified_user("jo", "jo-pass-12345").await;
    let (_, expires) = users
        .resend_verification(&admin, jo, T0 + 11)
        .await
        .unwrap();
    let e = only_new_event(&rules, 7).await;
    assert_eq!(e.action(), AdminAction::ResendVerification);
    assert_eq!((e.target_id, e.target_username.as_str()), (jo, "jo"));
    assert_eq!(e.code_expires_at.unwrap().seconds, expires);

    let ids: std::collections::HashSet<String> = rules
        .admin_events()
        .await
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    assert_eq!(ids.len(), 8, "every event has an id of its own");
}

async fn an_update_of_both_flags_writes_an_event_for_each<S: AuthStore>(rules: Rules<S>) {
    rules.admin_user("root", "root-pass-123").await;
    let admin = rules.actor("root", "root-pass-123", T0).await;
    let id = rules.active_user("gus", "gus-pass-1234").await;
    rules
        .login("192.0.2.1", "gus", "gus-pass-1234", T0)
        .await
        .unwrap();

    let both = FlagChange {
        is_active: Some(false),
        is_staff: Some(true),
    };
    rules
        .api
        .users()
        .update(&admin, id, both, T0 + 1)
        .await
        .unwrap();

    let events = rules.admin_events().await;
    let actions: Vec<_> = events.iter().map(AdminEvent::action).collect();
    assert_eq!(actions, [AdminAction::Deactivate, AdminAction::GrantAdmin]);
    assert_eq!(events[0].sessions_revoked, Some(1));
    assert_eq!(events[1].sessions_revoked, None);
    assert_ne!(events[0].event_id, events[1].event_id);
}

async fn a_refused_or_failed_action_writes_no_event<S: AuthStore>(rules: Rules<S>) {
    let root = rules.admin_user("root", "root-pass-123").await;
    let admin = rules.actor("root", "root-pass-123", T0).await;
    let users = rules.api.users();
    let unverified = rules.unverified_user("uma", "uma-pass-1234").await;
    let plain = rules.active_user("pam", "pam-pass-1234").await;
    // An administrator demoted after signing in (behind the use cases'
    // back, so without an event of its own).
    let pat_id = rules.admin_user("pat", "pat-pass-1234").await;
    let pat = rules.actor("pat", "pat-pass-1234", T0).await;
    let demoted = AccountChange::Update {
        is_active: None,
        is_staff: Some(false),
    };
    rules
        .store
        .change_account(
            pat_id,
            demoted,
            T0,
            |_, _| Ok::<(), ()>(()),
            |_, _| Vec::new(),
        )
        .await
        .unwrap();

    // The last administrator stays, however asked.
    let demote = FlagChange {
        is_active: None,
        is_staff: Some(false),
    };
    assert!(matches!(
        users.update(&admin, root, demote, T0).await,
        Err(Error::Precondition {
            reason: "LAST_ADMIN",
            ..
        })
    ));
    assert!(users.update(&admin, root, DEACTIVATE, T0).await.is_err());
    assert!(users.delete(&admin, root, T0).await.is_err());
    // Activating an unverified account, unknown accounts, nothing asked.
    let activate = FlagChange {
        is_active: Some(true),
        is_staff: None,
    };
    assert!(
        users
            .update(&admin, unverified, activate, T0)
            .await
            .is_err()
    );
    assert!(matches!(
        users.update(&admin, 999_999, DEACTIVATE, T0).await,
        Err(Error::NotFound(_))
    ));
    assert!(users.delete(&admin, 999_999, T0).await.is_err());
    assert!(users.unlock(&admin, 999_999, T0).await.is_err());
    assert!(users.log_out(&admin, 999_999, T0).await.is_err());
    assert!(
        users
            .update(&admin, plain, FlagChange::default(), T0)
            .await
            .is_err()
    );
    // An actor who is no administrator (any more) changes nothing.
    assert!(matches!(
        users.update(&pat, plain, DEACTIVATE, T0).await,
        Err(Error::PermissionDenied)
    ));
    // A verification code for a verified account; a second one too soon.
    assert!(users.resend_verification(&admin, plain, T0).await.is_err());
    users
        .resend_verification(&admin, unverified, T0)
        .await
        .unwrap();
    let written = rules.admin_events().await.len();
    assert_eq!(written, 1, "only the code that was mailed");
    assert!(matches!(
        users.resend_verification(&admin, unverified, T0 + 10).await,
        Err(Error::Throttled { .. })
    ));

    assert_eq!(rules.admin_events().await.len(), 1);
    let still = users.detail(root, T0).await.unwrap().account;
    assert!(still.is_active && still.is_staff);
}

async fn an_operators_action_is_recorded_as_the_operators<S: AuthStore>(rules: Rules<S>) {
    rules.admin_user("root", "root-pass-123").await;
    let id = rules.active_user("hal", "hal-pass-1234").await;
    let operator = Actor::operator(Some("ops".to_owned()));

    rules
        .api
        .users()
        .update(&operator, id, DEACTIVATE, T0 + 1)
        .await
        .unwrap();

    let e = only_new_event(&rules, 0).await;
    assert_eq!(e.action(), AdminAction::Deactivate);
    assert!(e.operator);
    assert_eq!((e.actor_id, e.actor_name.as_str()), (None, "ops"));
    assert_eq!(e.ip, "", "no client address at the command line");
    assert!(e.user_agent.unwrap().contains("CLI"));
    assert!(uuid::Uuid::parse_str(&e.request_id).is_ok());
    assert_eq!(e.target_id, id);
}

async fn events_wait_in_the_outbox_beside_attempts_in_order<S: AuthStore>(rules: Rules<S>) {
    rules.admin_user("root", "root-pass-123").await;
    let admin = rules.actor("root", "root-pass-123", T0).await;
    let id = rules.active_user("ida", "ida-pass-1234").await;
    let before = rules.store.outbox_len().await.unwrap();

    rules.api.users().log_out(&admin, id, T0 + 1).await.unwrap();
    let r = rules
        .login("192.0.2.9", "ida", "wrong-pass-1", T0 + 2)
        .await;
    assert_eq!(outcome(r), Refused);

    // One row each, in the order written, each read as its kind.
    assert_eq!(rules.store.outbox_len().await.unwrap(), before + 2);
    let rows = rules.store.outbox_oldest(100, i64::MAX).await.unwrap();
    let kinds: Vec<_> = rows.iter().rev().take(2).map(|r| r.kind).collect();
    assert_eq!(kinds, [OutboxKind::Attempt, OutboxKind::AdminEvent]);
    assert_eq!(rules.admin_events().await.len(), 1);
    assert_eq!(
        rules.outbox().await.last().unwrap().identifier,
        "ida",
        "attempts are read as attempts"
    );
}

//! Refresh rotation on both real backends: the rules the batched SQLite path
//! and the one-transaction PostgreSQL path must both keep.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

/// Declares `rule::on_sqlite` and `rule::on_postgres` tests for each
/// `async fn rule<S: AuthStore>(store: S)`, each on a fresh database.
macro_rules! on_both_stores {
    ($($rule:ident),* $(,)?) => {
        $(
            mod $rule {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn on_sqlite() {
                    let (_dir, store) = crate::store::tests::sqlite().await;
                    super::$rule(store).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn on_postgres() {
                    if let Some(store) = crate::store::tests::postgres().await {
                        super::$rule(store).await;
                    }
                }
            }
        )*
    };
}
pub(super) use on_both_stores;

pub(super) const NOW: i64 = 1_800_000_000;

pub(super) async fn sqlite() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("auth.db").display());
    let store = SqliteStore::connect(&url).await.unwrap();
    (dir, store)
}

pub(super) async fn postgres() -> Option<PgStore> {
    let server = common::testing::server_url("TEST_POSTGRES_URL")?;
    let url = common::testing::fresh_postgres(&server).await;
    Some(PgStore::connect(&url).await.unwrap())
}

/// An active user with one logged-in session; returns the user's id and the
/// session's refresh `jti`.
pub(super) async fn session<S: AuthStore>(store: &S, name: &str) -> (i64, String) {
    let user = store
        .create_user(NewUser {
            username: name,
            username_lower: name,
            email: &format!("{name}@example.com"),
            email_lower: &format!("{name}@example.com"),
            password_hash: "x",
            is_active: true,
            is_staff: false,
            now: NOW,
        })
        .await
        .unwrap();
    let jti = format!("{name}-0");
    let token = NewRefreshToken {
        jti: jti.clone(),
        family_id: format!("{name}-family"),
        user_id: user.id,
        issued_at: NOW,
        expires_at: NOW + 86_400,
    };
    let attempt = OutboxEntry {
        event_id: uuid::Uuid::now_v7().to_string(),
        payload: Vec::new(),
        created_at: NOW,
        occurred_micros: NOW * 1_000_000,
        tally: None,
    };
    store
        .record_login(
            &attempt,
            LoginEffects::Success {
                refresh: &token,
                keys: &LoginKeys::new(
                    Some(user.id),
                    &crate::domain::LoginIdentifier::new(name),
                    "192.0.2.1".to_owned(),
                ),
                reserved: &ReservedTry {
                    known_client: false,
                    lock_started: false,
                    ip_window_start: NOW,
                },
            },
        )
        .await
        .unwrap();
    (user.id, jti)
}

pub(super) fn next(jti: &str, user_id: i64, now: i64) -> NewRefreshToken {
    NewRefreshToken {
        jti: jti.to_owned(),
        family_id: String::new(),
        user_id,
        issued_at: now,
        expires_at: now + 86_400,
    }
}

const GENEROUS: Limit = Limit {
    max: 1000,
    window: 60,
};

async fn rotation_rules<S: AuthStore + Disable>(store: S) {
    // A chain of rotations: each successor works once, with its owner.
    let (user, mut jti) = session(&store, "ann").await;
    for i in 1..=3 {
        let successor = format!("ann-{i}");
        let outcome = store
            .rotate_refresh(&jti, NOW, &next(&successor, user, NOW), GENEROUS, 0)
            .await
            .unwrap();
        let Rotation::Rotated(owner) = outcome else {
            panic!("rotation {i}: {outcome:?}");
        };
        assert_eq!(
            (owner.id, owner.username.as_str(), owner.is_staff),
            (user, "ann", false)
        );
        jti = successor;
    }

    // Presenting a used token again revokes the family, newest token included.
    let outcome = store
        .rotate_refresh("ann-1", NOW, &next("ann-x", user, NOW), GENEROUS, 0)
        .await
        .unwrap();
    assert!(matches!(outcome, Rotation::Reused), "{outcome:?}");
    let outcome = store
        .rotate_refresh(&jti, NOW, &next("ann-y", user, NOW), GENEROUS, 0)
        .await
        .unwrap();
    assert!(matches!(outcome, Rotation::Invalid), "{outcome:?}");
    assert!(
        store
            .live_refresh_owner("ann-x", NOW)
            .await
            .unwrap()
            .is_none()
    );

    // Over the family limit nothing changes: the token still works once the
    // window has passed, and only the counted refreshes count.
    let limit = Limit { max: 2, window: 60 };
    let (user, first) = session(&store, "bob").await;
    for (from, to) in [(first.as_str(), "bob-1"), ("bob-1", "bob-2")] {
        let outcome = store
            .rotate_refresh(from, NOW, &next(to, user, NOW), limit, 0)
            .await
            .unwrap();
        assert!(matches!(outcome, Rotation::Rotated(_)), "{outcome:?}");
    }
    for _ in 0..2 {
        let outcome = store
            .rotate_refresh("bob-2", NOW + 10, &next("bob-3", user, NOW + 10), limit, 0)
            .await
            .unwrap();
        assert!(matches!(outcome, Rotation::Throttled(50)), "{outcome:?}");
    }
    assert_eq!(
        store.live_refresh_owner("bob-2", NOW + 10).await.unwrap(),
        Some(user)
    );
    // The refused attempts were not counted: this hit is the third.
    let (hits, start) = store.rate_hit("rf:bob-family", NOW + 10, 60).await.unwrap();
    assert_eq!((hits, start), (3, NOW));
    let later = NOW + 61;
    let outcome = store
        .rotate_refresh("bob-2", later, &next("bob-3", user, later), limit, 0)
        .await
        .unwrap();
    assert!(matches!(outcome, Rotation::Rotated(_)), "{outcome:?}");
    let outcome = store
        .rotate_refresh("bob-3", later, &next("bob-4", user, later), limit, 0)
        .await
        .unwrap();
    assert!(matches!(outcome, Rotation::Rotated(_)), "{outcome:?}");

    // Concurrent presentations of one token: one rotates, the other is
    // reuse, which revokes the family (the winner's successor too).
    let (user, jti) = session(&store, "cat").await;
    let (next_a, next_b) = (next("cat-a", user, NOW), next("cat-b", user, NOW));
    let (a, b) = tokio::join!(
        store.rotate_refresh(&jti, NOW, &next_a, GENEROUS, 0),
        store.rotate_refresh(&jti, NOW, &next_b, GENEROUS, 0),
    );
    let outcomes = [a.unwrap(), b.unwrap()];
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, Rotation::Rotated(_)))
            .count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, Rotation::Reused))
            .count(),
        1,
        "{outcomes:?}"
    );
    for successor in ["cat-a", "cat-b"] {
        assert!(
            store
                .live_refresh_owner(successor, NOW)
                .await
                .unwrap()
                .is_none()
        );
    }

    // Many families at once (one batch on SQLite): all rotate, independently.
    let mut sessions = Vec::new();
    for i in 0..40 {
        sessions.push(session(&store, &format!("u{i}")).await);
    }
    let mut rotations = tokio::task::JoinSet::new();
    for (user, jti) in sessions {
        let store = store.clone();
        rotations.spawn(async move {
            let successor = format!("{jti}-next");
            let outcome = store
                .rotate_refresh(&jti, NOW, &next(&successor, user, NOW), GENEROUS, 0)
                .await
                .unwrap();
            (outcome, successor, user)
        });
    }
    while let Some(done) = rotations.join_next().await {
        let (outcome, successor, user) = done.unwrap();
        assert!(matches!(outcome, Rotation::Rotated(_)), "{outcome:?}");
        assert_eq!(
            store.live_refresh_owner(&successor, NOW).await.unwrap(),
            Some(user)
        );
    }

    // A disabled owner: the family is revoked.
    let (user, jti) = session(&store, "dan").await;
    store.disable(user).await;
    let outcome = store
        .rotate_refresh(&jti, NOW, &next("dan-1", user, NOW), GENEROUS, 0)
        .await
        .unwrap();
    assert!(matches!(outcome, Rotation::Inactive), "{outcome:?}");
    assert!(
        store
            .live_refresh_owner("dan-1", NOW)
            .await
            .unwrap()
            .is_none()
    );
}

/// The reuse grace: presentations of one token released together all get
/// the one successor and the family lives; a presentation after the grace,
/// or after the successor was itself used, revokes the family.
async fn reuse_grace_rules<S: AuthStore>(store: S) {
    const GRACE: i64 = 5;
    let (user, jti) = session(&store, "gus").await;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(12));
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let (store, barrier, jti) = (store.clone(), barrier.clone(), jti.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                // (`gus-0` is the session's own token.)
                let next = next(&format!("gus-next-{i}"), user, NOW);
                store
                    .rotate_refresh(&jti, NOW, &next, GENEROUS, GRACE)
                    .await
                    .unwrap_or_else(|e| panic!("presentation {i}: {e:?}"))
            })
        })
        .collect();
    let mut rotated = Vec::new();
    let mut replayed = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Rotation::Rotated(owner) => rotated.push(owner.id),
            Rotation::Replayed { owner, successor } => {
                assert_eq!(owner.id, user);
                assert_eq!(successor.family_id, "gus-family");
                assert_eq!(
                    (successor.issued_at, successor.expires_at),
                    (NOW, NOW + 86_400)
                );
                replayed.push(successor.jti);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(rotated, [user]);
    assert_eq!(replayed.len(), 11);
    let winner = &replayed[0];
    assert!(replayed.iter().all(|j| j == winner), "{replayed:?}");
    assert_eq!(
        store.live_refresh_owner(winner, NOW).await.unwrap(),
        Some(user)
    );
    // Each presentation counted as a refresh of the family.
    let (hits, _) = store.rate_hit("rf:gus-family", NOW, 60).await.unwrap();
    assert_eq!(hits, 13);

    // At the edge of the grace still a replay; one second later, reuse.
    let at_edge = store
        .rotate_refresh(
            &jti,
            NOW + GRACE,
            &next("gus-y", user, NOW),
            GENEROUS,
            GRACE,
        )
        .await
        .unwrap();
    assert!(matches!(at_edge, Rotation::Replayed { .. }), "{at_edge:?}");
    let late = NOW + GRACE + 1;
    let outcome = store
        .rotate_refresh(&jti, late, &next("gus-z", user, late), GENEROUS, GRACE)
        .await
        .unwrap();
    assert!(matches!(outcome, Rotation::Reused), "{outcome:?}");
    assert!(
        store
            .live_refresh_owner(winner, late)
            .await
            .unwrap()
            .is_none()
    );

    // Within the grace, but the successor has moved on: reuse.
    let (user, jti) = session(&store, "hal").await;
    store
        .rotate_refresh(&jti, NOW, &next("hal-1", user, NOW), GENEROUS, GRACE)
        .await
        .unwrap();
    store
        .rotate_refresh("hal-1", NOW, &next("hal-2", user, NOW), GENEROUS, GRACE)
        .await
        .unwrap();
    let outcome = store
        .rotate_refresh(&jti, NOW + 1, &next("hal-x", user, NOW), GENEROUS, GRACE)
        .await
        .unwrap();
    assert!(matches!(outcome, Rotation::Reused), "{outcome:?}");
    assert!(
        store
            .live_refresh_owner("hal-2", NOW + 1)
            .await
            .unwrap()
            .is_none()
    );

    // A replay over the family limit is refused and changes nothing.
    let (user, jti) = session(&store, "ida").await;
    let one = Limit { max: 1, window: 60 };
    store
        .rotate_refresh(&jti, NOW, &next("ida-1", user, NOW), one, GRACE)
        .await
        .unwrap();
    let outcome = store
        .rotate_refresh(&jti, NOW, &next("ida-x", user, NOW), one, GRACE)
        .await
        .unwrap();
    assert!(matches!(outcome, Rotation::Throttled(60)), "{outcome:?}");
    assert_eq!(
        store.live_refresh_owner("ida-1", NOW).await.unwrap(),
        Some(user)
    );
}

on_both_stores!(reuse_grace_rules);

/// Turns an account off behind the service's back, as an operator would.
trait Disable {
    async fn disable(&self, user_id: i64);
}

impl Disable for SqliteStore {
    async fn disable(&self, user_id: i64) {
        sqlx::query("UPDATE users SET is_active = FALSE WHERE id = $1")
            .bind(user_id)
            .execute(&self.pool)
            .await
            .unwrap();
    }
}

impl Disable for PgStore {
    async fn disable(&self, user_id: i64) {
        sqlx::query("UPDATE users SET is_active = FALSE WHERE id = $1")
            .bind(user_id)
            .execute(&self.pool)
            .await
            .unwrap();
    }
}

on_both_stores!(rotation_rules);

/// Logging out everywhere records when, and a later call with an earlier
/// clock (another replica) does not move it back.
async fn logout_everywhere_records_its_instant<S: AuthStore>(store: S) {
    let (user, _) = session(&store, "erin").await;
    let revoked_at = |id: i64| {
        let store = store.clone();
        async move {
            store
                .user_by_id(id)
                .await
                .unwrap()
                .and_then(|u| u.sessions_revoked_at)
        }
    };
    assert_eq!(revoked_at(user).await, None);

    store
        .logout_user(user, NOW + 10, no_admin_events)
        .await
        .unwrap();
    store
        .logout_user(user, NOW + 5, no_admin_events)
        .await
        .unwrap();

    assert_eq!(revoked_at(user).await, Some(NOW + 10));
    assert_eq!(revoked_at(user + 1000).await, None);
}

on_both_stores!(logout_everywhere_records_its_instant);

/// A refused attempt for the outbox, tallied under `key` until `due_at`.
fn refusal(key: &str, due_at: i64, micros: i64) -> OutboxEntry {
    OutboxEntry {
        event_id: uuid::Uuid::now_v7().to_string(),
        payload: Vec::new(),
        created_at: micros / 1_000_000,
        occurred_micros: micros,
        tally: Some(Tally {
            key: key.to_owned(),
            due_at,
        }),
    }
}

async fn refusals_are_tallied_per_key_until_due<S: AuthStore>(store: S) {
    let due = NOW + 60;
    let at = |s: i64| (NOW + s) * 1_000_000;
    // Released together: each is counted once, into one row.
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(40));
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .record_login(&refusal("a", due, at(i)), LoginEffects::Nothing)
                    .await
                    .unwrap();
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    store
        .record_login(&refusal("b", due, at(1)), LoginEffects::Nothing)
        .await
        .unwrap();
    assert_eq!(store.outbox_len().await.unwrap(), 2);

    // Open tallies wait for their window to end.
    assert!(store.outbox_oldest(10, due - 1).await.unwrap().is_empty());

    let rows = store.outbox_oldest(10, due).await.unwrap();
    let counts: Vec<(i64, Option<i64>)> = rows.iter().map(|r| (r.tally_count, r.last_at)).collect();
    assert_eq!(counts, [(40, Some(at(39))), (1, Some(at(1)))]);

    // Closed rows take no more counts: a late refusal under the same key
    // opens a new row, so nothing is counted into a row already sent.
    store
        .record_login(&refusal("a", due, at(59)), LoginEffects::Nothing)
        .await
        .unwrap();
    let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
    store.outbox_remove(&seqs).await.unwrap();
    let rows = store.outbox_oldest(10, due).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].tally_count, rows[0].last_at), (1, Some(at(59))));

    // A tally audit-service refuses keeps its count aside.
    store
        .record_login(&refusal("c", due, at(2)), LoginEffects::Nothing)
        .await
        .unwrap();
    store
        .record_login(&refusal("c", due, at(3)), LoginEffects::Nothing)
        .await
        .unwrap();
    let rows = store.outbox_oldest(10, due).await.unwrap();
    let tally = rows.iter().find(|r| r.tally_count == 2).unwrap();
    store
        .outbox_set_aside(tally.seq, "test", due)
        .await
        .unwrap();
    assert_eq!(store.refused_len().await.unwrap(), 1);
}

on_both_stores!(refusals_are_tallied_per_key_until_due);

/// A login whose password was checked before a deactivation committed, and
/// whose record comes after it, stores no session (one the deactivation
/// never saw would otherwise outlive it, and work again on reactivation)
/// and records nothing: the caller records the attempt again as refused.
async fn a_login_recorded_after_a_deactivation_stores_nothing<S: AuthStore>(store: S) {
    let (user, jti) = session(&store, "gil").await;
    let seen = store.account_detail(user, NOW).await.unwrap().unwrap();
    assert_eq!(seen.account.last_login_at, Some(NOW));
    assert_eq!(seen.active_sessions, 1);
    let outbox = store.outbox_len().await.unwrap();

    let change = AccountChange::Update {
        is_active: Some(false),
        is_staff: None,
    };
    let done = store
        .change_account(
            user,
            change,
            NOW + 1,
            |_, _| Ok::<(), ()>(()),
            |_, _| Vec::new(),
        )
        .await
        .unwrap();
    assert!(
        matches!(
            done,
            ChangeOutcome::Changed {
                revoked_sessions: 1,
                ..
            }
        ),
        "{done:?}"
    );
    assert_eq!(store.live_refresh_owner(&jti, NOW + 1).await.unwrap(), None);

    let late = NewRefreshToken {
        jti: "gil-late".to_owned(),
        family_id: "gil-late-family".to_owned(),
        user_id: user,
        issued_at: NOW + 2,
        expires_at: NOW + 86_400,
    };
    let attempt = OutboxEntry {
        event_id: uuid::Uuid::now_v7().to_string(),
        payload: Vec::new(),
        created_at: NOW + 2,
        occurred_micros: (NOW + 2) * 1_000_000,
        tally: None,
    };
    let keys = LoginKeys::new(
        Some(user),
        &crate::domain::LoginIdentifier::new("gil"),
        "192.0.2.1".to_owned(),
    );
    let stored = store
        .record_login(
            &attempt,
            LoginEffects::Success {
                refresh: &late,
                keys: &keys,
                reserved: &ReservedTry {
                    known_client: false,
                    lock_started: false,
                    ip_window_start: NOW,
                },
            },
        )
        .await
        .unwrap();
    assert!(!stored);
    assert_eq!(
        store.live_refresh_owner("gil-late", NOW + 2).await.unwrap(),
        None
    );
    assert_eq!(store.outbox_len().await.unwrap(), outbox);
    let after = store.account_detail(user, NOW + 2).await.unwrap().unwrap();
    assert_eq!(after.account.last_login_at, Some(NOW), "not a login");
}

on_both_stores!(a_login_recorded_after_a_deactivation_stores_nothing);

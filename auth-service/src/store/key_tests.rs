//! Signing keys on both real backends: replicas starting together add one
//! key between them, on a fresh database and on a changed `JWT_ALGORITHM`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use super::*;
use crate::tokens::{KeyAlgorithm, ensure_signing_key, next_key};

const NOW: i64 = 1_800_000_000;
const DELAY: Duration = Duration::from_secs(600);
/// Replicas started at once.
const REPLICAS: usize = 4;

/// `REPLICAS` separate stores on one database (separate pools, as separate
/// processes have), each calling `ensure_signing_key` at the same instant.
async fn start_together<S: AuthStore>(replicas: Vec<S>, algorithm: KeyAlgorithm) {
    let barrier = Arc::new(tokio::sync::Barrier::new(replicas.len()));
    let tasks: Vec<_> = replicas
        .into_iter()
        .map(|store| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let rows = ensure_signing_key(&store, algorithm, DELAY, NOW)
                    .await
                    .unwrap();
                // Every replica sees the same newest key, of its algorithm.
                assert_eq!(rows[0].alg, algorithm);
                rows[0].kid.clone()
            })
        })
        .collect();
    let mut newest = Vec::new();
    for task in tasks {
        newest.push(task.await.unwrap());
    }
    newest.dedup();
    assert_eq!(
        newest.len(),
        1,
        "replicas sign with different keys: {newest:?}"
    );
}

async fn keys_are_added_once_per_change<S: AuthStore>(replicas: Vec<S>) {
    let store = replicas[0].clone();

    // A fresh database: one key between them, signing at once.
    start_together(replicas.clone(), KeyAlgorithm::EdDsa).await;
    let rows = store.signing_keys().await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let first = rows[0].clone();
    assert_eq!(
        (first.alg, first.not_before, first.supersedes.as_deref()),
        (KeyAlgorithm::EdDsa, NOW, Some(""))
    );

    // Started again with the same setting: nothing added.
    start_together(replicas.clone(), KeyAlgorithm::EdDsa).await;
    assert_eq!(store.signing_keys().await.unwrap().len(), 1);

    // JWT_ALGORITHM changed: one ES256 key, published now, signing after
    // the publish delay, the EdDSA key kept.
    start_together(replicas.clone(), KeyAlgorithm::Es256).await;
    let rows = store.signing_keys().await.unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let switched = &rows[0];
    assert_eq!(switched.alg, KeyAlgorithm::Es256);
    assert_eq!(switched.not_before, NOW + 600);
    assert!(switched.created_at > first.created_at);
    assert_eq!(switched.supersedes.as_deref(), Some(first.kid.as_str()));
    assert_eq!(rows[1].kid, first.kid);

    // And back: an EdDSA key scheduled after the pending ES256 one.
    start_together(replicas, KeyAlgorithm::EdDsa).await;
    let rows = store.signing_keys().await.unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].alg, KeyAlgorithm::EdDsa);
    assert_eq!(rows[0].not_before, NOW + 601);
}

async fn a_second_key_superseding_the_same_key_is_not_added<S: AuthStore>(store: S) {
    let rows = ensure_signing_key(&store, KeyAlgorithm::EdDsa, DELAY, NOW)
        .await
        .unwrap();
    let one = next_key(&rows, KeyAlgorithm::Es256, NOW, NOW + 600)
        .await
        .unwrap();
    let other = next_key(&rows, KeyAlgorithm::Es256, NOW, NOW + 600)
        .await
        .unwrap();
    assert_eq!(one.supersedes, other.supersedes);

    assert!(store.add_signing_key(&one).await.unwrap());
    assert!(!store.add_signing_key(&other).await.unwrap());

    let kids: Vec<_> = store
        .signing_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(kids, [one.kid, rows[0].kid.clone()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_added_once_per_change_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("auth.db").display());
    let mut replicas = Vec::new();
    for _ in 0..REPLICAS {
        replicas.push(SqliteStore::connect(&url).await.unwrap());
    }
    keys_are_added_once_per_change(replicas).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_added_once_per_change_on_postgres() {
    let Some(server) = common::testing::server_url("TEST_POSTGRES_URL") else {
        return;
    };
    let url = common::testing::fresh_postgres(&server).await;
    let mut replicas = Vec::new();
    for _ in 0..REPLICAS {
        replicas.push(PgStore::connect(&url).await.unwrap());
    }
    keys_are_added_once_per_change(replicas).await;
}

super::tests::on_both_stores!(a_second_key_superseding_the_same_key_is_not_added);

/// A row as the service wrote it before migration 0012: no `alg`, no
/// `supersedes`.
const LEGACY_INSERT: &str =
    "INSERT INTO signing_keys (kid, secret, created_at, not_before) VALUES ($1, $2, $3, $4)";

fn legacy_key() -> SigningKeyRow {
    crate::tokens::generate_key(KeyAlgorithm::EdDsa, NOW, NOW).unwrap()
}

async fn legacy_keys_are_eddsa<S: AuthStore>(store: S, old: SigningKeyRow) {
    let rows = ensure_signing_key(&store, KeyAlgorithm::EdDsa, DELAY, NOW + 5)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].kid, old.kid);
    assert_eq!(
        (rows[0].alg, rows[0].supersedes.as_deref()),
        (KeyAlgorithm::EdDsa, None)
    );
    // The first key added after it supersedes it.
    let rows = ensure_signing_key(&store, KeyAlgorithm::Es256, DELAY, NOW + 5)
        .await
        .unwrap();
    assert_eq!(rows[0].supersedes.as_deref(), Some(old.kid.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_stored_before_algorithms_were_recorded_are_eddsa_on_sqlite() {
    let (_dir, store) = super::tests::sqlite().await;
    let old = legacy_key();
    sqlx::query(LEGACY_INSERT)
        .bind(&old.kid)
        .bind(&old.secret)
        .bind(NOW)
        .bind(NOW)
        .execute(&store.pool)
        .await
        .unwrap();
    legacy_keys_are_eddsa(store, old).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_stored_before_algorithms_were_recorded_are_eddsa_on_postgres() {
    let Some(server) = common::testing::server_url("TEST_POSTGRES_URL") else {
        return;
    };
    let store = PgStore::connect(&common::testing::fresh_postgres(&server).await)
        .await
        .unwrap();
    let old = legacy_key();
    sqlx::query(LEGACY_INSERT)
        .bind(&old.kid)
        .bind(&old.secret)
        .bind(NOW)
        .bind(NOW)
        .execute(&store.pool)
        .await
        .unwrap();
    legacy_keys_are_eddsa(store, old).await;
}

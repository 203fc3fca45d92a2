//! Start-up work for claimed names (issue #14): accounts created before
//! names were normalised get their new keys, in Rust (SQL cannot compute
//! NFKC or TR39 skeletons on SQLite), a batch per transaction, once; an
//! account whose new key an older account already holds is never merged
//! or dropped: it keeps its old keys and is reported here at every start
//! and by `auth-service name-collisions` until an operator resolves it.

use crate::store::{AuthStore, NameCollision};

/// Accounts migrated per transaction: short enough not to hold SQLite's
/// one writer for long.
const BATCH: i64 = 500;

/// Migrates every account that predates claimed names (a no-op once
/// recorded as done) and warns about each collision on record.
pub async fn migrate<S: AuthStore>(store: &S, now: i64) -> anyhow::Result<Vec<NameCollision>> {
    let mut migrated = 0;
    loop {
        let n = store.migrate_identities(BATCH, now).await?;
        if n == 0 {
            break;
        }
        migrated += n;
    }
    if migrated > 0 {
        tracing::info!(
            accounts = migrated,
            "name keys computed for existing accounts"
        );
    }
    let collisions = store.name_collisions().await?;
    for c in &collisions {
        tracing::warn!(
            user_id = c.user_id,
            username = %c.username,
            email = %c.email,
            kind = %c.kind,
            holder_id = c.holder_id,
            holder_username = %c.holder_username,
            "account name collides with an older account's: it keeps its old key; \
             resolve it (see `auth-service name-collisions`)"
        );
    }
    Ok(collisions)
}

//! A batch of refresh rotations as set statements: every token is spent by
//! one `UPDATE`, every family counted by one upsert, every successor stored
//! by one `INSERT`, the batch passed as one JSON parameter. sqlx runs each
//! SQLite statement on the connection's own thread, so each statement is
//! two thread wake-ups; rotating one by one cost three per refresh, which
//! was most of auth-service's CPU per refresh after the signatures.
//!
//! The outcome is the one of running the rotations one after another in
//! some order: tokens that are not live (reuse, unknown, expired) are
//! handled after the live ones, through the one-by-one path, so a reuse in
//! the batch revokes its family including a successor stored moments
//! before, as if it had arrived just after.

use std::collections::{HashMap, HashSet};

use sqlx::SqliteConnection;

use super::RotateJob;
use crate::store::{Rotation, SqliteStore, TokenOwner};

/// Spends every live token named in `$1` (`[[jti, now, successor_jti], …]`),
/// recording its successor, and returns its family and owner.
const SPEND: &str = "UPDATE refresh_tokens SET used_at = j.now, successor_jti = j.next
     FROM (SELECT json_extract(value, '$[0]') AS jti, json_extract(value, '$[1]') AS now,
                  json_extract(value, '$[2]') AS next
           FROM json_each($1)) AS j
     WHERE refresh_tokens.jti = j.jti AND used_at IS NULL AND revoked_at IS NULL
       AND expires_at > j.now
     RETURNING jti, family_id, user_id,
        (SELECT username FROM users WHERE id = refresh_tokens.user_id) AS username,
        (SELECT is_active FROM users WHERE id = refresh_tokens.user_id) AS is_active,
        (SELECT is_staff FROM users WHERE id = refresh_tokens.user_id) AS is_staff";

/// `count_hit` for every key in `$1` (`[[key, now], …]`) with the window `$2`.
const COUNT: &str = "INSERT INTO throttle (key, hits, window_start)
     SELECT json_extract(value, '$[0]'), 1, json_extract(value, '$[1]') FROM json_each($1) WHERE true
     ON CONFLICT (key) DO UPDATE SET
        hits = CASE WHEN throttle.window_start <= excluded.window_start - $2
                    THEN 1 ELSE throttle.hits + 1 END,
        strikes = CASE WHEN throttle.window_start <= excluded.window_start - $2
                            AND throttle.blocked_until <= excluded.window_start
                       THEN 0 ELSE throttle.strikes END,
        window_start = CASE WHEN throttle.window_start <= excluded.window_start - $2
                            THEN excluded.window_start ELSE throttle.window_start END
     RETURNING key, hits, window_start";

/// Stores every successor in `$1` (`[[jti, family_id, user_id, issued_at,
/// expires_at], …]`).
const STORE: &str = "INSERT INTO refresh_tokens (jti, family_id, user_id, issued_at, expires_at)
     SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
            json_extract(value, '$[3]'), json_extract(value, '$[4]')
     FROM json_each($1)";

/// A spent token's family and owner, as [`SPEND`] returns them; the owner
/// columns are `NULL` when the account is gone.
#[derive(sqlx::FromRow)]
struct Spent {
    jti: String,
    family_id: String,
    user_id: i64,
    username: Option<String>,
    is_active: Option<bool>,
    is_staff: Option<bool>,
}

/// Whether [`rotate_set`] can take `batch`: no token twice (two
/// presentations of one token must see each other, in order) and one
/// family limit for all (it is one setting; [`COUNT`] takes one window).
pub(super) fn applies(batch: &[RotateJob]) -> bool {
    let mut seen = HashSet::with_capacity(batch.len());
    batch.len() > 1
        && batch.iter().all(|job| seen.insert(job.jti.as_str()))
        && batch.iter().all(|job| job.limit == batch[0].limit)
}

/// Rotates `batch` (see the module docs) inside the caller's transaction;
/// outcomes in `batch` order. Only call it when [`applies`] holds.
pub(super) async fn rotate_set(
    conn: &mut SqliteConnection,
    batch: &[RotateJob],
) -> Result<Vec<Rotation>, sqlx::Error> {
    let spend: Vec<(&str, i64, &str)> = batch
        .iter()
        .map(|j| (j.jti.as_str(), j.now, j.next.jti.as_str()))
        .collect();
    let rows: Vec<Spent> = sqlx::query_as(SPEND)
        .bind(json(&spend)?)
        .fetch_all(&mut *conn)
        .await?;
    let mut spent: HashMap<String, Spent> =
        rows.into_iter().map(|row| (row.jti.clone(), row)).collect();

    let keys: Vec<(String, i64)> = batch
        .iter()
        .filter_map(|job| {
            let row = spent.get(&job.jti)?;
            Some((format!("rf:{}", row.family_id), job.now))
        })
        .collect();
    let mut counts: HashMap<String, (i64, i64)> = HashMap::with_capacity(keys.len());
    if !keys.is_empty() {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(COUNT)
            .bind(json(&keys)?)
            .bind(batch[0].limit.window)
            .fetch_all(&mut *conn)
            .await?;
        for (key, hits, start) in rows {
            // One live token per family, so one row per key; anything else
            // would count a family twice: let the batch fail and be retried
            // one rotation at a time.
            if counts.insert(key, (hits, start)).is_some() {
                return Err(sqlx::Error::Protocol(
                    "two live refresh tokens in one family".into(),
                ));
            }
        }
    }

    let mut outcomes = Vec::with_capacity(batch.len());
    let mut successors: Vec<(&str, String, i64, i64, i64)> = Vec::with_capacity(keys.len());
    let mut not_live = Vec::new();
    for (i, job) in batch.iter().enumerate() {
        let Some(Spent {
            family_id,
            user_id,
            username,
            is_active,
            is_staff,
            ..
        }) = spent.remove(&job.jti)
        else {
            not_live.push(i);
            outcomes.push(Rotation::Invalid);
            continue;
        };
        let key = format!("rf:{family_id}");
        let Some(&(hits, start)) = counts.get(&key) else {
            return Err(sqlx::Error::Protocol("family not counted".into()));
        };
        let outcome = if let Some(wait) = job.limit.retry_after(hits, start, job.now) {
            // As on the one-by-one path: undo the count and the spend.
            sqlx::query("UPDATE throttle SET hits = hits - 1 WHERE key = $1")
                .bind(&key)
                .execute(&mut *conn)
                .await?;
            sqlx::query(
                "UPDATE refresh_tokens SET used_at = NULL, successor_jti = NULL WHERE jti = $1",
            )
            .bind(&job.jti)
            .execute(&mut *conn)
            .await?;
            Rotation::Throttled(wait)
        } else if let (Some(username), Some(true), Some(is_staff)) = (username, is_active, is_staff)
        {
            successors.push((
                job.next.jti.as_str(),
                family_id,
                user_id,
                job.next.issued_at,
                job.next.expires_at,
            ));
            Rotation::Rotated(TokenOwner {
                id: user_id,
                username,
                is_staff,
            })
        } else {
            // Disabled, or gone.
            SqliteStore::revoke_family(&mut *conn, &family_id, job.now).await?;
            Rotation::Inactive
        };
        outcomes.push(outcome);
    }
    if !successors.is_empty() {
        sqlx::query(STORE)
            .bind(json(&successors)?)
            .execute(&mut *conn)
            .await?;
    }

    // Not live: a replay within the grace, reuse (revoking the family) or
    // invalid, decided exactly as one by one; their spend finds nothing, as
    // it did in `SPEND`.
    for i in not_live {
        let job = &batch[i];
        outcomes[i] =
            SqliteStore::rotate_in_tx(conn, &job.jti, job.now, &job.next, job.limit, job.grace)
                .await?;
    }
    Ok(outcomes)
}

fn json(value: &impl serde::Serialize) -> Result<String, sqlx::Error> {
    serde_json::to_string(value).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::store::{
        AuthStore, SqliteStore,
        tests::{NOW, next, session, sqlite},
    };
    use crate::throttle::Limit;

    /// Two rotations per family in the window; the third is refused.
    const TWO: Limit = Limit { max: 2, window: 60 };

    fn job(jti: &str, successor: &str, user_id: i64) -> RotateJob {
        RotateJob {
            jti: jti.to_owned(),
            now: NOW,
            next: next(successor, user_id, NOW),
            limit: TWO,
            grace: 0,
            reply: tokio::sync::oneshot::channel().0,
        }
    }

    /// A whole `refresh_tokens` row.
    type TokenRow = (
        String,
        String,
        i64,
        i64,
        i64,
        Option<i64>,
        Option<i64>,
        Option<String>,
    );

    /// Outcomes, then every token row and every counter, as text.
    type Run = (Vec<String>, Vec<String>, Vec<String>);

    /// One of each case in a single batch, on a fresh database, rotated by
    /// the set statements or one by one.
    async fn mixed_batch(as_set: bool) -> Run {
        let (_dir, store) = sqlite().await;
        let rotate = |jti: &str, to: &str, user: i64| {
            let store: SqliteStore = store.clone();
            let (jti, to) = (jti.to_owned(), to.to_owned());
            async move {
                let outcome = store
                    .rotate_refresh(&jti, NOW, &next(&to, user, NOW), TWO, 0)
                    .await
                    .unwrap();
                assert!(matches!(outcome, Rotation::Rotated(_)), "{outcome:?}");
            }
        };
        let (ann, ann_jti) = session(&store, "ann").await;
        let (bob, bob_jti) = session(&store, "bob").await;
        rotate(&bob_jti, "bob-1", bob).await;
        let (cat, cat_jti) = session(&store, "cat").await;
        sqlx::query("UPDATE users SET is_active = FALSE WHERE id = $1")
            .bind(cat)
            .execute(&store.pool)
            .await
            .unwrap();
        let (dan, dan_jti) = session(&store, "dan").await;
        rotate(&dan_jti, "dan-1", dan).await;
        rotate("dan-1", "dan-2", dan).await;
        let (eve, eve_jti) = session(&store, "eve").await;
        rotate(&eve_jti, "eve-1", eve).await;
        let (fay, fay_jti) = session(&store, "fay").await;
        rotate(&fay_jti, "fay-1", fay).await;
        let fay_again = RotateJob {
            grace: 5,
            ..job(&fay_jti, "fay-x", fay)
        };
        let batch = [
            job(&ann_jti, "ann-1", ann),    // live
            job(&bob_jti, "bob-x", bob),    // used before: reuse
            job("nobody-0", "nobody-1", 1), // unknown
            job(&cat_jti, "cat-1", cat),    // owner disabled
            job("dan-2", "dan-3", dan),     // third rotation in the window
            job("eve-1", "eve-2", eve),     // live, then ...
            job(&eve_jti, "eve-x", eve),    // ... its family's older token
            fay_again,                      // used within the grace: replayed
        ];
        assert!(applies(&batch));

        let writer = store.writer.clone().unwrap();
        let mut conn = writer.lock().await;
        let mut tx = sqlx::Connection::begin(&mut *conn).await.unwrap();
        let outcomes = if as_set {
            rotate_set(&mut tx, &batch).await.unwrap()
        } else {
            let mut outcomes = Vec::new();
            for j in &batch {
                outcomes.push(
                    super::SqliteStore::rotate_in_tx(
                        &mut tx, &j.jti, j.now, &j.next, j.limit, j.grace,
                    )
                    .await
                    .unwrap(),
                );
            }
            outcomes
        };
        tx.commit().await.unwrap();
        let tokens: Vec<TokenRow> = sqlx::query_as(
            "SELECT jti, family_id, user_id, issued_at, expires_at, used_at, revoked_at,
                    successor_jti
                 FROM refresh_tokens ORDER BY jti",
        )
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        let counters: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT key, hits, window_start, blocked_until, strikes FROM throttle ORDER BY key",
        )
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        (
            outcomes.iter().map(|o| format!("{o:?}")).collect(),
            tokens.iter().map(|t| format!("{t:?}")).collect(),
            counters.iter().map(|c| format!("{c:?}")).collect(),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_mixed_batch_ends_as_one_by_one_rotation_does() {
        let (outcomes, tokens, counters) = mixed_batch(true).await;
        let one_by_one = mixed_batch(false).await;

        let kinds: Vec<&str> = outcomes
            .iter()
            .map(|o| o.split(['(', ' ']).next().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "Rotated",
                "Reused",
                "Invalid",
                "Inactive",
                "Throttled",
                "Rotated",
                "Reused",
                "Replayed"
            ]
        );
        assert_eq!((outcomes, tokens, counters), one_by_one);
    }

    #[test]
    fn repeated_tokens_or_mixed_limits_go_one_by_one() {
        let twice = [job("a", "b", 1), job("a", "c", 1)];
        let mut mixed = [job("a", "b", 1), job("d", "e", 1)];
        mixed[1].limit = Limit { max: 3, window: 60 };

        assert!(!applies(&twice));
        assert!(!applies(&mixed));
        assert!(!applies(&[job("a", "b", 1)]));
        assert!(applies(&[job("a", "b", 1), job("d", "e", 1)]));
    }
}

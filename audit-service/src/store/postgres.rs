//! PostgreSQL backend: the shared engine when the service runs as replicas.

use std::str::FromStr as _;

use sqlx::{
    Connection as _, Postgres,
    pool::PoolConnection,
    postgres::{PgConnectOptions, PgConnection, PgPoolOptions},
};

use super::{
    admin_events::{AdminSql, admin_select},
    counting::{CountRow, from_row, per_bucket_query},
    insert::{InsertError, stored_attempts},
    listing::Keyset,
    opening::{ACQUIRE_TIMEOUT, Opening as _},
    pg_copy,
    pooled::{Pooled, UpkeepSql},
    suspicion::{Judge, KeyKind, SuspicionRule},
};
use std::collections::{HashMap, HashSet};

use crate::attempt::{BucketCounts, CountQuery, NewAttempt, StoredAttempt};

/// Pool size per replica; ingest is one transaction per batch and listing is
/// an admin action, so a handful of connections is plenty.
const MAX_CONNECTIONS: u32 = 10;

/// Connections kept open even when idle: a group's ingest takes a second
/// connection only if one is idle at that moment.
const MIN_CONNECTIONS: u32 = 3;

const EXISTING: &str =
    "SELECT event_id::text FROM login_attempts WHERE event_id = ANY($1::text[]::uuid[])";
const INSERT: &str = "INSERT INTO login_attempts \
    (event_id, occurred_at, identifier, user_id, username, email, email_lower, \
     successful, reject_reason, ip, user_agent, request_id, suspicious, ip_key, \
     attempt_count, last_occurred_at, kind, original_reject_reason) \
    SELECT e::uuid, o, i, u, n, m, ml, s, r, ip, ua, rq, su, k, c, l, kd, orr FROM UNNEST( \
     $1::text[], $2::int8[], $3::text[], $4::int8[], $5::text[], $6::text[], $7::text[], \
     $8::bool[], $9::text[], $10::text[], $11::text[], $12::text[], $13::bool[], $14::text[], \
     $15::int8[], $16::int8[], $17::text[], $18::text[]) \
     AS t(e, o, i, u, n, m, ml, s, r, ip, ua, rq, su, k, c, l, kd, orr) \
    ON CONFLICT (event_id) DO NOTHING RETURNING id, event_id::text";

/// Ids for a group's rows, taken ahead so `COPY` can write them. The
/// sequence is named, not looked up: `pg_get_serial_sequence` would run once
/// per row (measured: ten times the cost of the `nextval`s themselves).
const RESERVE_IDS: &str = "SELECT nextval('login_attempts_id_seq') FROM generate_series(1, $1)";

const UPKEEP: UpkeepSql = UpkeepSql {
    delete_before: "DELETE FROM login_attempts WHERE id IN \
        (SELECT id FROM login_attempts WHERE occurred_at < $1 LIMIT $2)",
    missing_ip_keys: "SELECT id, ip FROM login_attempts WHERE ip_key IS NULL LIMIT $1",
    set_ip_key: "UPDATE login_attempts SET ip_key = $1 WHERE id = $2",
    heartbeat: "INSERT INTO readiness_heartbeat (id, written_at) VALUES (1, $1) \
        ON CONFLICT (id) DO UPDATE SET written_at = excluded.written_at",
};

/// Admin events in PostgreSQL's dialect (event ids are `uuid`).
pub(super) const ADMIN: AdminSql = AdminSql {
    begin: "BEGIN",
    uuid_cast: "::uuid",
    existing: "SELECT event_id::text FROM admin_events WHERE event_id IN (",
    on_duplicate: " ON CONFLICT (event_id) DO NOTHING",
    select: admin_select!("event_id::text AS event_id"),
    keyset: Keyset::RowValue,
};

/// A listing's columns, completed by `listing::push_listing`.
pub(super) const SELECT: &str = "SELECT id, event_id::text AS event_id, occurred_at, identifier, user_id, \
    username, email, email_lower, successful, reject_reason, ip, user_agent, request_id, \
    suspicious, attempt_count, last_occurred_at, kind, original_reject_reason \
    FROM login_attempts WHERE TRUE";

/// The PostgreSQL log database.
#[derive(Debug, Clone)]
pub struct PgStore {
    /// Connection pool and upkeep.
    pub(super) db: Pooled<Postgres>,
    /// The suspicious-activity rule applied at ingest.
    rule: SuspicionRule,
}

impl PgStore {
    /// Connects and migrates (sqlx serialises concurrent migrators with an
    /// advisory lock, so replicas may start together).
    pub(super) async fn connect(url: &str, rule: SuspicionRule) -> anyhow::Result<Self> {
        let options = PgConnectOptions::from_str(url).opening(url, "")?;
        // One plain connection first: the pool would retry a refusing
        // server for its whole acquire timeout and then hide the cause.
        common::database::probe(&options).await.opening(url, "")?;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .min_connections(MIN_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .opening(url, "")?;
        Ok(Self {
            db: Pooled::open(pool, &sqlx::migrate!("migrations/postgres"), &UPKEEP, url).await?,
            rule,
        })
    }

    pub(super) async fn insert_batch(
        &self,
        attempts: &[NewAttempt],
        batch_ends: &[usize],
    ) -> Result<Vec<StoredAttempt>, InsertError> {
        let mut conn = self.db.pool.acquire().await?;
        // One more connection for the whole group, if one is idle: the
        // email count runs on it, then the second part.
        let mut other = self.idle_connection().await;
        let judged = self
            .judge(&mut conn, other.as_deref_mut(), attempts)
            .await?;
        if judged.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<(&NewAttempt, bool)> =
            judged.iter().map(|&(i, s)| (&attempts[i], s)).collect();
        let indexes: Vec<usize> = judged.iter().map(|&(i, _)| i).collect();
        let split = part_cut(&indexes, batch_ends).zip(other.as_deref_mut());
        let Some((cut, other)) = split else {
            let ids = store_part(&mut conn, &rows, None, async { true }).await?;
            return Ok(stored_attempts(&rows, &ids.unwrap_or_default()));
        };
        let (first, second) = rows.split_at(cut);
        // Written at once; the later part commits only once the earlier one
        // is written, so a part the database refuses never leaves later
        // batches stored without it (the commits themselves, which fail
        // only with the server or the connection, run at once).
        let (first_written, may_commit_second) = tokio::sync::oneshot::channel();
        let (first_ids, second_ids) = tokio::join!(
            store_part(&mut conn, first, Some(first_written), async { true }),
            store_part(other, second, None, async {
                may_commit_second.await.is_ok()
            })
        );
        // (`None` only comes from a part told not to commit: never the first.)
        let stored = stored_attempts(first, &first_ids?.unwrap_or_default());
        match second_ids {
            Ok(ids) => Ok([stored, stored_attempts(second, &ids.unwrap_or_default())].concat()),
            Err(source) => Err(InsertError { stored, source }),
        }
    }

    /// The non-empty buckets of `query` (see `counting::per_bucket_query`).
    ///
    /// Planned for its own values each time (an unnamed statement): a plan
    /// made for unknown ones (after five runs of a named statement) could
    /// read a /16's IP-key range for each bucket. And without JIT, in a
    /// transaction of its own: the plan's cost, per bucket times buckets,
    /// is far above `jit_inline_above_cost`, and compiling with inlining
    /// took 1.5 s at 10 M rows for a query that runs in 0.2 s.
    pub(super) async fn count(
        &self,
        query: &CountQuery,
    ) -> Result<Vec<(i64, BucketCounts)>, sqlx::Error> {
        let mut tx = self.db.pool.begin().await?;
        sqlx::raw_sql("SET LOCAL jit = off")
            .execute(&mut *tx)
            .await?;
        let rows: Vec<CountRow> = per_bucket_query(query)
            .build_query_as()
            .persistent(false)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// A second connection, if one is idle and answers right now. It never
    /// waits for one: holding a connection while waiting for another could
    /// starve the pool when many streams ingest at once. An idle connection
    /// skips the pool's usual check on acquire, so it is pinged here (one
    /// round trip per group), and closed if it does not answer (after a
    /// server restart, say). Taken once per group and kept to its end, it
    /// does not depend on connections the group used earlier having gone
    /// back to the pool yet (that happens in the background).
    async fn idle_connection(&self) -> Option<PoolConnection<Postgres>> {
        let mut conn = self.db.pool.try_acquire()?;
        if conn.ping().await.is_err() {
            conn.close_on_drop();
            return None;
        }
        Some(conn)
    }

    /// The rows of `attempts` not stored yet (first of each event id), by
    /// index in batch order, each with its suspicious flag. Reads only, so
    /// outside any transaction; `other`, when there is one, takes the email
    /// count so the two counts run on two server processes at once.
    async fn judge(
        &self,
        conn: &mut PgConnection,
        other: Option<&mut PgConnection>,
        attempts: &[NewAttempt],
    ) -> Result<Vec<(usize, bool)>, sqlx::Error> {
        let event_ids: Vec<&str> = attempts.iter().map(|a| a.event_id.as_str()).collect();
        let stored: HashSet<String> = sqlx::query_scalar(EXISTING)
            .bind(event_ids)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .collect();
        let mut judge = Judge::new(self.rule, attempts, &stored);
        if judge.is_empty() {
            return Ok(Vec::new());
        }
        let [ip, email] = KeyKind::ALL;
        let (ip_counts, email_counts) = match other {
            Some(other) => {
                tokio::join!(
                    count_failures(&mut *conn, &judge, ip),
                    count_failures(other, &judge, email)
                )
            }
            None => (
                count_failures(&mut *conn, &judge, ip).await,
                count_failures(&mut *conn, &judge, email).await,
            ),
        };
        judge.add_counts(ip, ip_counts?);
        judge.add_counts(email, email_counts?);
        judge.flags::<Postgres>(conn).await
    }
}

/// Writes `rows` in one transaction on `conn`, says so on `written` (which
/// is dropped unsent if the write fails), and once `may_commit` allows,
/// commits and returns their ids by event id; `None` when it did not allow
/// (rolled back).
async fn store_part(
    conn: &mut PgConnection,
    rows: &[(&NewAttempt, bool)],
    written: Option<tokio::sync::oneshot::Sender<()>>,
    may_commit: impl Future<Output = bool>,
) -> Result<Option<HashMap<String, i64>>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    let ids = match copy_rows(&mut tx, rows).await {
        Ok(ids) => ids,
        // Another stream (a producer that reconnected and resent) has
        // committed some of these events since they were looked up.
        Err(e) if is_unique_violation(&e) => {
            tx.rollback().await?;
            tx = conn.begin().await?;
            insert_new(&mut tx, rows).await?
        }
        Err(e) => return Err(e),
    };
    if let Some(written) = written {
        let _ = written.send(());
    }
    if may_commit.await {
        tx.commit().await?;
        Ok(Some(ids))
    } else {
        tx.rollback().await?;
        Ok(None)
    }
}

/// Fewest rows worth a second transaction; a smaller group stays one
/// transaction (one commit to wait for). A larger one is split in two, so
/// the server inserts on two processes (two cores) at once: one
/// transaction's insert runs on one server process, and index upkeep is
/// most of a row's cost.
const MIN_PART_ROWS: usize = 1_000;

/// Where to cut the rows to insert (`indexes`, ascending positions in the
/// group) in two parts of similar size, only at the end of a producer batch
/// (`batch_ends`), so each batch stays in one transaction; `None` when the
/// group is too small or one batch.
fn part_cut(indexes: &[usize], batch_ends: &[usize]) -> Option<usize> {
    let rows = indexes.len();
    if rows < 2 * MIN_PART_ROWS {
        return None;
    }
    batch_ends
        .iter()
        .map(|&end| indexes.partition_point(|&i| i < end))
        .filter(|&cut| cut.min(rows.saturating_sub(cut)) >= MIN_PART_ROWS)
        .min_by_key(|&cut| cut.abs_diff(rows / 2))
}

/// The grouped count of stored failures per key of `kind` (see `Judge`),
/// as `(key, surely, maybe)` rows.
async fn count_failures(
    conn: &mut PgConnection,
    judge: &Judge<'_>,
    kind: KeyKind,
) -> Result<Vec<(String, i64, i64)>, sqlx::Error> {
    let Some(plan) = judge.count_plan(kind) else {
        return Ok(Vec::new());
    };
    sqlx::query_as(count_sql(kind))
        .bind(plan.common.0)
        .bind(plan.common.1)
        .bind(plan.union.0)
        .bind(plan.union.1)
        .bind(plan.keys)
        .fetch_all(conn)
        .await
}

/// The statement of [`count_failures`], with the keys as one array, so it
/// is one prepared statement whatever their number.
fn count_sql(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::Ip => {
            "SELECT ip_key, COUNT(CASE WHEN occurred_at > $1 AND occurred_at <= $2 THEN 1 END), \
             COUNT(*) FROM login_attempts WHERE NOT successful \
             AND occurred_at > $3 AND occurred_at <= $4 AND ip_key = ANY($5) GROUP BY ip_key"
        }
        KeyKind::Email => {
            "SELECT email_lower, COUNT(CASE WHEN occurred_at > $1 AND occurred_at <= $2 THEN 1 END), \
             COUNT(*) FROM login_attempts WHERE NOT successful \
             AND occurred_at > $3 AND occurred_at <= $4 AND email_lower = ANY($5) \
             GROUP BY email_lower"
        }
    }
}

/// Copies `rows` in with ids reserved from the table's identity sequence
/// and returns them by event id. Fails with a unique violation when one of
/// the events was stored meanwhile (`COPY` has no `ON CONFLICT`).
async fn copy_rows(
    conn: &mut PgConnection,
    rows: &[(&NewAttempt, bool)],
) -> Result<HashMap<String, i64>, sqlx::Error> {
    let count = i64::try_from(rows.len()).unwrap_or(i64::MAX);
    let ids: Vec<i64> = sqlx::query_scalar(RESERVE_IDS)
        .bind(count)
        .fetch_all(&mut *conn)
        .await?;
    let data = pg_copy::encode(rows, &ids);
    let mut copy = conn.copy_in_raw(pg_copy::COPY_IN).await?;
    copy.send(data).await?;
    copy.finish().await?;
    Ok(rows
        .iter()
        .zip(ids)
        .map(|((a, _), id)| (a.event_id.clone(), id))
        .collect())
}

/// Inserts `rows`, skipping events already stored, in one statement of 18
/// array parameters, and returns the new rows' ids by event id.
async fn insert_new(
    conn: &mut PgConnection,
    rows: &[(&NewAttempt, bool)],
) -> Result<HashMap<String, i64>, sqlx::Error> {
    let col = |f: fn(&NewAttempt) -> String| rows.iter().map(|(a, _)| f(a)).collect::<Vec<_>>();
    let new: Vec<(i64, String)> = sqlx::query_as(INSERT)
        .bind(col(|a| a.event_id.clone()))
        .bind(rows.iter().map(|(a, _)| a.occurred_at).collect::<Vec<_>>())
        .bind(col(|a| a.identifier.clone()))
        .bind(rows.iter().map(|(a, _)| a.user_id).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|(a, _)| a.username.clone())
                .collect::<Vec<_>>(),
        )
        .bind(col(|a| a.email.clone()))
        .bind(col(|a| a.email_lower.clone()))
        .bind(rows.iter().map(|(a, _)| a.successful).collect::<Vec<_>>())
        .bind(col(|a| a.reject_reason.clone()))
        .bind(col(|a| a.ip.clone()))
        .bind(
            rows.iter()
                .map(|(a, _)| a.user_agent.clone())
                .collect::<Vec<_>>(),
        )
        .bind(col(|a| a.request_id.clone()))
        .bind(rows.iter().map(|(_, s)| *s).collect::<Vec<_>>())
        .bind(col(|a| a.ip_key.clone()))
        .bind(rows.iter().map(|(a, _)| a.count).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|(a, _)| a.last_occurred_at)
                .collect::<Vec<_>>(),
        )
        .bind(col(|a| a.kind.clone()))
        .bind(
            rows.iter()
                .map(|(a, _)| a.original_reject_reason.clone())
                .collect::<Vec<_>>(),
        )
        .fetch_all(&mut *conn)
        .await?;
    Ok(new
        .into_iter()
        .map(|(id, event_id)| (event_id, id))
        .collect())
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_group_is_cut_in_two_at_the_batch_end_nearest_its_middle() {
        // Batches of 600 rows, 5 of them; the row at index 700 was a
        // duplicate, so 2,999 rows remain and the middle is 1,499.
        let indexes: Vec<usize> = (0..3_000).filter(|&i| i != 700).collect();
        let ends = [600, 1_200, 1_800, 2_400, 3_000];

        assert_eq!(part_cut(&indexes, &ends), Some(1_199));
    }

    #[test]
    fn small_groups_and_single_batches_stay_whole() {
        let small: Vec<usize> = (0..1_500).collect();
        assert_eq!(part_cut(&small, &[500, 1_000, 1_500]), None);

        // A cut that would leave a part of 10 rows is no cut.
        let lopsided: Vec<usize> = (0..2_000).collect();
        assert_eq!(part_cut(&lopsided, &[1_990, 2_000]), None);

        let one_batch: Vec<usize> = (0..5_000).collect();
        assert_eq!(part_cut(&one_batch, &[5_000]), None);
    }

    /// The pool's connect options print the password they connect with;
    /// the store's `Debug` must not.
    #[tokio::test]
    async fn a_store_shows_no_password_in_debug() {
        let Some(server) = common::testing::server_url("TEST_POSTGRES_URL") else {
            return;
        };
        let url = common::testing::fresh_postgres(&server).await;
        // Trust authentication accepts any password.
        let url = url.replacen("://postgres@", "://postgres:not-to-be-shown@", 1);
        assert!(url.contains("not-to-be-shown"), "{url}");
        let store = PgStore::connect(&url, SuspicionRule::per_hour(10))
            .await
            .unwrap();

        let options = format!("{:?}", store.db.pool.connect_options());
        let shown = format!("{store:?}");

        assert!(options.contains("not-to-be-shown"), "premise: {options}");
        assert!(!shown.contains("not-to-be-shown"), "{shown}");
        assert!(shown.contains("threshold: 10"), "{shown}");
    }

    fn attempt(batch: usize, i: usize) -> NewAttempt {
        let ip = format!("10.{batch}.{}.{}", i / 250, i % 250);
        let at = i64::try_from(i).unwrap();
        crate::store::suspicion::tests::failure(&uuid::Uuid::now_v7().to_string(), &ip, at)
    }

    /// Four batches of 1,000 go in as two transactions of two batches. When
    /// the first fails, nothing is stored; when the second fails, the
    /// first's rows are stored and come back with the error (the stream
    /// announces them on the tail).
    #[tokio::test]
    async fn a_part_that_fails_leaves_the_other_parts_committed_and_reported() {
        let Some(server) = common::testing::server_url("TEST_POSTGRES_URL") else {
            return;
        };
        let url = common::testing::fresh_postgres(&server).await;
        let store = PgStore::connect(&url, SuspicionRule::per_hour(10))
            .await
            .unwrap();
        sqlx::raw_sql(
            "CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN IF NEW.identifier = 'boom' THEN RAISE EXCEPTION 'refused'; END IF; \
             RETURN NEW; END $$; \
             CREATE TRIGGER refuse_boom BEFORE INSERT ON login_attempts \
             FOR EACH ROW EXECUTE FUNCTION refuse_boom();",
        )
        .execute(&store.db.pool)
        .await
        .unwrap();
        let mut attempts: Vec<NewAttempt> = (0..4)
            .flat_map(|b| (0..1_000).map(move |i| attempt(b, i)))
            .collect();
        let ends = [1_000, 2_000, 3_000, 4_000];
        let count = async || -> i64 {
            sqlx::query_scalar("SELECT COUNT(*) FROM login_attempts")
                .fetch_one(&store.db.pool)
                .await
                .unwrap()
        };
        // As in a running service between groups: its minimum of
        // connections open and idle (a group takes a second one only if one
        // is idle).
        let idle = async || {
            for _ in 0..500 {
                if store.db.pool.num_idle() >= MIN_CONNECTIONS as usize {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        };

        // The earlier part fails: the later one is not committed either,
        // so what is stored is always a prefix of the batches.
        attempts[0].identifier = "boom".to_owned();
        idle().await;
        let failed = store.insert_batch(&attempts, &ends).await.unwrap_err();
        assert!(failed.stored.is_empty());
        assert_eq!(count().await, 0);

        attempts[0].identifier = String::new();
        attempts[3_999].identifier = "boom".to_owned();
        idle().await;
        let failed = store.insert_batch(&attempts, &ends).await.unwrap_err();

        let reported: Vec<&str> = failed
            .stored
            .iter()
            .map(|s| s.attempt.event_id.as_str())
            .collect();
        let first_two: Vec<&str> = attempts[..2_000]
            .iter()
            .map(|a| a.event_id.as_str())
            .collect();
        assert_eq!(reported, first_two);
        assert!(
            failed.source.to_string().contains("refused"),
            "{}",
            failed.source
        );
        assert_eq!(count().await, 2_000);
    }
}

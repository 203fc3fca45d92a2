//! SQLite backend: one file, WAL mode, writes serialised by the engine.

use std::{
    collections::HashMap,
    str::FromStr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use sqlx::{
    Sqlite,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

use super::{
    admin_events::{AdminSql, admin_select},
    counting::{self, fetch_counts},
    insert::{insert_queries, stored_attempts},
    listing::{AttemptRow, IpPath, Keyset, PageQuery, push_listing},
    opening::{ACQUIRE_TIMEOUT, Opening as _, open_error},
    pooled::{Pooled, UpkeepSql},
    suspicion::{SuspicionRule, judge_batch},
};
use crate::attempt::{BucketCounts, CountQuery, Filter, NewAttempt, StoredAttempt};

/// How long a writer waits for another writer's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const ON_CONFLICT: &str = " ON CONFLICT (event_id) DO NOTHING RETURNING id, event_id";

const UPKEEP: UpkeepSql = UpkeepSql {
    delete_before: "DELETE FROM login_attempts WHERE id IN \
        (SELECT id FROM login_attempts WHERE occurred_at < ? LIMIT ?)",
    missing_ip_keys: "SELECT id, ip FROM login_attempts WHERE ip_key IS NULL LIMIT ?",
    set_ip_key: "UPDATE login_attempts SET ip_key = ? WHERE id = ?",
    heartbeat: "INSERT INTO readiness_heartbeat (id, written_at) VALUES (1, ?) \
        ON CONFLICT (id) DO UPDATE SET written_at = excluded.written_at",
};

/// Admin events in SQLite's dialect.
pub(super) const ADMIN: AdminSql = AdminSql {
    begin: "BEGIN IMMEDIATE",
    uuid_cast: "",
    existing: "SELECT event_id FROM admin_events WHERE event_id IN (",
    on_duplicate: " ON CONFLICT (event_id) DO NOTHING",
    select: admin_select!("event_id"),
    keyset: Keyset::RowValue,
};

/// Rows of an IP range from which a page reads the newest rows first (see
/// `ip_path`).
const DENSE_IP_RANGE: i64 = 50_000;
const COUNT_IP_RANGE: &str = "SELECT COUNT(*) FROM (SELECT 1 FROM login_attempts \
    INDEXED BY login_attempts_ip_key WHERE ip_key BETWEEN ? AND ? LIMIT ?)";

/// A page as one JSON array of row arrays (see `list_via`): this, the
/// page's `ORDER BY` terms, then [`PAGE_AS_JSON_FROM`] completed by
/// `push_listing` and a `)`.
const PAGE_AS_JSON: &str = "SELECT json_group_array(json_array(id, event_id, occurred_at, \
    identifier, user_id, username, email, email_lower, successful, reject_reason, ip, \
    user_agent, request_id, suspicious, attempt_count, \
    json_array(last_occurred_at, kind, original_reject_reason)) \
    ORDER BY ";
/// The rest of [`PAGE_AS_JSON`].
const PAGE_AS_JSON_FROM: &str = ") FROM (SELECT * FROM login_attempts WHERE 1 = 1";

/// One row of [`PAGE_AS_JSON`]: the [`AttemptRow`] columns in order, the
/// two flags as SQLite's 0/1, the last three columns as one triple (serde
/// reads tuples of at most 16).
type JsonRow = (
    i64,
    String,
    i64,
    String,
    Option<i64>,
    Option<String>,
    String,
    String,
    i64,
    String,
    String,
    Option<String>,
    String,
    i64,
    i64,
    (Option<i64>, String, Option<String>),
);

/// The SQLite log database.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Connection pool (readers run concurrently under WAL) and upkeep.
    pub(super) db: Pooled<Sqlite>,
    /// The suspicious-activity rule applied at ingest.
    rule: SuspicionRule,
    /// The last IP-range decision of `ip_path_from`, kept for
    /// [`IP_PATH_FRESH`]: an export pages one range hundreds of times, and
    /// the decision changes only as the log grows.
    last_ip_path: Arc<Mutex<Option<IpPathDecision>>>,
}

/// A range (`lo`, `hi`, threshold), the path chosen for it, and when.
type IpPathDecision = ((String, String, i64), IpPath, Instant);

/// How long an IP-range decision is reused. Either path lists the same
/// rows, so a stale one costs at most speed.
const IP_PATH_FRESH: Duration = Duration::from_secs(60);

impl SqliteStore {
    /// Opens (creating file and parent directory if missing) and migrates.
    pub(super) async fn connect(url: &str, rule: SuspicionRule) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .opening(url, "")?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: an ack promises durability, even across power loss.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            // A 64 MiB page cache (default 2 MiB) and a checkpoint every
            // 64 MiB of WAL (default 4 MiB): a batch dirties pages of a dozen
            // indexes, and small ones made every commit re-read pages and
            // checkpoint.
            .pragma("cache_size", "-65536")
            .pragma("wal_autocheckpoint", "16384");
        if let Some(dir) = options.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            tokio::fs::create_dir_all(dir).await.map_err(|e| {
                open_error(url, format!("cannot create folder {}: {e}", dir.display()))
            })?;
        }
        let pool = SqlitePoolOptions::new()
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // An embedded database has no connection to lose: the liveness
            // ping before each use would only cost a round trip to the
            // connection's thread.
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .opening(url, "")?;
        Ok(Self {
            db: Pooled::open(pool, &sqlx::migrate!("migrations/sqlite"), &UPKEEP, url).await?,
            rule,
            last_ip_path: Arc::default(),
        })
    }

    pub(super) async fn insert_batch(
        &self,
        attempts: &[NewAttempt],
    ) -> Result<Vec<StoredAttempt>, sqlx::Error> {
        // IMMEDIATE takes the write lock up front: this transaction reads (the
        // suspicious counts) before it writes, and a deferred one upgrading
        // from reader to writer fails with SQLITE_BUSY despite busy_timeout.
        let mut tx = self.db.pool.begin_with("BEGIN IMMEDIATE").await?;
        let rows = judge_batch::<Sqlite>(&mut tx, self.rule, attempts).await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut ids = HashMap::new();
        for mut qb in insert_queries::<Sqlite>(&rows, "") {
            qb.push(ON_CONFLICT);
            let new: Vec<(i64, String)> = qb.build_query_as().fetch_all(&mut *tx).await?;
            ids.extend(new.into_iter().map(|(id, event_id)| (event_id, id)));
        }

        tx.commit().await?;
        Ok(stored_attempts(&rows, &ids))
    }

    /// One page as a single result row. sqlx runs SQLite on a thread of its
    /// own and hands over each result row separately, two thread switches a
    /// row: in the profile of the admin log page that was most of
    /// audit-service's ~700 µs of CPU per page of 100. SQLite builds the JSON
    /// array in C and it crosses over once.
    async fn list_via(
        &self,
        page: &PageQuery<'_>,
        ip_path: IpPath,
    ) -> Result<Vec<AttemptRow>, sqlx::Error> {
        let mut qb = sqlx::QueryBuilder::<Sqlite>::new(PAGE_AS_JSON);
        qb.push(page.order.sql()).push(PAGE_AS_JSON_FROM);
        push_listing(&mut qb, page, Keyset::RowValue, ip_path);
        qb.push(")");
        let page: String = qb.build_query_scalar().fetch_one(&self.db.pool).await?;
        let rows: Vec<JsonRow> =
            serde_json::from_str(&page).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        Ok(rows
            .into_iter()
            .map(|r| AttemptRow {
                id: r.0,
                event_id: r.1,
                occurred_at: r.2,
                identifier: r.3,
                user_id: r.4,
                username: r.5,
                email: r.6,
                email_lower: r.7,
                successful: r.8 != 0,
                reject_reason: r.9,
                ip: r.10,
                user_agent: r.11,
                request_id: r.12,
                suspicious: r.13 != 0,
                attempt_count: r.14,
                last_occurred_at: r.15.0,
                kind: r.15.1,
                original_reject_reason: r.15.2,
            })
            .collect())
    }

    /// Sorting every row of an IP range costs ~4x less per row than
    /// reading the newest rows and skipping non-matches, so a page of a
    /// range with few rows comes from the IP-key index and one with many
    /// (from this many on) from the log in time order (newest rows first,
    /// or oldest when listed oldest first). SQLite's planner guessed
    /// this wrong even with STAT4 statistics: a `/16` holding a third of 10 M
    /// rows sorted them all (390 ms a page). Counting up to the threshold
    /// reads only the index (a few ms at most); at 10 M rows either path then
    /// costs under ~20 ms whatever the range's share of the log.
    async fn ip_path(&self, filter: &Filter) -> Result<IpPath, sqlx::Error> {
        self.ip_path_from(filter, DENSE_IP_RANGE).await
    }

    /// One page, `page.fetch` rows at most.
    pub(super) async fn list(&self, page: &PageQuery<'_>) -> Result<Vec<AttemptRow>, sqlx::Error> {
        let ip_path = self.ip_path(page.filter).await?;
        self.list_via(page, ip_path).await
    }

    /// The non-empty buckets of `query`. An IP range goes the way a page
    /// of it would (see [`Self::ip_path`]): a dense range is read through
    /// the time index, a sparse one through its own.
    pub(super) async fn count(
        &self,
        query: &CountQuery,
    ) -> Result<Vec<(i64, BucketCounts)>, sqlx::Error> {
        let ip_path = self.ip_path(&query.filter).await?;
        fetch_counts(&self.db.pool, &counting::STANDARD, query, ip_path).await
    }

    /// [`Self::ip_path`] with the threshold `dense`.
    async fn ip_path_from(&self, filter: &Filter, dense: i64) -> Result<IpPath, sqlx::Error> {
        let Some(ip) = filter.ip.as_ref().filter(|ip| ip.lo != ip.hi) else {
            return Ok(IpPath::Planner);
        };
        let key = (ip.lo.clone(), ip.hi.clone(), dense);
        if let Some((last, path, at)) = &*self.lock_last_ip_path()
            && *last == key
            && at.elapsed() < IP_PATH_FRESH
        {
            return Ok(*path);
        }
        let rows: i64 = sqlx::query_scalar(COUNT_IP_RANGE)
            .bind(&ip.lo)
            .bind(&ip.hi)
            .bind(dense)
            .fetch_one(&self.db.pool)
            .await?;
        let path = if rows >= dense {
            IpPath::InTimeOrder
        } else {
            IpPath::Planner
        };
        *self.lock_last_ip_path() = Some((key, path, Instant::now()));
        Ok(path)
    }

    fn lock_last_ip_path(&self) -> std::sync::MutexGuard<'_, Option<IpPathDecision>> {
        // The value is replaced whole, so a panic elsewhere cannot leave it
        // half-written.
        self.last_ip_path
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attempt::{IpRange, Order, ip_key};

    /// Attempt `i`: one a second, from 10.0.0.x for even `i` and 10.1.0.x
    /// for odd `i`, cycling through 50 hosts each.
    fn attempt(i: u32) -> NewAttempt {
        let ip = format!("10.{}.0.{}", i % 2, i / 2 % 50);
        NewAttempt {
            event_id: uuid::Uuid::now_v7().to_string(),
            occurred_at: i64::from(i) * 1_000_000,
            identifier: format!("user{i}@example.com"),
            user_id: None,
            username: None,
            email: format!("user{i}@example.com"),
            email_lower: format!("user{i}@example.com"),
            successful: true,
            reject_reason: String::new(),
            kind: "login".to_owned(),
            ip_key: ip_key(&ip),
            ip,
            user_agent: None,
            request_id: String::new(),
            count: 1,
            last_occurred_at: None,
            original_reject_reason: None,
            producer_suspicious: None,
        }
    }

    fn range(cidr: &str) -> Filter {
        Filter {
            ip: Some(IpRange::parse(cidr).unwrap()),
            ..Filter::default()
        }
    }

    /// Every row of `filter` in `order`, in pages of 7 through `path`.
    async fn all_pages(
        store: &SqliteStore,
        filter: &Filter,
        path: IpPath,
        order: Order,
    ) -> Vec<i64> {
        let (mut ids, mut cursor) = (Vec::new(), None);
        loop {
            let page = PageQuery {
                filter,
                fetch: 8,
                cursor,
                order,
            };
            let rows = store.list_via(&page, path).await.unwrap();
            let page = super::super::listing::page_from_rows(rows, 7);
            ids.extend(page.attempts.iter().map(|a| a.attempt.occurred_at));
            match page.next {
                Some(next) => cursor = Some(next),
                None => return ids,
            }
        }
    }

    #[tokio::test]
    async fn a_page_built_as_json_returns_every_field_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("audit.db").display());
        let store = SqliteStore::connect(&url, SuspicionRule::per_hour(10))
            .await
            .unwrap();
        let awkward = "quote \" backslash \\ newline \n tab \t nul-free ünïcödé 🔐 </script>";
        let mut full = attempt(1);
        full.identifier = awkward.to_owned();
        full.username = Some(awkward.to_owned());
        full.user_id = Some(i64::MAX);
        full.user_agent = Some(awkward.to_owned());
        full.occurred_at = 1_795_632_750_123_456;
        full.successful = false;
        full.reject_reason = "bad_password".to_owned();
        full.original_reject_reason = Some(awkward.to_owned());
        let mut bare = attempt(2);
        bare.ip = "not an address".to_owned();
        bare.ip_key = ip_key(&bare.ip);
        store
            .insert_batch(&[full.clone(), bare.clone()])
            .await
            .unwrap();

        for (order, first, second) in [
            (Order::NewestFirst, &full, &bare),
            (Order::OldestFirst, &bare, &full),
        ] {
            let page = PageQuery {
                filter: &Filter::default(),
                fetch: 10,
                cursor: None,
                order,
            };
            let rows = store.list_via(&page, IpPath::Planner).await.unwrap();
            let listed: Vec<StoredAttempt> = rows.into_iter().map(Into::into).collect();
            assert_eq!(listed.len(), 2);
            assert_eq!(&listed[0].attempt, first, "{order:?}, every field intact");
            assert_eq!(&listed[1].attempt, second);
        }
    }

    #[tokio::test]
    async fn both_paths_to_an_ip_range_list_the_same_pages_and_density_picks_one() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("audit.db").display());
        let store = SqliteStore::connect(&url, SuspicionRule::per_hour(10))
            .await
            .unwrap();
        let batch: Vec<NewAttempt> = (0..400).map(attempt).collect();
        store.insert_batch(&batch).await.unwrap();

        let wide = range("10.0.0.0/24");
        let expected: Vec<i64> = (0..400)
            .rev()
            .filter(|i| i % 2 == 0)
            .map(|i| i64::from(i) * 1_000_000)
            .collect();
        let oldest_first: Vec<i64> = expected.iter().rev().copied().collect();
        for path in [IpPath::Planner, IpPath::InTimeOrder] {
            let newest = all_pages(&store, &wide, path, Order::NewestFirst).await;
            assert_eq!(newest, expected, "{path:?}");
            let oldest = all_pages(&store, &wide, path, Order::OldestFirst).await;
            assert_eq!(oldest, oldest_first, "{path:?}");
        }

        // The /24 holds 200 rows; the /30 (hosts 0-3) 16.
        assert_eq!(
            store.ip_path_from(&wide, 100).await.unwrap(),
            IpPath::InTimeOrder
        );
        assert_eq!(
            store
                .ip_path_from(&range("10.0.0.0/30"), 100)
                .await
                .unwrap(),
            IpPath::Planner
        );
        assert_eq!(
            store.ip_path_from(&range("10.0.0.1"), 1).await.unwrap(),
            IpPath::Planner,
            "one address always seeks its own key"
        );

        // A decision is reused for a while: the /30 turning dense does not
        // change its path until the decision is old.
        let more: Vec<NewAttempt> = (400..5_000)
            .map(attempt)
            .filter(|a| a.ip_key <= ip_key("10.0.0.3"))
            .collect();
        store.insert_batch(&more).await.unwrap();
        let narrow = range("10.0.0.0/30");
        assert_eq!(
            store.ip_path_from(&narrow, 100).await.unwrap(),
            IpPath::Planner,
            "the decision made a moment ago"
        );
        if let Some((_, _, at)) = store.last_ip_path.lock().unwrap().as_mut() {
            *at = at.checked_sub(IP_PATH_FRESH).unwrap();
        }
        assert_eq!(
            store.ip_path_from(&narrow, 100).await.unwrap(),
            IpPath::InTimeOrder,
            "decided again once stale"
        );
    }
}

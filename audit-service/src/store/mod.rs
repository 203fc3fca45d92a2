//! Storage of the log, one module per database backend.
//!
//! [`Store`] is an enum rather than a trait object: the set of backends is
//! closed and small, dispatch stays a plain `match`, and each backend keeps
//! its own SQL dialect and migrations.

mod mysql;
mod pg_copy;
mod postgres;
mod shared;
mod sqlite;

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use sqlx::{Database, Encode, QueryBuilder, Type};

use crate::attempt::{Cursor, Filter, Micros, NewAttempt, Page, StoredAttempt};

pub(crate) use crate::attempt::ip_key;

/// Which database engine a URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file (`sqlite:`).
    Sqlite,
    /// PostgreSQL server (`postgres:` or `postgresql:`).
    Postgres,
    /// MySQL or MariaDB server (`mysql:`).
    Mysql,
}

impl Backend {
    /// The backend named by the URL's scheme, or `None` when unsupported.
    pub fn from_url(url: &str) -> Option<Self> {
        let scheme = url.split_once(':')?.0.to_ascii_lowercase();
        match scheme.as_str() {
            "sqlite" => Some(Self::Sqlite),
            "postgres" | "postgresql" => Some(Self::Postgres),
            "mysql" => Some(Self::Mysql),
            _ => None,
        }
    }
}

/// The suspicious-activity rule: a failed attempt is flagged when, counting
/// itself, `threshold` failures from the same IP or the same email fall in
/// the `window` ending at its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuspicionRule {
    /// Failures (including the one being judged) that trigger the flag.
    pub threshold: u32,
    /// How far back failures count.
    pub window: Duration,
}

impl SuspicionRule {
    /// The rule with the standard one-hour window.
    pub fn per_hour(threshold: u32) -> Self {
        Self {
            threshold,
            window: Duration::from_secs(3600),
        }
    }

    /// How many *earlier* failures flag an attempt (the attempt itself is
    /// the last of `threshold`).
    fn others_needed(&self) -> i64 {
        i64::from(self.threshold.saturating_sub(1))
    }

    /// Start of the window for an attempt at `at`.
    fn window_start(&self, at: Micros) -> Micros {
        let window = i64::try_from(self.window.as_micros()).unwrap_or(i64::MAX);
        at.saturating_sub(window)
    }
}

/// The log database.
#[derive(Debug, Clone)]
pub enum Store {
    /// SQLite backend.
    Sqlite(sqlite::SqliteStore),
    /// PostgreSQL backend.
    Postgres(postgres::PgStore),
    /// MySQL/MariaDB backend.
    Mysql(mysql::MySqlStore),
}

/// A failed insert, with what it committed all the same: batches spread
/// over transactions can fail in one after another has committed.
#[derive(Debug)]
pub struct InsertError {
    /// Rows committed anyway; new to the log like any others.
    pub stored: Vec<StoredAttempt>,
    /// Why the rest were not.
    pub source: sqlx::Error,
}

impl From<sqlx::Error> for InsertError {
    fn from(source: sqlx::Error) -> Self {
        Self {
            stored: Vec::new(),
            source,
        }
    }
}

/// Rows a background pass (IP-key backfill) touches per statement, so no
/// statement holds locks for long.
const BACKFILL_BATCH: i64 = 1000;

/// How long a request waits for a pooled connection before failing, so an
/// unreachable database surfaces as `unavailable` instead of a hang.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// What failed while opening the log database, as one error naming
/// `AUDIT_DATABASE_URL`, the file or server, and `cause`; never the password.
fn open_error(url: &str, cause: impl std::fmt::Display) -> anyhow::Error {
    common::database::open_error("AUDIT_DATABASE_URL", url, cause)
}

/// Opening steps' errors in an operator's words.
trait Opening<T> {
    /// A database error of step `step` ("" for the connection itself).
    fn opening(self, url: &str, step: &str) -> anyhow::Result<T>;
}

impl<T> Opening<T> for Result<T, sqlx::Error> {
    fn opening(self, url: &str, step: &str) -> anyhow::Result<T> {
        self.map_err(|e| open_error(url, format!("{step}{}", common::database::describe(&e))))
    }
}

impl<T> Opening<T> for Result<T, sqlx::migrate::MigrateError> {
    fn opening(self, url: &str, _step: &str) -> anyhow::Result<T> {
        self.map_err(|e| open_error(url, common::database::describe_migration(&e)))
    }
}

impl<T> Opening<T> for Result<T, common::database::ConnectError> {
    fn opening(self, url: &str, _step: &str) -> anyhow::Result<T> {
        self.map_err(|e| open_error(url, e))
    }
}

impl Store {
    /// Connects, creating the database file for SQLite, and applies pending
    /// migrations.
    pub async fn connect(url: &str, rule: SuspicionRule) -> anyhow::Result<Self> {
        match Backend::from_url(url) {
            Some(Backend::Sqlite) => {
                Ok(Self::Sqlite(sqlite::SqliteStore::connect(url, rule).await?))
            }
            Some(Backend::Postgres) => {
                Ok(Self::Postgres(postgres::PgStore::connect(url, rule).await?))
            }
            Some(Backend::Mysql) => Ok(Self::Mysql(mysql::MySqlStore::connect(url, rule).await?)),
            None => anyhow::bail!(
                "AUDIT_DATABASE_URL: unsupported scheme (expected sqlite:, postgres:, postgresql: or mysql:)"
            ),
        }
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
            Self::Mysql(_) => Backend::Mysql,
        }
    }

    /// Stores producer batches, each in one transaction committed before
    /// returning, and returns the attempts that were new, as stored
    /// (duplicates by `event_id`, within the batches or from earlier, are
    /// skipped). `batch_ends` marks where each batch ends in `attempts`: a
    /// backend may spread the batches over transactions but never splits
    /// one.
    pub async fn insert_batch(
        &self,
        attempts: &[NewAttempt],
        batch_ends: &[usize],
    ) -> Result<Vec<StoredAttempt>, InsertError> {
        if attempts.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            Self::Sqlite(s) => Ok(s.insert_batch(attempts).await?),
            Self::Postgres(s) => s.insert_batch(attempts, batch_ends).await,
            Self::Mysql(s) => Ok(s.insert_batch(attempts).await?),
        }
    }

    /// Deletes at most `batch` attempts that occurred before `cutoff`, in
    /// one short statement, and returns how many went.
    pub async fn delete_before(&self, cutoff: Micros, batch: u32) -> Result<u64, sqlx::Error> {
        let batch = i64::from(batch);
        match self {
            Self::Sqlite(s) => s.delete_before(cutoff, batch).await,
            Self::Postgres(s) => s.delete_before(cutoff, batch).await,
            Self::Mysql(s) => s.delete_before(cutoff, batch).await,
        }
    }

    /// One page of attempts matching `filter`, newest first, starting after
    /// `cursor`.
    pub async fn list(
        &self,
        filter: &Filter,
        limit: u32,
        cursor: Option<Cursor>,
    ) -> Result<Page, sqlx::Error> {
        let rows = match self {
            Self::Sqlite(s) => s.list(filter, limit + 1, cursor).await?,
            Self::Postgres(s) => s.list(filter, limit + 1, cursor).await?,
            Self::Mysql(s) => s.list(filter, limit + 1, cursor).await?,
        };
        Ok(page_from_rows(rows, limit))
    }

    /// A write (the heartbeat row, at `now` in Unix seconds), for readiness
    /// and the start-up check: reads alone would pass on a database that
    /// refuses every insert.
    pub async fn check_writable(&self, now: i64) -> Result<(), sqlx::Error> {
        match self {
            Self::Sqlite(s) => s.check_writable(now).await,
            Self::Postgres(s) => s.check_writable(now).await,
            Self::Mysql(s) => s.check_writable(now).await,
        }
    }

    /// The pool's connections right now, for the metrics endpoint.
    pub fn pool_usage(&self) -> common::metrics::PoolUsage {
        match self {
            Self::Sqlite(s) => s.pool_usage(),
            Self::Postgres(s) => s.pool_usage(),
            Self::Mysql(s) => s.pool_usage(),
        }
    }

    /// Closes the pool, letting SQLite checkpoint its WAL.
    pub async fn close(&self) {
        match self {
            Self::Sqlite(s) => s.close().await,
            Self::Postgres(s) => s.close().await,
            Self::Mysql(s) => s.close().await,
        }
    }
}

/// Splits `limit + 1` fetched rows into a page and, when the extra row
/// exists, the cursor after the page's last row.
fn page_from_rows(rows: Vec<AttemptRow>, limit: u32) -> Page {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let more = rows.len() > limit;
    let attempts: Vec<StoredAttempt> = rows.into_iter().take(limit).map(Into::into).collect();
    let next = if more {
        attempts.last().map(|a| Cursor {
            occurred_at: a.attempt.occurred_at,
            id: a.id,
        })
    } else {
        None
    };
    Page { attempts, next }
}

/// How a backend compares the keyset position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keyset {
    /// `(occurred_at, id) < (?, ?)`: SQLite and PostgreSQL seek on it.
    RowValue,
    /// The same spelled out, which MySQL/MariaDB turn into an index range
    /// (they do not for row values).
    Expanded,
}

/// How a listing with an IP range reaches its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IpPath {
    /// Whatever the engine's planner picks.
    Planner,
    /// Not through the IP-key index (SQLite's unary `+` hides it): the
    /// range matches so many rows that reading the newest rows first finds
    /// a page sooner than sorting every match.
    NewestFirst,
}

/// Appends the listing's filters, keyset position, order and limit to a
/// query that ends in a `WHERE` clause. Shared by every backend: values are
/// only ever bound, and every filter column leads an `(x, occurred_at, id)`
/// index, so each engine seeks instead of scanning.
fn push_listing<DB>(
    qb: &mut QueryBuilder<DB>,
    filter: &Filter,
    cursor: Option<Cursor>,
    fetch: u32,
    keyset: Keyset,
    ip_path: IpPath,
) where
    DB: Database,
    for<'t> bool: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
{
    if let Some(successful) = filter.successful {
        qb.push(" AND successful = ").push_bind(successful);
    }
    if let Some(ip) = &filter.ip {
        if ip.lo == ip.hi {
            qb.push(" AND ip_key = ").push_bind(ip.lo.clone());
        } else {
            qb.push(match ip_path {
                IpPath::Planner => " AND ip_key BETWEEN ",
                IpPath::NewestFirst => " AND +ip_key BETWEEN ",
            })
            .push_bind(ip.lo.clone())
            .push(" AND ")
            .push_bind(ip.hi.clone());
        }
    }
    if let Some(email) = &filter.email_lower {
        qb.push(" AND email_lower = ").push_bind(email.clone());
    }
    if let Some(identifier) = &filter.identifier {
        qb.push(" AND identifier = ").push_bind(identifier.clone());
    }
    if let Some(user_id) = filter.user_id {
        qb.push(" AND user_id = ").push_bind(user_id);
    }
    if let Some(reason) = &filter.reason {
        qb.push(" AND reject_reason = ").push_bind(reason.clone());
    }
    // A literal, not a bind: only then can SQLite and PostgreSQL use the
    // partial index of flagged rows.
    match filter.suspicious {
        Some(true) => {
            qb.push(" AND suspicious");
        }
        Some(false) => {
            qb.push(" AND NOT suspicious");
        }
        None => {}
    }
    if let Some(since) = filter.since {
        qb.push(" AND occurred_at >= ").push_bind(since);
    }
    if let Some(until) = filter.until {
        qb.push(" AND occurred_at < ").push_bind(until);
    }
    if let Some(c) = cursor {
        match keyset {
            Keyset::RowValue => {
                qb.push(" AND (occurred_at, id) < (")
                    .push_bind(c.occurred_at)
                    .push(", ")
                    .push_bind(c.id)
                    .push(")");
            }
            Keyset::Expanded => {
                qb.push(" AND occurred_at <= ")
                    .push_bind(c.occurred_at)
                    .push(" AND (occurred_at < ")
                    .push_bind(c.occurred_at)
                    .push(" OR id < ")
                    .push_bind(c.id)
                    .push(")");
            }
        }
    }
    qb.push(" ORDER BY occurred_at DESC, id DESC LIMIT ")
        .push_bind(i64::from(fetch));
}

/// Rows per multi-row INSERT: 16 parameters each, so 16,000 per statement,
/// under SQLite's 32,766 and PostgreSQL's and MySQL's 65,535.
const INSERT_CHUNK: usize = 1000;

/// Values per `IN (...)` list (plus a few more parameters), under every
/// engine's bind-parameter limit.
const IN_CHUNK: usize = 10_000;

const INSERT_INTO: &str = "INSERT INTO login_attempts \
    (event_id, occurred_at, identifier, user_id, username, email, email_lower, \
     successful, reject_reason, ip, user_agent, request_id, suspicious, ip_key, \
     attempt_count, last_occurred_at) ";

/// Multi-row INSERTs of `rows` (attempt and flag), one per chunk, each ending
/// after its `VALUES` list so the backend can append its conflict and
/// returning clauses. `uuid_cast` follows the event id's placeholder
/// (`::uuid` on PostgreSQL).
fn insert_queries<DB>(rows: &[(&NewAttempt, bool)], uuid_cast: &str) -> Vec<QueryBuilder<DB>>
where
    DB: Database,
    for<'t> bool: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> Option<i64>: Encode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> Option<String>: Encode<'t, DB> + Type<DB>,
{
    rows.chunks(INSERT_CHUNK)
        .map(|chunk| {
            let mut qb = QueryBuilder::<DB>::new(INSERT_INTO);
            qb.push_values(chunk, |mut row, (a, suspicious)| {
                row.push_bind(a.event_id.clone())
                    .push_unseparated(uuid_cast)
                    .push_bind(a.occurred_at)
                    .push_bind(a.identifier.clone())
                    .push_bind(a.user_id)
                    .push_bind(a.username.clone())
                    .push_bind(a.email.clone())
                    .push_bind(a.email_lower.clone())
                    .push_bind(a.successful)
                    .push_bind(a.reject_reason.clone())
                    .push_bind(a.ip.clone())
                    .push_bind(a.user_agent.clone())
                    .push_bind(a.request_id.clone())
                    .push_bind(*suspicious)
                    .push_bind(a.ip_key.clone())
                    .push_bind(a.count)
                    .push_bind(a.last_occurred_at);
            });
            qb
        })
        .collect()
}

/// `select` (ending in `WHERE event_id IN (`) completed with `ids`, one
/// query per chunk; each placeholder is followed by `cast`.
fn in_queries<DB>(select: &str, ids: &[&str], cast: &str) -> Vec<QueryBuilder<DB>>
where
    DB: Database,
    for<'t> String: Encode<'t, DB> + Type<DB>,
{
    ids.chunks(IN_CHUNK)
        .map(|chunk| {
            let mut qb = QueryBuilder::<DB>::new(select);
            let mut list = qb.separated(", ");
            for id in chunk {
                list.push_bind((*id).to_owned()).push_unseparated(cast);
            }
            qb.push(")");
            qb
        })
        .collect()
}

/// What the suspicious-activity rule groups failures by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum KeyKind {
    Ip,
    Email,
}

impl KeyKind {
    const ALL: [Self; 2] = [Self::Ip, Self::Email];

    fn column(self) -> &'static str {
        match self {
            Self::Ip => "ip_key",
            Self::Email => "email_lower",
        }
    }

    /// The attempt's key; empty means unknown, and unknowns are not one
    /// client.
    fn of(self, a: &NewAttempt) -> &str {
        match self {
            Self::Ip => &a.ip_key,
            Self::Email => &a.email_lower,
        }
    }
}

/// A stored-failure count the batch-wide counts could not settle: the
/// attempt is flagged when at least `needed` stored failures of `key` fall
/// in `(from, at]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Check {
    kind: KeyKind,
    key: String,
    from: Micros,
    at: Micros,
    needed: i64,
}

/// The flag of one new attempt: settled, or settled by the first of its
/// checks that holds (flagged when any does).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Flag(bool),
    Check(Vec<Check>),
}

/// A grouped count of stored failures: for each of `keys`, those in the
/// `common` window (`surely`) and in the `union` window (`maybe`), each
/// `(after, up_to]` in microseconds.
struct CountPlan<'a> {
    keys: Vec<&'a str>,
    common: (Micros, Micros),
    union: (Micros, Micros),
}

/// Applies the suspicious-activity rule to a whole batch at once.
///
/// Stored failures are counted with one grouped query per key kind over
/// the batch's time span: for each key, the failures in the window common
/// to every attempt of the batch (`surely`, a lower bound of any attempt's
/// count) and in the union of their windows (`maybe`, an upper bound). The
/// batch's own new failures are then added in memory, in `occurred_at`
/// order (ties in batch order), exactly as if each row had been inserted
/// and counted in turn. Only when the bounds disagree about an attempt does
/// it need an exact per-attempt count (a [`Check`]).
struct Judge<'a> {
    rule: SuspicionRule,
    attempts: &'a [NewAttempt],
    /// Indexes of the rows to insert, in batch order: the first of each
    /// event id, when not stored already.
    fresh: Vec<usize>,
    /// Earliest and latest time of the fresh failures with some key.
    span: Option<(Micros, Micros)>,
    /// Per kind and key, `(surely, maybe)` stored failures.
    counts: HashMap<(KeyKind, String), (i64, i64)>,
}

impl<'a> Judge<'a> {
    /// `stored` holds the batch's event ids already in the database.
    fn new(rule: SuspicionRule, attempts: &'a [NewAttempt], stored: &HashSet<String>) -> Self {
        let mut seen = HashSet::new();
        let fresh: Vec<usize> = attempts
            .iter()
            .enumerate()
            .filter(|(_, a)| !stored.contains(&a.event_id) && seen.insert(a.event_id.as_str()))
            .map(|(i, _)| i)
            .collect();
        let span = fresh
            .iter()
            .map(|&i| &attempts[i])
            .filter(|a| !a.successful && KeyKind::ALL.iter().any(|k| !k.of(a).is_empty()))
            .fold(None, |span, a| match span {
                None => Some((a.occurred_at, a.occurred_at)),
                Some((lo, hi)) => Some((a.occurred_at.min(lo), a.occurred_at.max(hi))),
            });
        Self {
            rule,
            attempts,
            fresh,
            span,
            counts: HashMap::new(),
        }
    }

    /// Whether any row is to be inserted.
    fn is_empty(&self) -> bool {
        self.fresh.is_empty()
    }

    /// What a grouped count for `kind` needs (`None` when no stored
    /// failure can matter).
    fn count_plan(&self, kind: KeyKind) -> Option<CountPlan<'a>> {
        let (lo, hi) = self.span?;
        if self.rule.others_needed() == 0 {
            return None;
        }
        let mut keys: Vec<&'a str> = self
            .fresh
            .iter()
            .map(|&i| &self.attempts[i])
            .filter(|a| !a.successful)
            .map(|a| kind.of(a))
            .filter(|k| !k.is_empty())
            .collect();
        keys.sort_unstable();
        keys.dedup();
        // Common window: (hi - window, lo]; empty when the batch spans more
        // than the window. Union: (lo - window, hi].
        Some(CountPlan {
            keys,
            common: (self.rule.window_start(hi), lo),
            union: (self.rule.window_start(lo), hi),
        })
    }

    /// The grouped count queries for `kind`, each returning `(key, surely,
    /// maybe)` rows; keys go in `IN` lists, which every engine takes.
    fn count_queries<DB>(&self, kind: KeyKind) -> Vec<QueryBuilder<DB>>
    where
        DB: Database,
        for<'t> i64: Encode<'t, DB> + Type<DB>,
        for<'t> String: Encode<'t, DB> + Type<DB>,
    {
        let Some(plan) = self.count_plan(kind) else {
            return Vec::new();
        };
        let column = kind.column();
        plan.keys
            .chunks(IN_CHUNK)
            .map(|chunk| {
                let mut qb = QueryBuilder::<DB>::new(format!("SELECT {column}, COUNT(CASE WHEN "));
                qb.push("occurred_at > ")
                    .push_bind(plan.common.0)
                    .push(" AND occurred_at <= ")
                    .push_bind(plan.common.1)
                    .push(" THEN 1 END), COUNT(*) FROM login_attempts WHERE NOT successful")
                    .push(" AND occurred_at > ")
                    .push_bind(plan.union.0)
                    .push(" AND occurred_at <= ")
                    .push_bind(plan.union.1)
                    .push(format!(" AND {column} IN ("));
                let mut list = qb.separated(", ");
                for key in chunk {
                    list.push_bind((*key).to_owned());
                }
                qb.push(format!(") GROUP BY {column}"));
                qb
            })
            .collect()
    }

    /// The exact count for `check`, stopping at what it needs (one row,
    /// one `COUNT(*)`).
    fn check_query<DB>(check: &Check) -> QueryBuilder<DB>
    where
        DB: Database,
        for<'t> i64: Encode<'t, DB> + Type<DB>,
        for<'t> String: Encode<'t, DB> + Type<DB>,
    {
        let mut qb = QueryBuilder::<DB>::new(format!(
            "SELECT COUNT(*) FROM (SELECT 1 FROM login_attempts WHERE {} = ",
            check.kind.column()
        ));
        qb.push_bind(check.key.clone())
            .push(" AND occurred_at > ")
            .push_bind(check.from)
            .push(" AND occurred_at <= ")
            .push_bind(check.at)
            .push(" AND NOT successful LIMIT ")
            .push_bind(check.needed)
            .push(") AS recent");
        qb
    }

    /// Records rows of a count query for `kind`.
    fn add_counts(&mut self, kind: KeyKind, rows: Vec<(String, i64, i64)>) {
        for (key, surely, maybe) in rows {
            self.counts.insert((kind, key), (surely, maybe));
        }
    }

    /// The verdict for each row to insert, in batch order.
    fn verdicts(&self) -> Vec<(usize, Verdict)> {
        let needed = self.rule.others_needed();
        let mut order = self.fresh.clone();
        order.sort_by_key(|&i| (self.attempts[i].occurred_at, i));
        // Times of the batch's failures judged so far, per kind and key
        // (ascending, as judged in time order).
        let mut earlier: HashMap<(KeyKind, &str), Vec<Micros>> = HashMap::new();
        let mut verdicts: HashMap<usize, Verdict> = HashMap::with_capacity(order.len());
        for i in order {
            let a = &self.attempts[i];
            if a.successful {
                verdicts.insert(i, Verdict::Flag(false));
                continue;
            }
            let from = self.rule.window_start(a.occurred_at);
            let mut flagged = needed == 0;
            let mut checks = Vec::new();
            for kind in KeyKind::ALL {
                let key = kind.of(a);
                if key.is_empty() {
                    continue;
                }
                let times = earlier.entry((kind, key)).or_default();
                let in_batch = i64::try_from(times.len() - times.partition_point(|&t| t <= from))
                    .unwrap_or(i64::MAX);
                times.push(a.occurred_at);
                if flagged {
                    continue;
                }
                let (surely, maybe) = self
                    .counts
                    .get(&(kind, key.to_owned()))
                    .copied()
                    .unwrap_or((0, 0));
                if surely.saturating_add(in_batch) >= needed {
                    flagged = true;
                } else if maybe.saturating_add(in_batch) >= needed {
                    checks.push(Check {
                        kind,
                        key: key.to_owned(),
                        from,
                        at: a.occurred_at,
                        needed: needed - in_batch,
                    });
                }
            }
            let verdict = if flagged || checks.is_empty() {
                Verdict::Flag(flagged)
            } else {
                Verdict::Check(checks)
            };
            verdicts.insert(i, verdict);
        }
        self.fresh
            .iter()
            .filter_map(|&i| verdicts.remove(&i).map(|v| (i, v)))
            .collect()
    }
}

/// The inserted rows as stored, in batch order: those `ids` (by event id)
/// reports as new.
fn stored_attempts(rows: &[(&NewAttempt, bool)], ids: &HashMap<String, i64>) -> Vec<StoredAttempt> {
    rows.iter()
        .filter_map(|(a, suspicious)| {
            ids.get(&a.event_id).map(|&id| StoredAttempt {
                id,
                suspicious: *suspicious,
                attempt: (*a).clone(),
            })
        })
        .collect()
}

/// The columns every backend selects, in its own dialect, for a listing.
#[derive(Debug, sqlx::FromRow)]
struct AttemptRow {
    id: i64,
    event_id: String,
    occurred_at: i64,
    identifier: String,
    user_id: Option<i64>,
    username: Option<String>,
    email: String,
    email_lower: String,
    successful: bool,
    reject_reason: String,
    ip: String,
    user_agent: Option<String>,
    request_id: String,
    suspicious: bool,
    attempt_count: i64,
    last_occurred_at: Option<i64>,
}

impl From<AttemptRow> for StoredAttempt {
    fn from(r: AttemptRow) -> Self {
        Self {
            id: r.id,
            suspicious: r.suspicious,
            attempt: NewAttempt {
                event_id: r.event_id,
                occurred_at: r.occurred_at,
                identifier: r.identifier,
                user_id: r.user_id,
                username: r.username,
                email: r.email,
                email_lower: r.email_lower,
                successful: r.successful,
                reject_reason: r.reject_reason,
                ip_key: ip_key(&r.ip),
                ip: r.ip,
                user_agent: r.user_agent,
                request_id: r.request_id,
                count: r.attempt_count,
                last_occurred_at: r.last_occurred_at,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_are_chosen_by_scheme() {
        assert_eq!(Backend::from_url("sqlite://x.db"), Some(Backend::Sqlite));
        assert_eq!(Backend::from_url("sqlite::memory:"), Some(Backend::Sqlite));
        assert_eq!(Backend::from_url("postgres://h/d"), Some(Backend::Postgres));
        assert_eq!(
            Backend::from_url("PostgreSQL://h/d"),
            Some(Backend::Postgres)
        );
        assert_eq!(Backend::from_url("mysql://h/d"), Some(Backend::Mysql));
        assert_eq!(Backend::from_url("mongodb://h/d"), None);
        assert_eq!(Backend::from_url("data/audit.db"), None);
    }

    const SECOND: Micros = 1_000_000;

    /// A failed attempt with no email; the backends' own tests use it too.
    pub(super) fn failure(event_id: &str, ip: &str, at_secs: i64) -> NewAttempt {
        NewAttempt {
            event_id: event_id.to_owned(),
            occurred_at: at_secs * SECOND,
            identifier: String::new(),
            user_id: None,
            username: None,
            email: String::new(),
            email_lower: String::new(),
            successful: false,
            reject_reason: "bad_password".to_owned(),
            ip: ip.to_owned(),
            ip_key: ip_key(ip),
            user_agent: None,
            request_id: String::new(),
            count: 1,
            last_occurred_at: None,
        }
    }

    #[test]
    fn a_batch_is_judged_in_time_order_and_once_per_event() {
        let batch = [
            failure("c", "10.0.0.1", 20),
            failure("a", "10.0.0.1", 0),
            failure("a", "10.0.0.1", 5),
            failure("s", "10.0.0.1", 7),
            failure("b", "10.0.0.1", 10),
        ];
        let stored = HashSet::from(["s".to_owned()]);
        let judge = Judge::new(SuspicionRule::per_hour(3), &batch, &stored);
        assert_eq!(
            judge.verdicts(),
            vec![
                (0, Verdict::Flag(true)),
                (1, Verdict::Flag(false)),
                (4, Verdict::Flag(false)),
            ]
        );
    }

    #[test]
    fn stored_failures_settle_or_defer_the_flag() {
        // The batch spans two hours: the common window is empty, so an IP
        // with stored failures in the union needs an exact count.
        let batch = [failure("a", "10.0.0.1", 0), failure("b", "10.0.0.2", 7200)];
        let mut judge = Judge::new(SuspicionRule::per_hour(3), &batch, &HashSet::new());
        judge.add_counts(KeyKind::Ip, vec![(ip_key("10.0.0.1"), 0, 5)]);
        let verdicts = judge.verdicts();
        assert_eq!(
            verdicts[0],
            (
                0,
                Verdict::Check(vec![Check {
                    kind: KeyKind::Ip,
                    key: ip_key("10.0.0.1"),
                    from: -3600 * SECOND,
                    at: 0,
                    needed: 2,
                }])
            )
        );
        assert_eq!(verdicts[1], (1, Verdict::Flag(false)));

        let mut judge = Judge::new(SuspicionRule::per_hour(3), &batch, &HashSet::new());
        judge.add_counts(KeyKind::Ip, vec![(ip_key("10.0.0.2"), 2, 2)]);
        assert_eq!(judge.verdicts()[1], (1, Verdict::Flag(true)));
    }

    #[test]
    fn the_rule_counts_the_attempt_itself() {
        assert_eq!(SuspicionRule::per_hour(10).others_needed(), 9);
        assert_eq!(SuspicionRule::per_hour(1).others_needed(), 0);
        assert_eq!(SuspicionRule::per_hour(1).window_start(3_600_000_001), 1);
    }
}

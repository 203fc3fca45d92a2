//! MySQL/MariaDB backend, for operators whose shared database is one of
//! those.

use std::str::FromStr as _;

use sqlx::{
    MySql,
    mysql::{MySqlConnectOptions, MySqlPoolOptions},
};

use super::{
    admin_events::{AdminSql, admin_select},
    insert::{in_queries, insert_queries, stored_attempts},
    listing::Keyset,
    opening::{ACQUIRE_TIMEOUT, Opening as _},
    pooled::{Pooled, UpkeepSql},
    suspicion::{SuspicionRule, judge_batch},
};
use std::collections::HashMap;

use crate::attempt::{NewAttempt, StoredAttempt};

/// Pool size per replica, as for PostgreSQL.
const MAX_CONNECTIONS: u32 = 10;

/// A listing's columns, completed by `listing::push_listing`.
pub(super) const SELECT: &str = "SELECT id, event_id, occurred_at, identifier, user_id, username, email, \
    email_lower, successful, reject_reason, ip, user_agent, request_id, suspicious, \
    attempt_count, last_occurred_at, kind, original_reject_reason FROM login_attempts WHERE TRUE";

const SELECT_IDS: &str = "SELECT id, event_id FROM login_attempts WHERE event_id IN (";

// `ON DUPLICATE KEY UPDATE` on the unique key only, where `INSERT IGNORE`
// would also turn other errors (a value too long, a NULL) into warnings and
// silently store something else. A duplicate that slipped in between the
// check above and this insert (a concurrent producer) is absorbed here.
const ON_DUPLICATE: &str = " ON DUPLICATE KEY UPDATE event_id = event_id";

/// Admin events in MySQL/MariaDB's dialect; the row-value keyset is
/// spelled out, as for attempts.
pub(super) const ADMIN: AdminSql = AdminSql {
    begin: "BEGIN",
    uuid_cast: "",
    existing: "SELECT event_id FROM admin_events WHERE event_id IN (",
    on_duplicate: ON_DUPLICATE,
    select: admin_select!("event_id"),
    keyset: Keyset::Expanded,
};

const UPKEEP: UpkeepSql = UpkeepSql {
    // MySQL allows ORDER BY/LIMIT on a single-table DELETE (not LIMIT in a
    // subquery), and the order walks the time index from the oldest row.
    delete_before: "DELETE FROM login_attempts WHERE occurred_at < ? ORDER BY occurred_at, id LIMIT ?",
    missing_ip_keys: "SELECT id, ip FROM login_attempts WHERE ip_key IS NULL LIMIT ?",
    set_ip_key: "UPDATE login_attempts SET ip_key = ? WHERE id = ?",
    heartbeat: "INSERT INTO readiness_heartbeat (id, written_at) VALUES (1, ?) \
        ON DUPLICATE KEY UPDATE written_at = VALUES(written_at)",
};

/// The MySQL/MariaDB log database.
#[derive(Debug, Clone)]
pub struct MySqlStore {
    /// Connection pool and upkeep.
    pub(super) db: Pooled<MySql>,
    /// The suspicious-activity rule applied at ingest.
    rule: SuspicionRule,
}

impl MySqlStore {
    /// Connects and migrates (sqlx serialises concurrent migrators with a
    /// named lock, so replicas may start together).
    pub(super) async fn connect(url: &str, rule: SuspicionRule) -> anyhow::Result<Self> {
        let options = MySqlConnectOptions::from_str(url).opening(url, "")?;
        // One plain connection first: the pool would retry a refusing
        // server for its whole acquire timeout and then hide the cause.
        common::database::probe(&options).await.opening(url, "")?;
        let pool = MySqlPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .opening(url, "")?;
        Ok(Self {
            db: Pooled::open(pool, &sqlx::migrate!("migrations/mysql"), &UPKEEP, url).await?,
            rule,
        })
    }

    pub(super) async fn insert_batch(
        &self,
        attempts: &[NewAttempt],
    ) -> Result<Vec<StoredAttempt>, sqlx::Error> {
        let mut tx = self.db.pool.begin().await?;
        // The batch's stored event ids are looked up with a plain consistent
        // read, not a locking one: locking a missing key takes a gap lock,
        // and two producers doing so would deadlock. The insert below stays
        // idempotent on its own.
        let rows = judge_batch::<MySql>(&mut tx, self.rule, attempts).await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        for mut qb in insert_queries::<MySql>(&rows, "") {
            qb.push(ON_DUPLICATE).build().execute(&mut *tx).await?;
        }
        // No RETURNING: read the ids back. This transaction's snapshot
        // predates a duplicate a concurrent producer committed meanwhile
        // (absorbed by the no-op update, so not rewritten by us), so only
        // rows this transaction created are found.
        let fresh: Vec<&str> = rows.iter().map(|(a, _)| a.event_id.as_str()).collect();
        let mut ids = HashMap::new();
        for mut qb in in_queries::<MySql>(SELECT_IDS, &fresh, "") {
            let new: Vec<(i64, String)> = qb.build_query_as().fetch_all(&mut *tx).await?;
            ids.extend(new.into_iter().map(|(id, event_id)| (event_id, id)));
        }

        tx.commit().await?;
        Ok(stored_attempts(&rows, &ids))
    }
}

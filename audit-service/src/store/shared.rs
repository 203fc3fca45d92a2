//! Backend code that differs only in the driver type.

/// The parts of a backend that differ only in the driver type and SQL
/// dialect: each backend module defines `SELECT`, `DELETE_BEFORE`,
/// `MISSING_IP_KEYS` and `SET_IP_KEY` in its own dialect and invokes this
/// once, so the Rust around that SQL exists once.
macro_rules! shared_backend_ops {
    ($store:ty, $db:ty, $keyset:expr) => {
        impl $store {
            async fn list_via(
                &self,
                filter: &Filter,
                fetch: u32,
                cursor: Option<Cursor>,
                ip_path: $crate::store::IpPath,
            ) -> Result<Vec<AttemptRow>, sqlx::Error> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(SELECT);
                push_listing(&mut qb, filter, cursor, fetch, $keyset, ip_path);
                qb.build_query_as::<AttemptRow>()
                    .fetch_all(&self.pool)
                    .await
            }

            /// These engines choose between the IP-key index and the newest
            /// rows from their own statistics (autovacuum's ANALYZE,
            /// InnoDB's persistent statistics): measured, a `/16` holding a
            /// third of the log is read newest first (PostgreSQL at 10 M
            /// rows, MariaDB at 1 M).
            async fn ip_path(
                &self,
                _filter: &Filter,
            ) -> Result<$crate::store::IpPath, sqlx::Error> {
                Ok($crate::store::IpPath::Planner)
            }
        }

        super::shared::shared_backend_ops!($store, $db, $keyset, own_listing);
    };
    // The same without `list_via`, for a backend that pages its own way.
    ($store:ty, $db:ty, $keyset:expr, own_listing) => {
        impl $store {
            pub(super) async fn list(
                &self,
                filter: &Filter,
                fetch: u32,
                cursor: Option<Cursor>,
            ) -> Result<Vec<AttemptRow>, sqlx::Error> {
                let ip_path = self.ip_path(filter).await?;
                self.list_via(filter, fetch, cursor, ip_path).await
            }

            pub(super) async fn delete_before(
                &self,
                cutoff: i64,
                batch: i64,
            ) -> Result<u64, sqlx::Error> {
                let done = sqlx::query(DELETE_BEFORE)
                    .bind(cutoff)
                    .bind(batch)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }

            /// Computes `ip_key` for rows stored before it existed, a bounded batch
            /// per transaction; a no-op query once done.
            async fn backfill_ip_keys(&self) -> Result<(), sqlx::Error> {
                loop {
                    let rows: Vec<(i64, String)> = sqlx::query_as(MISSING_IP_KEYS)
                        .bind(BACKFILL_BATCH)
                        .fetch_all(&self.pool)
                        .await?;
                    if rows.is_empty() {
                        return Ok(());
                    }
                    let mut tx = self.pool.begin().await?;
                    for (id, ip) in rows {
                        sqlx::query(SET_IP_KEY)
                            .bind(ip_key(&ip))
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                }
            }

            pub(super) async fn close(&self) {
                self.pool.close().await;
            }

            /// Upserts the heartbeat row: a write, so a database that
            /// answers but refuses writes fails it.
            pub(super) async fn check_writable(&self, now: i64) -> Result<(), sqlx::Error> {
                sqlx::query(HEARTBEAT)
                    .bind(now)
                    .execute(&self.pool)
                    .await
                    .map(drop)
            }

            pub(super) fn pool_usage(&self) -> common::metrics::PoolUsage {
                common::metrics::PoolUsage {
                    open: self.pool.size(),
                    idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
                    max: self.pool.options().get_max_connections(),
                }
            }
        }

        /// Settles a flag the batch-wide counts left open with exact counts.
        async fn settle(
            conn: &mut <$db as sqlx::Database>::Connection,
            verdict: $crate::store::Verdict,
        ) -> Result<bool, sqlx::Error> {
            let checks = match verdict {
                $crate::store::Verdict::Flag(flag) => return Ok(flag),
                $crate::store::Verdict::Check(checks) => checks,
            };
            for check in &checks {
                let mut qb = $crate::store::Judge::check_query::<$db>(check);
                let failures: i64 = qb.build_query_scalar().fetch_one(&mut *conn).await?;
                if failures >= check.needed {
                    return Ok(true);
                }
            }
            Ok(false)
        }
    };
}

pub(super) use shared_backend_ops;

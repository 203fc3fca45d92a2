//! The outbox: login attempts written in the transaction that decided
//! them, and admin events in the transaction of the change each records,
//! read in order by the forwarder, removed once audit-service has them (or
//! set aside when it refuses one). The `kind` column tells the two apart.

use sqlx::{ColumnIndex, Executor};

use super::{Backend, Param, Value};
use crate::store::{AdminEventEntry, OutboxEntry, OutboxKind, OutboxRow, SqlStore, StoreError};

impl<DB> SqlStore<DB>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    i64: Value<DB>,
    i32: Value<DB>,
    bool: Value<DB>,
    String: Value<DB>,
    Vec<u8>: Value<DB>,
    for<'a> &'a str: Param<DB>,
    for<'a> &'a [u8]: Param<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
{
    /// Writes one attempt into the caller's transaction: a row of its own,
    /// or (a refused attempt) counted into its tally's open row.
    pub(super) async fn insert_attempt(
        conn: &mut DB::Connection,
        attempt: &OutboxEntry,
    ) -> Result<(), sqlx::Error> {
        match &attempt.tally {
            None => {
                sqlx::query(
                    "INSERT INTO attempt_outbox (event_id, payload, created_at) VALUES ($1, $2, $3)",
                )
                .bind(&attempt.event_id)
                .bind(&attempt.payload)
                .bind(attempt.created_at)
                .execute(conn)
                .await?;
            }
            // Counted into the key's open row, or opens it. The
            // forwarder closes a row (clearing its key) in one
            // statement, so a refusal lands in a row before it is
            // read or in a new one, never in one already sent.
            Some(tally) => {
                sqlx::query(
                    "INSERT INTO attempt_outbox
                                (event_id, payload, created_at, tally_key, due_at, last_at)
                             VALUES ($1, $2, $3, $4, $5, $6)
                             ON CONFLICT (tally_key) DO UPDATE SET
                                tally_count = attempt_outbox.tally_count + 1,
                                last_at = CASE WHEN excluded.last_at > attempt_outbox.last_at
                                               THEN excluded.last_at ELSE attempt_outbox.last_at END",
                )
                .bind(&attempt.event_id)
                .bind(&attempt.payload)
                .bind(attempt.created_at)
                .bind(&tally.key)
                .bind(tally.due_at)
                .bind(attempt.occurred_micros)
                .execute(conn)
                .await?;
            }
        }
        Ok(())
    }

    /// Writes admin events into the caller's transaction, a row each.
    pub(in crate::store) async fn insert_admin_events(
        conn: &mut DB::Connection,
        events: &[AdminEventEntry],
    ) -> Result<(), sqlx::Error> {
        for event in events {
            sqlx::query(
                "INSERT INTO attempt_outbox (event_id, payload, created_at, kind)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(&event.event_id)
            .bind(&event.payload)
            .bind(event.created_at)
            .bind(OutboxKind::AdminEvent.code())
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    pub(super) async fn record_admin_event(
        &self,
        event: &AdminEventEntry,
    ) -> Result<(), StoreError> {
        let mut conn = self.write().await?;
        Self::insert_admin_events(&mut conn, std::slice::from_ref(event)).await?;
        Ok(())
    }

    pub(super) async fn outbox_oldest(
        &self,
        limit: i64,
        now: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        // Looked for on the read pool first: closing takes the write
        // connection, and this runs every few milliseconds.
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT seq FROM attempt_outbox WHERE tally_key IS NOT NULL AND due_at <= $1 LIMIT 1",
        )
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        if due.is_some() {
            let mut conn = self.write().await?;
            sqlx::query(
                "UPDATE attempt_outbox SET tally_key = NULL WHERE tally_key IS NOT NULL AND due_at <= $1",
            )
            .bind(now)
            .execute(&mut *conn)
            .await?;
        }
        Ok(sqlx::query_as(
            "SELECT seq, kind, payload, tally_count, last_at FROM attempt_outbox
                     WHERE tally_key IS NULL ORDER BY seq LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    pub(super) async fn outbox_remove(&self, seqs: &[i64]) -> Result<(), StoreError> {
        let mut conn = self.write().await?;
        // Exact ids, never a range: a row committed late with a lower
        // sequence number must not be deleted unsent.
        for chunk in seqs.chunks(500) {
            let mut qb = sqlx::QueryBuilder::<DB>::new("DELETE FROM attempt_outbox WHERE seq IN (");
            let mut list = qb.separated(", ");
            for seq in chunk {
                list.push_bind(*seq);
            }
            list.push_unseparated(")");
            qb.build().execute(&mut *conn).await?;
        }
        Ok(())
    }

    pub(super) async fn outbox_set_aside(
        &self,
        seq: i64,
        refusal: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.write().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        sqlx::query(
            "INSERT INTO refused_attempts
                        (event_id, payload, created_at, refused_at, refusal, tally_count, last_at,
                         kind)
                     SELECT event_id, payload, created_at, $2, $3, tally_count, last_at, kind
                     FROM attempt_outbox WHERE seq = $1
                     ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(seq)
        .bind(now)
        .bind(refusal)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM attempt_outbox WHERE seq = $1")
            .bind(seq)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn refused_len(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM refused_attempts")
            .fetch_one(&self.pool)
            .await?)
    }

    pub(super) async fn outbox_len(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM attempt_outbox")
            .fetch_one(&self.pool)
            .await?)
    }
}

//! SQLite: the embedded default. WAL mode so readers never wait on the
//! writer; every write of this process goes through one connection (see
//! [`super::SqlStore`]), refresh rotations in batches
//! ([`RotationBatches`]); a busy timeout covers other processes (the
//! operator commands) writing at the same time.
//!
//! Durability: WAL with `synchronous=NORMAL` — a commit survives a crash of
//! the process; a power loss can undo the last few commits, never corrupt.

mod batch;

use std::{str::FromStr, sync::Arc, time::Duration};

use sqlx::{
    ConnectOptions, SqliteConnection,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

use super::{NewRefreshToken, Open, Rotation, SqliteStore, StoreError, sql::Backend};
use crate::throttle::Limit;

/// One rotation waiting for the batch writer, with where to send its outcome.
pub(super) struct RotateJob {
    jti: String,
    now: i64,
    next: NewRefreshToken,
    limit: Limit,
    /// Seconds a used token may be presented again ([`Rotation::Replayed`]).
    grace: i64,
    reply: tokio::sync::oneshot::Sender<Result<Rotation, StoreError>>,
}

/// Group commit for refresh-token rotation on SQLite. Every statement is a
/// hand-off to the driver's thread, and with one writer the hand-offs of
/// all rotations queue behind each other; a background task takes every
/// rotation waiting (up to [`MAX_ROTATION_BATCH`]) and runs them in one
/// transaction, so `BEGIN`, `COMMIT` and the WAL page writes are paid once
/// per batch instead of once per refresh. Each caller is answered only after
/// the commit, so a returned token's rotation is as durable as before. The
/// batch ends as if its rotations had committed one by one in some order
/// (set statements for the live tokens, then the rest one at a time: see
/// `sqlite/batch.rs`).
#[derive(Clone)]
pub(super) struct RotationBatches {
    jobs: tokio::sync::mpsc::Sender<RotateJob>,
}

/// Most rotations committed together (enough to amortise the commit; a
/// bigger batch only makes its first caller wait longer).
const MAX_ROTATION_BATCH: usize = 64;

impl RotationBatches {
    async fn rotate(
        &self,
        jti: &str,
        now: i64,
        next: &NewRefreshToken,
        limit: Limit,
        grace: i64,
    ) -> Result<Rotation, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = RotateJob {
            jti: jti.to_owned(),
            now,
            next: next.clone(),
            limit,
            grace,
            reply,
        };
        // The task ends only when every store handle is gone.
        let gone = || StoreError::Database(sqlx::Error::WorkerCrashed);
        self.jobs.send(job).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

impl SqliteStore {
    /// Opens (creating the file and its folder if needed) and migrates.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::open(url, Open::OrCreate).await
    }

    /// Opens and migrates; with [`Open::Existing`] a missing file is
    /// refused, and nothing is created.
    pub async fn open(url: &str, open: Open) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(open == Open::OrCreate)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        if open == Open::Existing {
            let file = options.get_filename();
            if !file.exists() {
                return Err(StoreError::Missing(file.to_path_buf()));
            }
        } else if let Some(dir) = options.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(sqlx::Error::Io)?;
        }
        let mut writer = options.connect().await?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&mut writer)
            .await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            // A connection to a local file does not go stale; the check
            // would be one more round trip to the driver's thread per read.
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        let writer = Arc::new(tokio::sync::Mutex::new(writer));
        let (jobs, queue) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(rotate_batches(writer.clone(), queue));
        Ok(Self {
            pool,
            writer: Some(writer),
            rotations: Some(RotationBatches { jobs }),
        })
    }
}

/// Runs the rotations queued by [`RotationBatches`] until every
/// store handle has been dropped.
async fn rotate_batches(
    writer: Arc<tokio::sync::Mutex<SqliteConnection>>,
    mut queue: tokio::sync::mpsc::Receiver<RotateJob>,
) {
    let mut batch = Vec::with_capacity(MAX_ROTATION_BATCH);
    while queue.recv_many(&mut batch, MAX_ROTATION_BATCH).await > 0 {
        let mut conn = writer.lock().await;
        match rotate_together(&mut conn, &batch).await {
            Ok(outcomes) => {
                drop(conn);
                for (job, outcome) in batch.drain(..).zip(outcomes) {
                    // The caller may have gone away; the rotation stands.
                    let _ = job.reply.send(Ok(outcome));
                }
            }
            // The whole batch was rolled back: one at a time, so a failure
            // fails only the rotation that caused it.
            Err(_) => {
                for job in batch.drain(..) {
                    let outcome = rotate_alone(&mut conn, &job).await;
                    let _ = job.reply.send(outcome.map_err(StoreError::from));
                }
            }
        }
    }
}

async fn rotate_together(
    conn: &mut SqliteConnection,
    batch: &[RotateJob],
) -> Result<Vec<Rotation>, sqlx::Error> {
    let mut tx = sqlx::Connection::begin(conn).await?;
    let outcomes = if batch::applies(batch) {
        batch::rotate_set(&mut tx, batch).await?
    } else {
        let mut outcomes = Vec::with_capacity(batch.len());
        for job in batch {
            outcomes.push(
                SqliteStore::rotate_in_tx(
                    &mut tx, &job.jti, job.now, &job.next, job.limit, job.grace,
                )
                .await?,
            );
        }
        outcomes
    };
    tx.commit().await?;
    Ok(outcomes)
}

async fn rotate_alone(
    conn: &mut SqliteConnection,
    job: &RotateJob,
) -> Result<Rotation, sqlx::Error> {
    let mut tx = sqlx::Connection::begin(conn).await?;
    let outcome =
        SqliteStore::rotate_in_tx(&mut tx, &job.jti, job.now, &job.next, job.limit, job.grace)
            .await?;
    tx.commit().await?;
    Ok(outcome)
}

/// Rotations go to the batch writer ([`RotationBatches`]).
impl Backend for sqlx::Sqlite {
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    const FOR_UPDATE: &'static str = "";

    fn rows_affected(done: &sqlx::sqlite::SqliteQueryResult) -> u64 {
        done.rows_affected()
    }

    async fn rotate_refresh(
        store: &SqliteStore,
        jti: &str,
        now: i64,
        next: &NewRefreshToken,
        family_limit: Limit,
        reuse_grace: i64,
    ) -> Result<Rotation, StoreError> {
        match &store.rotations {
            Some(batches) => {
                batches
                    .rotate(jti, now, next, family_limit, reuse_grace)
                    .await
            }
            None => {
                store
                    .rotate_one(jti, now, next, family_limit, reuse_grace)
                    .await
            }
        }
    }
}

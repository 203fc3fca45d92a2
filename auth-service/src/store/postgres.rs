//! PostgreSQL: the shared engine when several replicas run. Migrations take
//! sqlx's advisory lock, so replicas starting together migrate once.

use std::str::FromStr as _;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::{NewRefreshToken, PgStore, Rotation, StoreError, sql::Backend};
use crate::throttle::Limit;

impl PgStore {
    /// Connects (one probe connection first, so an unreachable or refusing
    /// server fails within seconds with its cause) and migrates. The
    /// server itself refuses a database that does not exist.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)?;
        common::database::probe(&options).await?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .connect_with(options)
            .await?;

        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self {
            pool,
            writer: None,
            rotations: None,
        })
    }
}

/// Each rotation in its own transaction: replicas share the database, so
/// there is no one writer to batch on; the row the `UPDATE` spends is
/// locked until commit, so two replicas presenting one token see each other.
impl Backend for sqlx::Postgres {
    const BEGIN_WRITE: &'static str = "BEGIN";
    const FOR_UPDATE: &'static str = " FOR UPDATE";

    fn rows_affected(done: &sqlx::postgres::PgQueryResult) -> u64 {
        done.rows_affected()
    }

    async fn rotate_refresh(
        store: &PgStore,
        jti: &str,
        now: i64,
        next: &NewRefreshToken,
        family_limit: Limit,
        reuse_grace: i64,
    ) -> Result<Rotation, StoreError> {
        store
            .rotate_one(jti, now, next, family_limit, reuse_grace)
            .await
    }
}

//! PostgreSQL: the shared engine when several replicas run. Migrations take
//! sqlx's advisory lock, so replicas starting together migrate once.

use std::str::FromStr as _;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::{PgStore, StoreError};

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

super::sql::impl_auth_store!(sqlx::Postgres);

//! PostgreSQL: the shared engine when several replicas run. Migrations take
//! sqlx's advisory lock, so replicas starting together migrate once.

use sqlx::postgres::PgPoolOptions;

use super::{PgStore, StoreError};

impl PgStore {
    /// Connects and migrates.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .connect(url)
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

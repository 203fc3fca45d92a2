//! PostgreSQL: the shared engine when several replicas run. Migrations take
//! sqlx's advisory lock, so replicas starting together migrate once.

use std::str::FromStr as _;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::{Open, PgStore, StoreError};

impl PgStore {
    /// Connects and migrates.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::open(url, Open::OrCreate).await
    }

    /// Connects (one probe connection first, so an unreachable or refusing
    /// server fails within seconds with its cause) and migrates; with
    /// [`Open::Existing`] a database without auth-service's tables is
    /// refused untouched.
    pub async fn open(url: &str, open: Open) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)?;
        common::database::probe(&options).await?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .connect_with(options)
            .await?;
        if open == Open::Existing {
            let set_up: bool = sqlx::query_scalar("SELECT to_regclass('users') IS NOT NULL")
                .fetch_one(&pool)
                .await?;
            if !set_up {
                return Err(StoreError::NotSetUp);
            }
        }
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self {
            pool,
            writer: None,
            rotations: None,
        })
    }
}

super::sql::impl_auth_store!(sqlx::Postgres);

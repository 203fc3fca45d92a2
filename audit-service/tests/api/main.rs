//! End-to-end tests: the real `Application` on loopback, the generated
//! client, real databases. Every case runs on each backend: SQLite in a temp
//! dir always, PostgreSQL when `TEST_POSTGRES_URL` is set and MySQL/MariaDB
//! when `TEST_MYSQL_URL` is set (CI sets both).
//! One test binary keeps the build fast.

// clippy.toml allows these inside #[test] functions only; the helpers and
// case bodies here are test code too, where a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// Generates `sqlite::<case>`, `postgres::<case>` and `mysql::<case>` tests
/// for each backend-
/// agnostic case `async fn <case>(db: TestDb)` of the calling module.
macro_rules! on_every_backend {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(crate::helpers::TestDb::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    let Some(db) = crate::helpers::TestDb::postgres().await else {
                        return;
                    };
                    super::$case(db).await;
                }
            )*
        }
        mod mysql {
            $(
                #[tokio::test]
                async fn $case() {
                    let Some(db) = crate::helpers::TestDb::mysql().await else {
                        return;
                    };
                    super::$case(db).await;
                }
            )*
        }
    };
}

mod admin_events;
mod count;
mod filters;
mod helpers;
mod ingest;
mod lifecycle;
mod list;
mod retention;
mod security;
mod suspicious;
mod tail;

//! End-to-end tests through the gateway. Each scenario runs once on SQLite
//! and once on PostgreSQL (`TEST_POSTGRES_URL`); one binary keeps the build
//! fast.

/// Declares `scenario::sqlite` and `scenario::postgres` tests for each
/// `async fn scenario(backend: Backend)`.
macro_rules! on_every_backend {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$scenario(system_tests::Backend::Sqlite).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$scenario(system_tests::Backend::Postgres).await;
                }
            }
        )*
    };
}

mod abuse;
mod accounts;
mod admin;
mod admin_events;
mod algorithms;
mod compat;
mod contract;
mod django_import;
mod export;
mod flood;
mod hostile;
mod identities;
mod internal;
mod keys;
mod login;
mod logs;
mod parallel;
mod password;
mod prehijack;
mod proxies;
mod readiness;
mod resilience;
mod stream;
mod support;
mod tokens;

//! auth-service's own tests: its rules through its real gRPC API and, for
//! rules about time, through the use cases at a fixed clock, on a real
//! SQLite file and a fresh PostgreSQL database (`TEST_POSTGRES_URL`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

/// Declares `scenario::sqlite` and `scenario::postgres` tests for each
/// `async fn scenario<S: AuthStore>(rules: Rules<S>)`.
macro_rules! on_every_backend {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$scenario(crate::helpers::Rules::sqlite().await).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(rules) = crate::helpers::Rules::postgres().await {
                        super::$scenario(rules).await;
                    }
                }
            }
        )*
    };
}

mod admin;
mod admin_events;
mod brute_force;
mod django;
mod forwarding;
mod grpc;
mod helpers;
mod identities;
mod password;

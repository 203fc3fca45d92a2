//! Harness for end-to-end tests: starts audit-service, auth-service and the
//! gateway exactly as production does (the same `Application` code), on
//! port 0, over real SQLite files or fresh PostgreSQL databases, with a real
//! SMTP server receiving the verification emails; [`processes`] runs the
//! real binaries for signal tests and outside tools; [`tools`] finds the
//! tools (promtool, PyPI packages) that some tests point at them;
//! [`pyjwt`] and [`simplejwt`] are verifiers that are not our code.
//! [`django`] builds databases laid out as the Django service's, with
//! password hashes made by Django itself.

pub mod django;
pub mod processes;
pub mod pyjwt;
pub mod simplejwt;
pub mod smtp;
pub mod system;
pub mod tools;

pub use system::{Backend, MetricsAddrs, TestSystem};

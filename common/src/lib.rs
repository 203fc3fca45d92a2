//! Plumbing shared by the three services, kept here so each service's own
//! crate holds only its domain.
//!
//! - [`cli`]: what every binary does around its work: `.env`, logging, the
//!   fatal line and the exit status.
//! - [`claims`]: the JWT claims auth-service signs and the gateway verifies.
//! - [`compat`]: `COMPAT`, the switch back to the Django service's behaviours.
//! - [`config`]: typed environment parsing with one clear error per variable.
//! - `database` (feature `database`): opening a database with errors that
//!   name the variable and the server, quickly.
//! - [`telemetry`]: tracing set-up (human or JSON), optional OTLP export.
//! - [`trace_context`]: W3C trace context across the internal gRPC hops.
//! - [`health`]: readiness that follows the database.
//! - [`shutdown`]: the SIGTERM / Ctrl-C future every server waits on.
//! - [`metadata`]: gRPC metadata keys that carry the client context.
//! - [`net`]: accepting gRPC connections (Nagle off).
//! - [`internal_auth`]: the shared-secret check on internal gRPC calls.
//! - [`tls`]: optional TLS (and client certificates) for internal gRPC.
//! - [`metrics`]: the Prometheus recorder, its `/metrics` endpoint and the gRPC layer.

pub mod claims;
pub mod cli;
pub mod compat;
pub mod config;
#[cfg(feature = "database")]
pub mod database;
pub mod health;
pub mod internal_auth;
pub mod metadata;
pub mod metrics;
pub mod net;
pub mod reflection;
pub mod shutdown;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;
pub mod trace_context;

//! The login-attempt log for administrators: one module per concern,
//! each depending only on those listed before it.
//!
//! - [`query`]: the query string, validated, and the audit.v1 requests it
//!   makes (listing, tail and counts share one filter).
//! - [`item`]: one attempt as clients see it, from audit-service's record.
//! - [`export`]: the whole filtered log as CSV or NDJSON, streamed.
//! - [`stream`]: the live tail (Server-Sent Events) and its session checks.
//! - [`list`]: the paged listing, which hands `?format=` to [`export`].
//! - [`counts`]: attempts per time bucket, for a chart.

pub mod counts;
pub mod export;
pub mod item;
pub mod list;
pub mod query;
pub mod stream;

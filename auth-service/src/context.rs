//! The client context the edge passes as gRPC metadata: the workspace's
//! one type for it, read with the same limits the gateway applies.

pub use common::metadata::ClientContext;

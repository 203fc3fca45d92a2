//! The gateway through its real HTTP server, in front of fake gRPC
//! backends. One test binary keeps link time down.

// Test code: a failed unwrap is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod accounts;
mod admin_events;
mod body;
mod client_context;
mod counts;
mod helpers;
mod jwt;
mod login;
mod logs;
mod openapi;
mod password;
mod routing;
mod security_headers;
mod slow_clients;

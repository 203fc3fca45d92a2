//! Registration, email verification, login and token refresh, each in the
//! old service's paths and shapes, and the password paths the old service
//! lacked. The modules depend only on those
//! listed before them:
//!
//! - [`forms`]: the request bodies, documented and read as one type each.
//! - [`replies`]: the response bodies.
//! - [`signup`]: register, request a code, verify it.
//! - [`session`]: login, refresh, logout, logout everywhere.
//! - [`password`]: change (signed in) and reset (by emailed code).

pub mod forms;
pub mod password;
pub mod replies;
pub mod session;
pub mod signup;

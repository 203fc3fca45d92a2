//! User administration for administrators (issue #16), forwarded to
//! `auth.v1.AdminService` with the administrator's access token, which
//! auth-service checks again (live session, `is_staff` as the database
//! says now). One module per concern, each depending only on those listed
//! before it:
//!
//! - [`query`]: the listing's query string, validated.
//! - [`item`]: an account, and each action's reply, as clients see them.
//! - [`forms`]: the PATCH body.
//! - [`target`]: the account a handler acts on, and who acts.
//! - [`users`]: the handlers.
//!
//! Beside them, [`events`]: the admin events those actions record
//! (`GET /api/admin/events/`), read from audit-service like the attempt
//! log.

pub mod events;
pub mod forms;
pub mod item;
pub mod query;
pub mod target;
pub mod users;

//! Accounts as REST clients see them, and each action's reply, from
//! auth-service's messages. Times are RFC 3339 UTC, as in the log.

use proto::auth::v1::{UserAccount, UserDetail};
use serde::Serialize;

use crate::routes::logs::item::rfc3339;

/// An account in a listing. Never its password hash.
#[derive(Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct UserItem {
    /// The account's id (the tokens' `user_id`, the log's `user`).
    pub id: i64,
    /// As registered.
    pub username: String,
    /// As registered (domain in IDNA ASCII).
    pub email: String,
    /// May log in: verified and not deactivated.
    pub is_active: bool,
    /// Administrator.
    pub is_staff: bool,
    /// The email was verified.
    pub verified: bool,
    /// When it registered.
    #[schema(format = DateTime)]
    pub date_joined: Option<String>,
    /// When its email was verified; `null` while unverified.
    #[schema(format = DateTime)]
    pub verified_at: Option<String>,
    /// Its last successful login; `null` when never (or not since this
    /// was first recorded).
    #[schema(format = DateTime)]
    pub last_login: Option<String>,
}

impl From<UserAccount> for UserItem {
    fn from(a: UserAccount) -> Self {
        Self {
            id: a.id,
            username: a.username,
            email: a.email,
            is_active: a.is_active,
            is_staff: a.is_staff,
            verified: a.verified,
            date_joined: a.date_joined.and_then(rfc3339),
            verified_at: a.verified_at.and_then(rfc3339),
            last_login: a.last_login.and_then(rfc3339),
        }
    }
}

/// One account in detail: a listing's fields, its lock and its sessions.
#[derive(Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct UserDetailItem {
    /// The account's id.
    pub id: i64,
    /// As registered.
    pub username: String,
    /// As registered.
    pub email: String,
    /// May log in.
    pub is_active: bool,
    /// Administrator.
    pub is_staff: bool,
    /// The email was verified.
    pub verified: bool,
    /// When it registered.
    #[schema(format = DateTime)]
    pub date_joined: Option<String>,
    /// When its email was verified; `null` while unverified.
    #[schema(format = DateTime)]
    pub verified_at: Option<String>,
    /// Its last successful login; `null` when never.
    #[schema(format = DateTime)]
    pub last_login: Option<String>,
    /// Until when the account is locked after failed logins from any
    /// address; `null` when it is not locked.
    #[schema(format = DateTime)]
    pub locked_until: Option<String>,
    /// Client addresses delayed now after failed logins to this account.
    #[schema(minimum = 0)]
    pub delayed_clients: u32,
    /// Sessions (refresh token families) that can still refresh.
    #[schema(minimum = 0)]
    pub active_sessions: u32,
}

impl From<UserDetail> for UserDetailItem {
    fn from(d: UserDetail) -> Self {
        let UserItem {
            id,
            username,
            email,
            is_active,
            is_staff,
            verified,
            date_joined,
            verified_at,
            last_login,
        } = UserItem::from(d.user.unwrap_or_default());
        Self {
            id,
            username,
            email,
            is_active,
            is_staff,
            verified,
            date_joined,
            verified_at,
            last_login,
            locked_until: d.locked_until.and_then(rfc3339),
            delayed_clients: d.delayed_clients,
            active_sessions: d.active_sessions,
        }
    }
}

/// The reply of `POST /api/admin/users/{id}/unlock/`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UnlockReply {
    /// The account now.
    pub user: UserDetailItem,
    /// Brute-force counters cleared (0: there was nothing to clear).
    #[schema(minimum = 0)]
    pub cleared_counters: u32,
}

/// The reply of `POST /api/admin/users/{id}/logout/`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LogoutReply {
    /// The account now.
    pub user: UserDetailItem,
    /// Sessions that were open and are now revoked.
    #[schema(minimum = 0)]
    pub revoked_sessions: u32,
}

/// The reply of `POST /api/admin/users/{id}/verification/`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VerificationReply {
    /// The account (unchanged until it verifies itself with the code).
    pub user: UserDetailItem,
    /// When the code just mailed expires.
    #[schema(format = DateTime)]
    pub code_expires_at: Option<String>,
}

/// The reply of `DELETE /api/admin/users/{id}/`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeleteReply {
    /// The account as it was just before it was deleted.
    pub deleted: UserItem,
    /// Always `true`: its login attempts stay in the log, which refers to
    /// accounts by id without a foreign key.
    pub login_attempts_kept: bool,
    /// The same, in words.
    pub detail: String,
}

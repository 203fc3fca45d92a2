//! Administrative actions as events: who did what to which account, when,
//! from where. Today each is one structured log line (target
//! `admin_event`); the record is what a later step stores in the audit log
//! beside login attempts (Keycloak's "admin events"), through the same
//! outbox.

use super::actor::{Actor, Who};

/// What an administrator did to an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminAction {
    /// `is_active` set.
    Activate,
    /// `is_active` cleared (and every session ended).
    Deactivate,
    /// `is_staff` set.
    GrantAdmin,
    /// `is_staff` cleared.
    RevokeAdmin,
    /// Brute-force lock and delays cleared.
    Unlock,
    /// Every session ended.
    Logout,
    /// A verification code mailed.
    ResendVerification,
    /// The account deleted.
    Delete,
}

impl AdminAction {
    /// The action's stable name (`grant_admin`).
    pub fn code(self) -> &'static str {
        match self {
            Self::Activate => "activate",
            Self::Deactivate => "deactivate",
            Self::GrantAdmin => "grant_admin",
            Self::RevokeAdmin => "revoke_admin",
            Self::Unlock => "unlock",
            Self::Logout => "logout",
            Self::ResendVerification => "resend_verification",
            Self::Delete => "delete",
        }
    }
}

/// One action as done.
#[derive(Debug, Clone)]
pub struct AdminEvent<'a> {
    /// What.
    pub action: AdminAction,
    /// Who, and from where.
    pub actor: &'a Actor,
    /// On which account (its id).
    pub target_id: i64,
    /// That account's username.
    pub target_username: &'a str,
    /// When (Unix seconds).
    pub at: i64,
}

impl AdminEvent<'_> {
    /// Records the event (see the module documentation).
    pub fn record(&self) {
        let client = self.actor.client();
        let (actor_id, actor_name) = match self.actor.who() {
            Who::Admin { user_id, username } => (Some(*user_id), username.as_str()),
            Who::Operator { login } => (None, login.as_deref().unwrap_or("")),
        };
        tracing::info!(
            target: "admin_event",
            action = self.action.code(),
            actor_id,
            actor = actor_name,
            operator = actor_id.is_none(),
            target_id = self.target_id,
            target = self.target_username,
            at = self.at,
            ip = client.ip.as_str(),
            user_agent = client.user_agent.as_deref().unwrap_or(""),
            request_id = client.request_id.as_str(),
            "admin action"
        );
    }
}

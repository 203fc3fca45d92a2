//! Administrative actions as events (Keycloak's "admin events"): who did
//! what to which account, when, from where, and what it counted.
//!
//! Each event is written into the outbox in the transaction of the change
//! it records (see [`crate::store::AuthStore::change_account`]), so a
//! committed change always has its event and a rolled-back or refused one
//! never does; the forwarder then streams it to audit-service beside the
//! login attempts (`audit.v1.IngestBatch.admin_events`), where
//! `ListAdminEvents` (and the gateway's `GET /api/admin/events/`) lists
//! it. Once the change has committed, the event is also one structured
//! log line (target `admin_event`) carrying the same event id.

use prost::Message as _;
use proto::audit::v1 as audit;
use uuid::Uuid;

use super::actor::{Actor, Who};
use crate::store::{AccountView, AdminEventEntry};

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
    /// The action as audit.v1 carries it.
    pub fn proto(self) -> audit::AdminAction {
        match self {
            Self::Activate => audit::AdminAction::Activate,
            Self::Deactivate => audit::AdminAction::Deactivate,
            Self::GrantAdmin => audit::AdminAction::GrantAdmin,
            Self::RevokeAdmin => audit::AdminAction::RevokeAdmin,
            Self::Unlock => audit::AdminAction::Unlock,
            Self::Logout => audit::AdminAction::Logout,
            Self::ResendVerification => audit::AdminAction::ResendVerification,
            Self::Delete => audit::AdminAction::Delete,
        }
    }

    /// The action's stable name (`grant_admin`), as the audit log stores
    /// it.
    pub fn code(self) -> &'static str {
        self.proto().code()
    }
}

/// What an action counted, where it counts something.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Details {
    /// Sessions ended (deactivate, logout, delete).
    pub sessions_revoked: Option<u64>,
    /// Brute-force counters cleared (unlock).
    pub counters_cleared: Option<u64>,
    /// When the mailed code expires, Unix seconds (resend verification).
    pub code_expires_at: Option<i64>,
}

/// One action as done.
#[derive(Debug, Clone)]
pub struct AdminEvent<'a> {
    /// The idempotency key audit-service stores it under (UUIDv7), chosen
    /// before the change so the log line names the stored event.
    pub event_id: Uuid,
    /// What.
    pub action: AdminAction,
    /// Who, and from where.
    pub actor: &'a Actor,
    /// On which account (its id).
    pub target_id: i64,
    /// That account's username.
    pub target_username: &'a str,
    /// That account's email.
    pub target_email: &'a str,
    /// When (Unix seconds).
    pub at: i64,
    /// What it counted.
    pub details: Details,
}

impl<'a> AdminEvent<'a> {
    /// The event `event_id` of `action` on `target` by `actor` at `at`.
    pub fn new(
        event_id: Uuid,
        action: AdminAction,
        actor: &'a Actor,
        target: &'a AccountView,
        at: i64,
        details: Details,
    ) -> Self {
        Self {
            event_id,
            action,
            actor,
            target_id: target.id,
            target_username: &target.username,
            target_email: &target.email,
            at,
            details,
        }
    }

    /// The event as audit.v1 carries it.
    pub fn to_proto(&self) -> audit::AdminEvent {
        let client = self.actor.client();
        let (actor_id, actor_name) = actor_of(self.actor);
        audit::AdminEvent {
            event_id: self.event_id.hyphenated().to_string(),
            occurred_at: Some(timestamp(self.at)),
            action: self.action.proto() as i32,
            actor_id,
            actor_name: actor_name.to_owned(),
            operator: actor_id.is_none(),
            target_id: self.target_id,
            target_username: self.target_username.to_owned(),
            target_email: self.target_email.to_owned(),
            ip: client.ip.clone(),
            user_agent: client.user_agent.clone(),
            request_id: client.request_id.clone(),
            sessions_revoked: self.details.sessions_revoked,
            counters_cleared: self.details.counters_cleared,
            code_expires_at: self.details.code_expires_at.map(timestamp),
        }
    }

    /// The event as the outbox row the change's transaction writes.
    pub fn outbox_entry(&self) -> AdminEventEntry {
        AdminEventEntry {
            event_id: self.event_id.hyphenated().to_string(),
            payload: self.to_proto().encode_to_vec(),
            created_at: self.at,
        }
    }

    /// Logs the event (target `admin_event`), once its change has
    /// committed.
    pub fn record(&self) {
        let client = self.actor.client();
        let (actor_id, actor_name) = actor_of(self.actor);
        tracing::info!(
            target: "admin_event",
            event_id = %self.event_id,
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
            sessions_revoked = self.details.sessions_revoked,
            counters_cleared = self.details.counters_cleared,
            "admin action"
        );
    }
}

/// The acting administrator's id (`None` for an operator) and name.
fn actor_of(actor: &Actor) -> (Option<i64>, &str) {
    match actor.who() {
        Who::Admin { user_id, username } => (Some(*user_id), username.as_str()),
        Who::Operator { login } => (None, login.as_deref().unwrap_or("")),
    }
}

fn timestamp(seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds, nanos: 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_has_the_audit_logs_code() {
        let all = [
            AdminAction::Activate,
            AdminAction::Deactivate,
            AdminAction::GrantAdmin,
            AdminAction::RevokeAdmin,
            AdminAction::Unlock,
            AdminAction::Logout,
            AdminAction::ResendVerification,
            AdminAction::Delete,
        ];
        for action in all {
            assert!(!action.code().is_empty());
            assert_eq!(
                audit::AdminAction::from_code(action.code()),
                Some(action.proto())
            );
        }
        assert_eq!(all.len(), audit::AdminAction::ALL.len());
    }
}

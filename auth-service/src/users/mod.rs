//! User administration (issue #16): the use cases an administrator runs
//! through `auth.v1.AdminService` and an operator through
//! `auth-service user …`, on one set of rules.
//!
//! Each action takes the [`Actor`] (who, and from where) and the instant it
//! runs at, and writes an [`events::AdminEvent`] into the outbox in the
//! transaction that makes the change (on to audit-service, beside the
//! login attempts), logging it once committed. A change that
//! could leave the system without an active administrator is decided in
//! the store's one transaction ([`AuthStore::change_account`]) by
//! [`rules::check`], so concurrent changes are decided one after another.
//!
//! Layout: [`actor`] (who acts), [`query`] (a listing request, checked),
//! [`rules`] (the change rules, pure), [`events`] (what each action
//! records), and here [`UserAdmin`], the use cases.

pub mod actor;
pub mod events;
pub mod query;
pub mod rules;

use std::time::Duration;

use lettre::message::Mailbox;
use uuid::Uuid;

pub use actor::{Actor, Who};
pub use events::{AdminAction, AdminEvent, Details};
pub use query::{ListRequest, UserQuery};

use crate::{
    codes,
    domain::FieldError,
    error::Error,
    mail::Mailer,
    store::{
        AccountChange, AccountDetail, AccountView, AdminEventEntry, AuthStore, ChangeOutcome,
        CodePurpose,
    },
    throttle,
};

/// The user-administration use cases over a store.
#[derive(Clone)]
pub struct UserAdmin<S> {
    store: S,
    mailer: Mailer,
    mail_from: Mailbox,
    /// Seconds an unverified account can still be verified.
    unverified_ttl: i64,
}

/// One page of accounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPage {
    /// Newest first.
    pub accounts: Vec<AccountView>,
    /// The next page's cursor; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// A change of an account's flags: `None` leaves a flag as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlagChange {
    /// Activate (`true`) or deactivate (`false`).
    pub is_active: Option<bool>,
    /// Grant (`true`) or revoke (`false`) administrator rights.
    pub is_staff: Option<bool>,
}

/// An account after an action, and how many sessions, counters or the
/// like the action ended or cleared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    /// The account now.
    pub account: AccountDetail,
    /// What the action counted (sessions revoked, counters cleared).
    pub count: u64,
}

/// The note every deletion answers with.
pub const ATTEMPTS_KEPT: &str = "The account is deleted. Its login attempts stay in the audit \
                                 log, which refers to accounts by id without a foreign key.";

impl<S: AuthStore> UserAdmin<S> {
    /// The use cases over `store`, mailing codes with `mailer` from
    /// `mail_from`; unverified accounts can be verified for
    /// `unverified_ttl` after registering (`AUTH_UNVERIFIED_TTL`).
    pub fn new(store: S, mailer: Mailer, mail_from: Mailbox, unverified_ttl: Duration) -> Self {
        Self {
            store,
            mailer,
            mail_from,
            unverified_ttl: throttle::secs(unverified_ttl),
        }
    }

    /// The same, with another unverified-account lifetime.
    pub fn with_unverified_ttl(mut self, ttl: Duration) -> Self {
        self.unverified_ttl = throttle::secs(ttl);
        self
    }

    /// One page of accounts matching `query`, newest first.
    pub async fn list(&self, actor: &Actor, query: &UserQuery) -> Result<UserPage, Error> {
        let mut accounts = self.store.list_accounts(query.filter()).await?;
        let limit = usize::try_from(query.limit()).unwrap_or(usize::MAX);
        let next_cursor = if accounts.len() > limit {
            accounts.truncate(limit);
            accounts.last().map(|a| query::encode_cursor(a.id))
        } else {
            None
        };
        tracing::debug!(
            admin = actor.admin_id(),
            n = accounts.len(),
            "accounts listed"
        );
        Ok(UserPage {
            accounts,
            next_cursor,
        })
    }

    /// One account in detail, as of `now`.
    pub async fn detail(&self, user_id: i64, now: i64) -> Result<AccountDetail, Error> {
        self.store
            .account_detail(user_id, now)
            .await?
            .ok_or_else(|| not_found(user_id))
    }

    /// Activates or deactivates the account and/or grants or revokes
    /// administrator rights (see [`rules::check`]); deactivating ends every
    /// session. [`Done::count`]: the sessions ended.
    pub async fn update(
        &self,
        actor: &Actor,
        user_id: i64,
        flags: FlagChange,
        now: i64,
    ) -> Result<Done, Error> {
        if flags.is_active.is_none() && flags.is_staff.is_none() {
            return Err(Error::Invalid(vec![FieldError::new(
                "",
                "Send is_active, is_staff or both.",
            )]));
        }
        let change = AccountChange::Update {
            is_active: flags.is_active,
            is_staff: flags.is_staff,
        };
        let actions = [
            flags.is_active.map(|on| {
                if on {
                    AdminAction::Activate
                } else {
                    AdminAction::Deactivate
                }
            }),
            flags.is_staff.map(|on| {
                if on {
                    AdminAction::GrantAdmin
                } else {
                    AdminAction::RevokeAdmin
                }
            }),
        ];
        // One event per flag changed, each counting the sessions the change
        // ended where it ends them (deactivating).
        let planned: Vec<(Uuid, AdminAction)> = actions
            .into_iter()
            .flatten()
            .map(|action| (Uuid::now_v7(), action))
            .collect();
        let (before, revoked) = self
            .change(actor, user_id, change, now, |before, revoked| {
                flag_events(&planned, actor, before, revoked, now)
                    .iter()
                    .map(AdminEvent::outbox_entry)
                    .collect()
            })
            .await?;
        for event in flag_events(&planned, actor, &before, revoked, now) {
            event.record();
        }
        Ok(Done {
            account: self.detail(user_id, now).await?,
            count: revoked,
        })
    }

    /// Clears the account's brute-force lock and the delays of every
    /// client address. [`Done::count`]: the counters cleared.
    pub async fn unlock(&self, actor: &Actor, user_id: i64, now: i64) -> Result<Done, Error> {
        let before = self.detail(user_id, now).await?;
        let id = Uuid::now_v7();
        let event = |cleared: u64| {
            let details = Details {
                counters_cleared: Some(cleared),
                ..Details::default()
            };
            AdminEvent::new(
                id,
                AdminAction::Unlock,
                actor,
                &before.account,
                now,
                details,
            )
        };
        let cleared = self
            .store
            .unlock_account(user_id, |cleared| vec![event(cleared).outbox_entry()])
            .await?;
        event(cleared).record();
        Ok(Done {
            account: self.detail(user_id, now).await?,
            count: cleared,
        })
    }

    /// Ends every session of the account: refresh tokens revoked, access
    /// tokens issued up to `now` no longer live. [`Done::count`]: the
    /// sessions that were open.
    pub async fn log_out(&self, actor: &Actor, user_id: i64, now: i64) -> Result<Done, Error> {
        let before = self.detail(user_id, now).await?;
        let id = Uuid::now_v7();
        let event = |revoked: u64| {
            let details = Details {
                sessions_revoked: Some(revoked),
                ..Details::default()
            };
            AdminEvent::new(
                id,
                AdminAction::Logout,
                actor,
                &before.account,
                now,
                details,
            )
        };
        let revoked = self
            .store
            .logout_user(user_id, now, |revoked| vec![event(revoked).outbox_entry()])
            .await?;
        event(revoked).record();
        Ok(Done {
            account: self.detail(user_id, now).await?,
            count: revoked,
        })
    }

    /// Mails a fresh verification code to an account that has not verified
    /// its email, under the code rules (one a minute per account), and
    /// waits for the mail server to take it. Returns the account and when
    /// the code expires.
    ///
    /// The action is the mail, which no transaction covers: its event is
    /// written once the mail server has taken the message (a code stored
    /// but never mailed is no action done). Should writing it fail, the
    /// call fails though the mail went out; the log line is then the only
    /// record.
    pub async fn resend_verification(
        &self,
        actor: &Actor,
        user_id: i64,
        now: i64,
    ) -> Result<(AccountDetail, i64), Error> {
        let detail = self.detail(user_id, now).await?;
        let account = &detail.account;
        let subject = format!("user:{}", account.id);
        if !account.unverified() {
            return Err(Error::Precondition {
                reason: "ALREADY_VERIFIED",
                subject,
                message: format!("{} has verified its email already.", account.username),
            });
        }
        if account.created_at < now - self.unverified_ttl {
            return Err(Error::Precondition {
                reason: "REGISTRATION_EXPIRED",
                subject,
                message: format!(
                    "{}'s registration has expired (AUTH_UNVERIFIED_TTL): it is deleted \
                     shortly and can register again.",
                    account.username
                ),
            });
        }
        let Some(code) =
            codes::issue(&self.store, CodePurpose::Verification, account.id, now).await?
        else {
            let since = self
                .store
                .code(CodePurpose::Verification, account.id)
                .await?
                .map_or(now, |c| c.created_at);
            return Err(Error::Throttled {
                retry_after: throttle::wait(since + codes::CODE_RESEND_SECS, now),
            });
        };
        let body = codes::verification_mail(&account.username, &code);
        if let Err(e) = self
            .mailer
            .send(
                &self.mail_from,
                &account.email,
                codes::VERIFICATION_SUBJECT,
                body,
            )
            .await
        {
            tracing::error!(user_id = account.id, error = %e, "verification mail failed");
            return Err(Error::Unavailable(
                "The mail server did not take the message; try again in a minute.",
            ));
        }
        let expires_at = now + codes::CODE_TTL_SECS;
        let details = Details {
            code_expires_at: Some(expires_at),
            ..Details::default()
        };
        let event = AdminEvent::new(
            Uuid::now_v7(),
            AdminAction::ResendVerification,
            actor,
            account,
            now,
            details,
        );
        event.record();
        self.store.record_admin_event(&event.outbox_entry()).await?;
        Ok((detail, expires_at))
    }

    /// Deletes the account (see [`AccountChange::Delete`]) and returns it
    /// as it was. Its login attempts stay in the audit log
    /// ([`ATTEMPTS_KEPT`]).
    pub async fn delete(
        &self,
        actor: &Actor,
        user_id: i64,
        now: i64,
    ) -> Result<AccountView, Error> {
        let id = Uuid::now_v7();
        let event = |before: &AccountView, revoked: u64| {
            let details = Details {
                sessions_revoked: Some(revoked),
                ..Details::default()
            };
            AdminEvent::new(id, AdminAction::Delete, actor, before, now, details).outbox_entry()
        };
        let (before, revoked) = self
            .change(
                actor,
                user_id,
                AccountChange::Delete,
                now,
                |before, revoked| vec![event(before, revoked)],
            )
            .await?;
        let details = Details {
            sessions_revoked: Some(revoked),
            ..Details::default()
        };
        AdminEvent::new(id, AdminAction::Delete, actor, &before, now, details).record();
        Ok(before)
    }

    /// Applies `change` under [`rules::check`], writing the outbox rows
    /// `record` makes (of the account before and the sessions revoked) in
    /// its transaction; the account before, and the sessions the change
    /// revoked.
    async fn change(
        &self,
        actor: &Actor,
        user_id: i64,
        change: AccountChange,
        now: i64,
        record: impl FnOnce(&AccountView, u64) -> Vec<AdminEventEntry> + Send,
    ) -> Result<(AccountView, u64), Error> {
        let acting = actor.admin_id();
        let outcome = self
            .store
            .change_account(
                user_id,
                change,
                now,
                |target, admins| {
                    rules::check(change, target, admins, acting)
                        .map_err(|refusal| (refusal, target.username.clone()))
                },
                record,
            )
            .await?;
        match outcome {
            ChangeOutcome::Changed {
                before,
                revoked_sessions,
            } => Ok((before, revoked_sessions)),
            ChangeOutcome::NotFound => Err(not_found(user_id)),
            ChangeOutcome::Refused((refusal, username)) => {
                tracing::info!(admin = acting, user_id, ?refusal, "account change refused");
                Err(refused(refusal, user_id, &username))
            }
        }
    }
}

/// The events of an update's `planned` actions on `before` (the account
/// before the change, which revoked `revoked` sessions).
fn flag_events<'a>(
    planned: &[(Uuid, AdminAction)],
    actor: &'a Actor,
    before: &'a AccountView,
    revoked: u64,
    now: i64,
) -> Vec<AdminEvent<'a>> {
    planned
        .iter()
        .map(|&(id, action)| {
            let details = Details {
                sessions_revoked: (action == AdminAction::Deactivate).then_some(revoked),
                ..Details::default()
            };
            AdminEvent::new(id, action, actor, before, now, details)
        })
        .collect()
}

fn not_found(user_id: i64) -> Error {
    Error::NotFound(format!("No user with id {user_id}."))
}

fn refused(refusal: rules::Refusal, user_id: i64, username: &str) -> Error {
    let subject = format!("user:{user_id}");
    match refusal {
        rules::Refusal::LastAdmin => Error::Precondition {
            reason: "LAST_ADMIN",
            subject,
            message: format!(
                "{username} is the last active administrator: make another account an \
                 administrator first."
            ),
        },
        rules::Refusal::NotVerified => Error::Precondition {
            reason: "NOT_VERIFIED",
            subject,
            message: format!(
                "{username} has not verified its email; send a verification code instead \
                 (activating would skip the proof that the mailbox owner chose its password)."
            ),
        },
        rules::Refusal::ActorNotAdmin => Error::PermissionDenied,
    }
}

//! User administration (issue #16): the use cases an administrator runs
//! through `auth.v1.AdminService` and an operator through
//! `auth-service user …`, on one set of rules.
//!
//! Each action takes the [`Actor`] (who, and from where) and the instant it
//! runs at, and records an [`events::AdminEvent`] once done. A change that
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

pub use actor::{Actor, Who};
pub use events::{AdminAction, AdminEvent};
pub use query::{ListRequest, UserQuery};

use crate::{
    codes,
    domain::FieldError,
    error::Error,
    mail::Mailer,
    store::{AccountChange, AccountDetail, AccountView, AuthStore, ChangeOutcome, CodePurpose},
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
        let (before, revoked) = self.change(actor, user_id, change, now).await?;
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
        for action in actions.into_iter().flatten() {
            event(action, actor, &before, now).record();
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
        let cleared = self.store.unlock_account(user_id).await?;
        event(AdminAction::Unlock, actor, &before.account, now).record();
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
        let revoked = self.store.logout_user(user_id, now).await?;
        event(AdminAction::Logout, actor, &before.account, now).record();
        Ok(Done {
            account: self.detail(user_id, now).await?,
            count: revoked,
        })
    }

    /// Mails a fresh verification code to an account that has not verified
    /// its email, under the code rules (one a minute per account), and
    /// waits for the mail server to take it. Returns the account and when
    /// the code expires.
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
        event(AdminAction::ResendVerification, actor, account, now).record();
        Ok((detail, now + codes::CODE_TTL_SECS))
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
        let (before, _) = self
            .change(actor, user_id, AccountChange::Delete, now)
            .await?;
        event(AdminAction::Delete, actor, &before, now).record();
        Ok(before)
    }

    /// Applies `change` under [`rules::check`]; the account before, and the
    /// sessions the change revoked.
    async fn change(
        &self,
        actor: &Actor,
        user_id: i64,
        change: AccountChange,
        now: i64,
    ) -> Result<(AccountView, u64), Error> {
        let acting = actor.admin_id();
        let outcome = self
            .store
            .change_account(user_id, change, now, |target, admins| {
                rules::check(change, target, admins, acting)
                    .map_err(|refusal| (refusal, target.username.clone()))
            })
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

/// The event of `action` on `target` by `actor` at `at`.
fn event<'a>(
    action: AdminAction,
    actor: &'a Actor,
    target: &'a AccountView,
    at: i64,
) -> AdminEvent<'a> {
    AdminEvent {
        action,
        actor,
        target_id: target.id,
        target_username: &target.username,
        at,
    }
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

//! `auth-service user …`: user administration for an operator at the
//! command line, on the database in `AUTH_DATABASE_URL` directly (opened as
//! the other operator commands open it: never created). The same use cases
//! and rules as `auth.v1.AdminService` ([`crate::users`]), the last-admin
//! rule included; the actor is the operator (`$USER`).

use std::fmt::Write as _;

use clap::{Args, Subcommand};

use crate::{
    admin::with_store,
    config::Config,
    domain::FieldError,
    error::Error,
    mail::Mailer,
    store::{AccountDetail, AccountView, AuthStore, StoreError},
    users::{Actor, FlagChange, ListRequest, UserAdmin, UserQuery},
};

/// What `auth-service user` does.
#[derive(Debug, Clone, Subcommand)]
pub enum UserCommand {
    /// List accounts, newest first.
    List {
        /// Only accounts whose username or email contains this (any case).
        #[arg(long, short)]
        query: Option<String>,
        /// Only accounts that may log in (true) or the others (false).
        #[arg(long, value_name = "BOOL")]
        active: Option<bool>,
        /// Only administrators (true) or the others (false).
        #[arg(long, value_name = "BOOL")]
        admin: Option<bool>,
        /// Only verified (true) or unverified (false) accounts.
        #[arg(long, value_name = "BOOL")]
        verified: Option<bool>,
        /// Accounts per page (1-500).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Continue from where the previous page said.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show one account: state, dates, lock and sessions.
    Show(Target),
    /// Let a (verified) account log in again.
    Activate(Target),
    /// Stop an account from logging in and end all its sessions.
    Deactivate(Target),
    /// Make an account an administrator.
    GrantAdmin(Target),
    /// Take administrator rights away (never from the last active one).
    RevokeAdmin(Target),
    /// Lift a brute-force lock and the per-address delays.
    Unlock(Target),
    /// End every session of an account (it may log in again).
    Logout(Target),
    /// Mail a fresh verification code to an unverified account.
    ResendVerification(Target),
    /// Delete an account (its login attempts stay in the audit log).
    Delete {
        #[command(flatten)]
        target: Target,
        /// Really delete it.
        #[arg(long)]
        yes: bool,
    },
}

/// The account a command acts on.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// The account's username or email.
    #[arg(required_unless_present = "id", conflicts_with = "id")]
    pub user: Option<String>,
    /// The account's id instead.
    #[arg(long)]
    pub id: Option<i64>,
}

/// The user administration as the operator at this command line (`$USER`)
/// uses it, and the instant it acts at: every operator command that
/// changes an account goes through it, so each change is an admin event.
pub(crate) fn as_operator<S: AuthStore>(
    config: &Config,
    store: S,
) -> anyhow::Result<(UserAdmin<S>, Actor, i64)> {
    let mailer = Mailer::new(
        config.smtp_url.as_ref().map(|s| s.expose()),
        config.mail_dir.clone(),
    )?;
    let users = UserAdmin::new(
        store,
        mailer,
        config.mail_from.parse()?,
        config.unverified_ttl,
    );
    let actor = Actor::operator(std::env::var("USER").ok().filter(|u| !u.is_empty()));
    Ok((
        users,
        actor,
        time::OffsetDateTime::now_utc().unix_timestamp(),
    ))
}

/// Runs `command` on the configured database; the text to print.
pub async fn run(config: &Config, command: UserCommand) -> anyhow::Result<String> {
    let location = common::database::location(config.database_url.expose());
    with_store!(config, |store| on_store(config, store, command, &location)
        .await)
}

async fn on_store<S: AuthStore>(
    config: &Config,
    store: S,
    command: UserCommand,
    location: &str,
) -> anyhow::Result<String> {
    let (users, actor, now) = as_operator(config, store.clone())?;
    let flags = |is_active, is_staff| FlagChange {
        is_active,
        is_staff,
    };
    let out = match command {
        UserCommand::List {
            query,
            active,
            admin,
            verified,
            limit,
            cursor,
        } => {
            let query = UserQuery::parse(&ListRequest {
                q: query.as_deref().unwrap_or(""),
                is_active: active,
                is_staff: admin,
                verified,
                limit,
                cursor: cursor.as_deref().unwrap_or(""),
            })
            .map_err(|e| explain(Error::Invalid(e)))?;
            let page = users.list(&actor, &query).await.map_err(explain)?;
            table(&page.accounts, page.next_cursor.as_deref())
        }
        UserCommand::Show(target) => {
            let id = resolve(&store, &target).await?;
            detail(&users.detail(id, now).await.map_err(explain)?)
        }
        UserCommand::Activate(target) => {
            let id = resolve(&store, &target).await?;
            let done = users
                .update(&actor, id, flags(Some(true), None), now)
                .await
                .map_err(explain)?;
            format!("activated {} in {location}\n", name(&done.account.account))
        }
        UserCommand::Deactivate(target) => {
            let id = resolve(&store, &target).await?;
            let done = users
                .update(&actor, id, flags(Some(false), None), now)
                .await
                .map_err(explain)?;
            format!(
                "deactivated {} in {location}: {} session(s) ended\n",
                name(&done.account.account),
                done.count
            )
        }
        UserCommand::GrantAdmin(target) => {
            let id = resolve(&store, &target).await?;
            let done = users
                .update(&actor, id, flags(None, Some(true)), now)
                .await
                .map_err(explain)?;
            let account = &done.account.account;
            let note = if account.is_active {
                ""
            } else {
                "; it cannot log in until it is active"
            };
            format!(
                "{} is an administrator in {location} (its tokens say so from its next login \
                 or refresh){note}\n",
                name(account)
            )
        }
        UserCommand::RevokeAdmin(target) => {
            let id = resolve(&store, &target).await?;
            let done = users
                .update(&actor, id, flags(None, Some(false)), now)
                .await
                .map_err(explain)?;
            format!(
                "{} is no longer an administrator in {location}\n",
                name(&done.account.account)
            )
        }
        UserCommand::Unlock(target) => {
            let id = resolve(&store, &target).await?;
            let done = users.unlock(&actor, id, now).await.map_err(explain)?;
            format!(
                "unlocked {} in {location}: {} counter(s) cleared\n",
                name(&done.account.account),
                done.count
            )
        }
        UserCommand::Logout(target) => {
            let id = resolve(&store, &target).await?;
            let done = users.log_out(&actor, id, now).await.map_err(explain)?;
            format!(
                "logged {} out everywhere in {location}: {} session(s) ended\n",
                name(&done.account.account),
                done.count
            )
        }
        UserCommand::ResendVerification(target) => {
            let id = resolve(&store, &target).await?;
            let (detail, expires) = users
                .resend_verification(&actor, id, now)
                .await
                .map_err(explain)?;
            format!(
                "mailed a verification code to {} <{}>; it expires at {}\n",
                name(&detail.account),
                detail.account.email,
                when(Some(expires))
            )
        }
        UserCommand::Delete { target, yes } => {
            let id = resolve(&store, &target).await?;
            if !yes {
                let account = users.detail(id, now).await.map_err(explain)?.account;
                anyhow::bail!(
                    "not deleting {} <{}> without --yes (nothing was changed)",
                    name(&account),
                    account.email
                );
            }
            let before = users.delete(&actor, id, now).await.map_err(explain)?;
            format!(
                "deleted {} <{}> from {location}; its login attempts stay in the audit log\n",
                name(&before),
                before.email
            )
        }
    };
    Ok(out)
}

/// The id of the account `target` names.
async fn resolve<S: AuthStore>(store: &S, target: &Target) -> anyhow::Result<i64> {
    match (&target.id, &target.user) {
        (Some(id), _) => crate::users::query::user_id("--id", *id)
            .map_err(|e| anyhow::anyhow!("{}: {}", e.field, e.message)),
        (None, Some(login)) => Ok(store
            .user_by_login(login)
            .await
            .map_err(|e: StoreError| anyhow::Error::new(e))?
            .ok_or_else(|| anyhow::anyhow!("no account {login:?}"))?
            .id),
        (None, None) => anyhow::bail!("name the account: a username, an email or --id"),
    }
}

/// A use case's refusal as one line for an operator.
pub(crate) fn explain(e: Error) -> anyhow::Error {
    match e {
        Error::Invalid(fields) => anyhow::anyhow!("{}", fields_text(&fields)),
        Error::Precondition { message, .. } => anyhow::anyhow!("refused: {message}"),
        Error::Throttled { retry_after } => {
            anyhow::anyhow!("refused: one code a minute per account; try again in {retry_after}s")
        }
        other => anyhow::Error::new(other),
    }
}

fn fields_text(fields: &[FieldError]) -> String {
    fields
        .iter()
        .map(|f| {
            let field = match f.field.as_str() {
                "q" => "--query",
                "limit" => "--limit",
                "cursor" => "--cursor",
                other => other,
            };
            format!("{field}: {}", f.message)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `alice (id 3)`.
fn name(account: &AccountView) -> String {
    format!("{} (id {})", account.username, account.id)
}

/// Unix seconds as RFC 3339 UTC; `-` for none.
fn when(at: Option<i64>) -> String {
    at.and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "-".to_owned())
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// Accounts as aligned columns, and how to ask for the next page.
fn table(accounts: &[AccountView], next: Option<&str>) -> String {
    if accounts.is_empty() {
        return "no accounts match\n".to_owned();
    }
    let header = [
        "ID",
        "USERNAME",
        "EMAIL",
        "ACTIVE",
        "ADMIN",
        "VERIFIED",
        "JOINED",
        "LAST LOGIN",
    ];
    let rows: Vec<[String; 8]> = accounts
        .iter()
        .map(|a| {
            [
                a.id.to_string(),
                a.username.clone(),
                a.email.clone(),
                yes_no(a.is_active).to_owned(),
                yes_no(a.is_staff).to_owned(),
                yes_no(a.verified_at.is_some()).to_owned(),
                when(Some(a.created_at)),
                when(a.last_login_at),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let text: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(out, "{}", text.join("  ").trim_end());
    };
    line(&header);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    if let Some(cursor) = next {
        let _ = writeln!(out, "more: run again with --cursor {cursor}");
    }
    out
}

/// One account, a field a line.
fn detail(d: &AccountDetail) -> String {
    let a = &d.account;
    let locked = match d.locked_until {
        Some(until) => format!("until {}", when(Some(until))),
        None => "no".to_owned(),
    };
    let verified = match a.verified_at {
        Some(at) => format!("yes, {}", when(Some(at))),
        None => "no".to_owned(),
    };
    let last_login = match a.last_login_at {
        Some(at) => when(Some(at)),
        None => "never (or not since it was recorded)".to_owned(),
    };
    format!(
        "user {} {} <{}>\n  active:          {}\n  administrator:   {}\n  email verified:  {}\n  \
         joined:          {}\n  last login:      {}\n  locked:          {}\n  delayed clients: {}\n  \
         active sessions: {}\n",
        a.id,
        a.username,
        a.email,
        yes_no(a.is_active),
        yes_no(a.is_staff),
        verified,
        when(Some(a.created_at)),
        last_login,
        locked,
        d.delayed_clients,
        d.active_sessions
    )
}

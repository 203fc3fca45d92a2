//! `auth-service import-django` (issue #15): the Django service's users and
//! login log, brought into this system.
//!
//! A run reads the Django database read-only, in one snapshot
//! ([`source`]), and judges every row first ([`rows`]): if any value
//! cannot be mapped, it refuses, naming each row and field, and writes
//! nothing. Then it imports in batches, each one transaction: accounts
//! with their claimed names and the record of which Django account each
//! became, then log rows into the attempt outbox with the watermark of how
//! far the log has been queued. A run that stops leaves whole batches; the
//! next run skips what is there and goes on, so a second run adds nothing.
//! Log rows reach audit-service the way every attempt does: auth-service's
//! forwarder streams the outbox.
//!
//! Accounts:
//! - the password hash is kept as is (Django hashes verify at login and
//!   become argon2id on the first success; `password_nfkc` is false, since
//!   Django hashed the text as typed);
//! - active: verified at `activation_date`, else at `date_joined`;
//!   inactive with an `activation_date`: disabled (verified, cannot log
//!   in); inactive without: awaiting verification if it joined within
//!   `AUTH_UNVERIFIED_TTL`, else skipped (upkeep would delete it);
//! - `is_staff` is the admin flag (`is_superuser` alone is not);
//! - names are claimed as a registration claims them; a name (or a
//!   lookalike) another account holds — an older Django account, or one
//!   already here — is recorded as a collision, the way the start-up
//!   migration records one, and the account keeps working by its other
//!   names (see `store::sql::import`).
//!
//! Layout: [`clock`] reads Django's local times; [`source`] reads the
//! database; [`rows`] judges rows; [`report`] counts.

pub mod clock;
pub mod report;
pub mod rows;
pub mod source;

use prost::Message as _;
use proto::audit::v1::{Attempt, AttemptKind};
use uuid::Uuid;

use crate::store::{AuthStore, DjangoAccount, DjangoImport, OutboxEntry};
use clock::{LocalClock, Micros};
use report::{Report, SHOWN};
use rows::{DjangoLogin, DjangoUser, RowError};
use source::Source;

/// Rows read from the source per query, and written per transaction.
const BATCH: i64 = 500;

/// The namespace of imported log rows' event ids: row `n` of
/// `accounts_loginlog` is the UUIDv5 of `accounts_loginlog:n` in it, the
/// same on every run, so audit-service stores each row once however often
/// it is sent.
pub const EVENT_NAMESPACE: Uuid = Uuid::from_u128(0x6d1f_2a4e_93c5_4b7e_8a10_d1a6_0f15_e0c1);

/// Microseconds in a day.
const DAY_MICROS: Micros = 86_400 * 1_000_000;

/// audit-service's default retention, for the report's warning.
const DEFAULT_AUDIT_RETENTION_DAYS: i64 = 90;

/// The event id of log row `id`.
pub fn event_id(id: i64) -> Uuid {
    Uuid::new_v5(
        &EVENT_NAMESPACE,
        format!("accounts_loginlog:{id}").as_bytes(),
    )
}

/// What a run needs besides the two databases.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The zone naive times are read in.
    pub clock: LocalClock,
    /// Now, microseconds since the epoch (passed in, so tests can move it).
    pub now: Micros,
    /// `AUTH_UNVERIFIED_TTL` in seconds.
    pub unverified_ttl: i64,
}

/// Every refusal of the check pass, the first [`SHOWN`] kept.
#[derive(Debug, Default)]
struct Refusals {
    shown: Vec<RowError>,
    total: u64,
}

impl Refusals {
    fn add(&mut self, error: RowError) {
        self.total += 1;
        if self.shown.len() < SHOWN {
            self.shown.push(error);
        }
    }

    fn into_result(self) -> anyhow::Result<()> {
        if self.total == 0 {
            return Ok(());
        }
        let mut text = format!(
            "the Django database holds {} that cannot be imported; nothing was written. Fix \
             these rows there (or in a copy) and run again:",
            if self.total == 1 {
                "1 value".to_owned()
            } else {
                format!("{} values", self.total)
            }
        );
        for e in &self.shown {
            text.push_str(&format!("\n  {e}"));
        }
        if self.total > self.shown.len() as u64 {
            text.push_str(&format!(
                "\n  … and {} more",
                self.total - self.shown.len() as u64
            ));
        }
        anyhow::bail!(text)
    }
}

/// Imports everything `source` holds into `store` (see the module docs).
pub async fn run<S: AuthStore>(
    store: &S,
    source: &mut Source,
    settings: &Settings,
    source_name: &str,
    target_name: &str,
) -> anyhow::Result<Report> {
    let now_secs = settings.now.div_euclid(1_000_000);
    // Accounts from before claimed names get theirs first, so the claims
    // imported accounts meet are complete.
    crate::identities::migrate(store, now_secs).await?;
    let mut report = Report {
        source: source_name.to_owned(),
        target: target_name.to_owned(),
        time_zone: settings.clock.name().to_owned(),
        ..Report::default()
    };
    check(source, settings, &mut report).await?;
    import_users(store, source, settings, &mut report).await?;
    import_log(store, source, settings, &mut report).await?;
    Ok(report)
}

/// The check pass: every row judged, nothing written; refuses with every
/// value that cannot be mapped. Counts rows and times read by a rule.
async fn check(
    source: &mut Source,
    settings: &Settings,
    report: &mut Report,
) -> anyhow::Result<()> {
    let mut refusals = Refusals::default();
    let mut notes = Vec::new();
    let mut after = 0;
    loop {
        let page = source.users_after(after, BATCH).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for raw in page {
            report.users_read += 1;
            if let Err(e) = DjangoUser::parse(raw, &settings.clock, settings.now, &mut notes) {
                refusals.add(e);
            }
        }
        note(report, &mut notes);
    }
    let mut after = 0;
    loop {
        let page = source.logins_after(after, BATCH).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for raw in page {
            report.logins_read += 1;
            if let Err(e) = DjangoLogin::parse(raw, &settings.clock, settings.now, &mut notes) {
                refusals.add(e);
            }
        }
        note(report, &mut notes);
    }
    refusals.into_result()
}

/// Moves `notes` into the report's count and list.
fn note(report: &mut Report, notes: &mut Vec<rows::TimeNote>) {
    report.dst_count += notes.len() as u64;
    let room = SHOWN.saturating_sub(report.dst_notes.len());
    report.dst_notes.extend(notes.drain(..).take(room));
}

/// The account a Django user becomes, or `None` when it is skipped.
fn account(user: &DjangoUser, settings: &Settings) -> Option<DjangoAccount> {
    let secs = |micros: Micros| micros.div_euclid(1_000_000);
    let joined = secs(user.date_joined);
    let verified_at = match (user.is_active, user.activation_date) {
        (_, Some(activated)) => Some(secs(activated)),
        (true, None) => Some(joined),
        (false, None) => {
            // Still waiting for its code: kept while a new code can still
            // verify it, as a registration here would be.
            let now = secs(settings.now);
            if joined < now.saturating_sub(settings.unverified_ttl) {
                return None;
            }
            None
        }
    };
    Some(DjangoAccount {
        django_id: user.id,
        username: user.username.clone(),
        email: user.email.clone(),
        password_hash: user.password.clone(),
        is_active: user.is_active,
        is_staff: user.is_staff,
        created_at: joined,
        verified_at,
    })
}

async fn import_users<S: AuthStore>(
    store: &S,
    source: &mut Source,
    settings: &Settings,
    report: &mut Report,
) -> anyhow::Result<()> {
    let now_secs = settings.now.div_euclid(1_000_000);
    let mut after = 0;
    loop {
        let page = source.users_after(after, BATCH).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        let mut batch = Vec::with_capacity(page.len());
        for raw in page {
            // Judged already; a row that changed since is refused here.
            let user = DjangoUser::parse(raw, &settings.clock, settings.now, &mut Vec::new())
                .map_err(|e| anyhow::anyhow!("{e} (the row changed during the run)"))?;
            match account(&user, settings) {
                Some(account) => batch.push((user, account)),
                None => report.users_skipped_unverified += 1,
            }
        }
        let accounts: Vec<DjangoAccount> = batch.iter().map(|(_, a)| a.clone()).collect();
        let done = store.import_django_users(&accounts, now_secs).await?;
        for ((user, account), outcome) in batch.iter().zip(done) {
            match outcome {
                DjangoImport::AlreadyThere => report.users_already += 1,
                DjangoImport::Imported { collisions, .. } => {
                    report.users_imported += 1;
                    report.admins += u64::from(account.is_staff);
                    report.disabled +=
                        u64::from(!account.is_active && account.verified_at.is_some());
                    report.awaiting_verification += u64::from(account.verified_at.is_none());
                    report.unusable_passwords +=
                        u64::from(crate::hasher::django::is_unusable(&account.password_hash));
                    report.without_email += u64::from(account.email.is_empty());
                    report.superusers_not_staff += u64::from(user.is_superuser && !user.is_staff);
                    report.collisions += u64::from(collisions > 0);
                }
            }
        }
    }
    Ok(())
}

async fn import_log<S: AuthStore>(
    store: &S,
    source: &mut Source,
    settings: &Settings,
    report: &mut Report,
) -> anyhow::Result<()> {
    let now_secs = settings.now.div_euclid(1_000_000);
    let mut after = store.django_log_watermark().await?;
    loop {
        let page = source.logins_after(after, BATCH).await?;
        let Some(last) = page.last() else { break };
        let through = last.id;
        let mut logins = Vec::with_capacity(page.len());
        for raw in page {
            logins.push(
                DjangoLogin::parse(raw, &settings.clock, settings.now, &mut Vec::new())
                    .map_err(|e| anyhow::anyhow!("{e} (the row changed during the run)"))?,
            );
        }
        let mut django_ids: Vec<i64> = logins.iter().filter_map(|l| l.user_id).collect();
        django_ids.sort_unstable();
        django_ids.dedup();
        let accounts: std::collections::HashMap<i64, (i64, String)> = store
            .django_accounts(&django_ids)
            .await?
            .into_iter()
            .map(|(django_id, id, username)| (django_id, (id, username)))
            .collect();
        let old_before = settings.now - DEFAULT_AUDIT_RETENTION_DAYS * DAY_MICROS;
        let mut counted = Report::default();
        let entries: Vec<OutboxEntry> = logins
            .iter()
            .map(|login| {
                let account = login.user_id.and_then(|id| accounts.get(&id));
                counted.logins_without_user += u64::from(account.is_none());
                counted.user_agents_cut += u64::from(login.user_agent_cut);
                counted.logins_past_retention += u64::from(login.created_at < old_before);
                entry(login, account, now_secs)
            })
            .collect();
        match store
            .import_django_log(&entries, after, through, now_secs)
            .await?
        {
            Some(queued) => {
                report.logins_queued += queued;
                report.logins_without_user += counted.logins_without_user;
                report.user_agents_cut += counted.user_agents_cut;
                report.logins_past_retention += counted.logins_past_retention;
                after = through;
            }
            // Another run queued rows meanwhile: go on after them.
            None => {
                let moved = store.django_log_watermark().await?;
                anyhow::ensure!(
                    moved > after,
                    "the import's progress record (django_import_progress) went back to \
                     {moved}; was it edited? Nothing of this batch was written"
                );
                after = moved;
            }
        }
    }
    // Everything read and not queued now was queued by an earlier run.
    report.logins_already = report.logins_read.saturating_sub(report.logins_queued);
    Ok(())
}

/// The outbox entry of one log row: an attempt as auth-service would have
/// logged it, with the original's reason text and flag and the account's
/// id here (`None` when that account is not here).
fn entry(login: &DjangoLogin, account: Option<&(i64, String)>, now_secs: i64) -> OutboxEntry {
    let event_id = event_id(login.id).to_string();
    let attempt = Attempt {
        event_id: event_id.clone(),
        occurred_at: Some(prost_types::Timestamp {
            seconds: login.created_at.div_euclid(1_000_000),
            // rem_euclid is below 1,000,000, so the product fits an i32.
            nanos: i32::try_from(login.created_at.rem_euclid(1_000_000) * 1_000).unwrap_or(0),
        }),
        identifier: login.email.clone(),
        user_id: account.map(|(id, _)| *id),
        username: account.map(|(_, name)| name.clone()),
        email: login.email.clone(),
        successful: login.successful,
        reason: login.reason as i32,
        ip: login.ip.clone(),
        user_agent: login.user_agent.clone(),
        // Leads from a log row back to the original's row.
        request_id: format!("django-loginlog-{}", login.id),
        kind: AttemptKind::Login as i32,
        original_reject_reason: Some(login.original_reason.clone()),
        suspicious: Some(login.suspicious),
        imported: true,
        ..Default::default()
    };
    OutboxEntry {
        event_id,
        payload: attempt.encode_to_vec(),
        created_at: now_secs,
        occurred_micros: login.created_at,
        tally: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_rows_event_id_is_the_same_on_every_run_and_unique_per_row() {
        assert_eq!(event_id(1), event_id(1));
        assert_ne!(event_id(1), event_id(2));
        assert_eq!(event_id(1).get_version_num(), 5);
    }
}

//! What a run of `import-django` did, as the operator reads it.

use std::fmt;

use super::rows::TimeNote;

/// Most rows named in a refusal or in the list of times read by a rule.
pub const SHOWN: usize = 20;

/// The counts a run prints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Where the rows came from (no password).
    pub source: String,
    /// Where they went (no password).
    pub target: String,
    /// The zone naive times were read in.
    pub time_zone: String,
    /// `accounts_user` rows read.
    pub users_read: u64,
    /// Accounts created.
    pub users_imported: u64,
    /// Accounts an earlier run had created.
    pub users_already: u64,
    /// Never verified and joined longer ago than `AUTH_UNVERIFIED_TTL`:
    /// upkeep would delete them at once, so they are not created.
    pub users_skipped_unverified: u64,
    /// Of those imported: administrators (`is_staff`).
    pub admins: u64,
    /// Of those imported: verified once, then made inactive.
    pub disabled: u64,
    /// Of those imported: still waiting for their email to be verified.
    pub awaiting_verification: u64,
    /// Of those imported: with Django's unusable-password marker.
    pub unusable_passwords: u64,
    /// Of those imported: without an email.
    pub without_email: u64,
    /// Of those imported: superusers without `is_staff` (not admins).
    pub superusers_not_staff: u64,
    /// Of those imported: accounts with a name another account holds.
    pub collisions: u64,
    /// `accounts_loginlog` rows read.
    pub logins_read: u64,
    /// Rows queued into the outbox by this run.
    pub logins_queued: u64,
    /// Rows an earlier run had queued.
    pub logins_already: u64,
    /// Of those queued: rows whose account is not here (deleted in the
    /// original, skipped, or removed here since), sent without a user id.
    pub logins_without_user: u64,
    /// Of those queued: User-Agents cut to what the edge keeps.
    pub user_agents_cut: u64,
    /// Of those queued: rows older than audit-service's default retention.
    pub logins_past_retention: u64,
    /// Every time read with a DST rule (all of them are counted; the first
    /// [`SHOWN`] are listed).
    pub dst_notes: Vec<TimeNote>,
    /// How many there were in all.
    pub dst_count: u64,
}

impl Report {
    /// Whether this run wrote nothing.
    pub fn nothing_new(&self) -> bool {
        self.users_imported == 0 && self.logins_queued == 0
    }
}

/// `n` and `noun`, with an `s` unless it is one.
fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn utc(micros: i64) -> String {
    let nanos = i128::from(micros) * 1_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| micros.to_string())
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "import-django from {} into {} (naive times read in {})",
            self.source, self.target, self.time_zone
        )?;
        writeln!(
            f,
            "users: {} read; {} imported, {} already there, {} skipped",
            self.users_read, self.users_imported, self.users_already, self.users_skipped_unverified
        )?;
        if self.users_skipped_unverified > 0 {
            writeln!(
                f,
                "  skipped: {} never verified and joined longer ago than AUTH_UNVERIFIED_TTL \
                 (upkeep would delete them; they can register again)",
                count(self.users_skipped_unverified, "account")
            )?;
        }
        if self.users_imported > 0 {
            writeln!(
                f,
                "  of those imported: {}, {} disabled (verified, then made inactive), {} \
                 awaiting verification, {} with no usable password, {} without an email",
                count(self.admins, "administrator"),
                self.disabled,
                self.awaiting_verification,
                self.unusable_passwords,
                self.without_email
            )?;
        }
        if self.superusers_not_staff > 0 {
            writeln!(
                f,
                "  {} without is_staff imported as plain accounts: the original's log \
                 listing admitted staff only",
                count(self.superusers_not_staff, "superuser")
            )?;
        }
        if self.collisions > 0 {
            writeln!(
                f,
                "  name collisions: {} with a name (or a lookalike of one) an older account \
                 holds; the older keeps it. `auth-service name-collisions` lists them",
                count(self.collisions, "account")
            )?;
        }
        writeln!(
            f,
            "log rows: {} read; {} queued for audit-service, {} already there",
            self.logins_read, self.logins_queued, self.logins_already
        )?;
        if self.logins_without_user > 0 || self.user_agents_cut > 0 {
            writeln!(
                f,
                "  {} without a user id (no such account here), {} cut to {} characters",
                count(self.logins_without_user, "row"),
                count(self.user_agents_cut, "user agent"),
                super::rows::MAX_USER_AGENT_CHARS
            )?;
        }
        if self.logins_past_retention > 0 {
            writeln!(
                f,
                "  {} older than 90 days: audit-service deletes rows older than \
                 AUDIT_RETENTION_DAYS (default 90); set it to 0 (keep all) or high enough \
                 to keep them",
                count(self.logins_past_retention, "row")
            )?;
        }
        if self.dst_count > 0 {
            writeln!(
                f,
                "times adjusted for daylight saving time: {}",
                self.dst_count
            )?;
            for note in &self.dst_notes {
                writeln!(
                    f,
                    "  {} id {}, {} {:?}: {} -> {}",
                    note.table,
                    note.id,
                    note.field,
                    note.local,
                    note.adjustment.describe(),
                    utc(note.utc)
                )?;
            }
            if self.dst_count > self.dst_notes.len() as u64 {
                writeln!(
                    f,
                    "  … and {} more",
                    self.dst_count - self.dst_notes.len() as u64
                )?;
            }
        }
        if self.nothing_new() {
            writeln!(
                f,
                "nothing new to import: an earlier run brought everything over"
            )?;
        }
        Ok(())
    }
}

//! Admin events: administrators' actions on accounts (who did what to
//! which account, when, from where), ingested beside login attempts on the
//! same stream and stored in a table of their own.
//!
//! Raw protobuf enters only through [`NewAdminEvent::parse`] and
//! [`AdminFilter::parse`], as for attempts: free text is cleaned (never a
//! reason to lose an event), the fields a listing filters by must mean
//! what they say.

use std::net::IpAddr;

use proto::audit::v1 as pb;

use crate::{
    attempt::{
        Cursor, IpRange, MAX_EMAIL_CHARS, MAX_IP_CHARS, MAX_REQUEST_ID_CHARS, MAX_USER_AGENT_CHARS,
        MAX_USERNAME_CHARS, Micros, clean, event_id, filter_time, ip_key, micros_to_timestamp,
        occurred_at, timestamp_to_micros,
    },
    error::Error,
};

/// An admin event as validated for storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAdminEvent {
    /// Canonical (lowercase, hyphenated) UUID: the idempotency key.
    pub event_id: String,
    /// When the change was made.
    pub occurred_at: Micros,
    /// The action's code (`grant_admin`), never empty.
    pub action: String,
    /// The acting administrator's account id; `None` for an operator.
    pub actor_id: Option<i64>,
    /// The administrator's username or the operator's login.
    pub actor_name: String,
    /// `actor_name` folded for case-insensitive filtering.
    pub actor_name_lower: String,
    /// Done at the command line by an operator.
    pub operator: bool,
    /// The account acted on.
    pub target_id: i64,
    /// Its username at the time.
    pub target_username: String,
    /// `target_username` folded for case-insensitive filtering.
    pub target_username_lower: String,
    /// Its email at the time.
    pub target_email: String,
    /// The actor's client IP as text (empty when none).
    pub ip: String,
    /// `ip` as an [`ip_key`] (empty when not an address).
    pub ip_key: String,
    /// The actor's User-Agent.
    pub user_agent: Option<String>,
    /// Request id carried from the edge.
    pub request_id: String,
    /// Sessions the action ended.
    pub sessions_revoked: Option<i64>,
    /// Brute-force counters the action cleared.
    pub counters_cleared: Option<i64>,
    /// When a mailed code expires.
    pub code_expires_at: Option<Micros>,
}

/// An admin event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAdminEvent {
    /// Storage id, increasing with insertion.
    pub id: i64,
    /// The event itself.
    pub event: NewAdminEvent,
}

/// One page of admin events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminEventPage {
    /// In the listing's order.
    pub events: Vec<StoredAdminEvent>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

/// Folds a name the same way at ingest and in filters.
fn fold(name: &str) -> String {
    name.to_lowercase()
}

/// A count as stored: the columns are signed, and no count comes near.
fn count(raw: Option<u64>) -> Option<i64> {
    raw.map(|n| i64::try_from(n).unwrap_or(i64::MAX))
}

impl NewAdminEvent {
    /// Validates admin event `index` of a batch received at `now`; errors
    /// name `admin_events[index].<field>` and, after the event id, the
    /// event.
    ///
    /// `occurred_at` lies within the bounds attempts have (at most
    /// [`crate::attempt::MAX_AGE_MICROS`] before `now`,
    /// [`crate::attempt::MAX_FUTURE_MICROS`] after); the
    /// action is a known one; an operator's event has no `actor_id` and an
    /// administrator's has one; `target_id` is an account id (positive);
    /// `ip` is empty or an address.
    pub fn parse(index: usize, raw: pb::AdminEvent, now: Micros) -> Result<Self, Error> {
        let field = |name: &str| format!("admin_events[{index}].{name}");
        let event_id = event_id(&raw.event_id, field)?;
        let invalid = |name: &str, reason| Error::InvalidAttempt {
            field: field(name),
            reason,
            event_id: event_id.clone(),
        };
        let occurred_at = occurred_at(raw.occurred_at.as_ref(), now, false)
            .map_err(|reason| invalid("occurred_at", reason))?;
        let action = pb::AdminAction::try_from(raw.action)
            .ok()
            .filter(|a| *a != pb::AdminAction::Unspecified)
            .ok_or_else(|| invalid("action", "must be one of the known actions"))?;
        match (raw.operator, raw.actor_id) {
            (true, Some(_)) => return Err(invalid("actor_id", "must be unset for an operator")),
            (false, None) => {
                return Err(invalid(
                    "actor_id",
                    "is required unless the actor is an operator",
                ));
            }
            _ => {}
        }
        if raw.target_id <= 0 {
            return Err(invalid("target_id", "must be an account id (positive)"));
        }
        let ip = clean(raw.ip, MAX_IP_CHARS);
        if !ip.is_empty() && ip.parse::<IpAddr>().is_err() {
            return Err(invalid("ip", "must be empty or an IP address"));
        }
        let code_expires_at = raw
            .code_expires_at
            .as_ref()
            .map(|ts| {
                timestamp_to_micros(ts).ok_or_else(|| {
                    invalid(
                        "code_expires_at",
                        "must be a valid time between years 1 and 9999",
                    )
                })
            })
            .transpose()?;
        let actor_name = clean(raw.actor_name, MAX_USERNAME_CHARS);
        let target_username = clean(raw.target_username, MAX_USERNAME_CHARS);
        Ok(Self {
            event_id,
            occurred_at,
            action: action.code().to_owned(),
            actor_id: raw.actor_id,
            actor_name_lower: fold(&actor_name),
            actor_name,
            operator: raw.operator,
            target_id: raw.target_id,
            target_username_lower: fold(&target_username),
            target_username,
            target_email: clean(raw.target_email, MAX_EMAIL_CHARS),
            ip_key: ip_key(&ip),
            ip,
            user_agent: raw.user_agent.map(|ua| clean(ua, MAX_USER_AGENT_CHARS)),
            request_id: clean(raw.request_id, MAX_REQUEST_ID_CHARS),
            sessions_revoked: count(raw.sessions_revoked),
            counters_cleared: count(raw.counters_cleared),
            code_expires_at,
        })
    }

    /// Validates a batch's admin events before anything is written.
    pub fn parse_batch(raw: Vec<pb::AdminEvent>, now: Micros) -> Result<Vec<Self>, Error> {
        raw.into_iter()
            .enumerate()
            .map(|(i, e)| Self::parse(i, e, now))
            .collect()
    }
}

impl From<NewAdminEvent> for pb::AdminEvent {
    fn from(e: NewAdminEvent) -> Self {
        Self {
            event_id: e.event_id,
            occurred_at: Some(micros_to_timestamp(e.occurred_at)),
            action: pb::AdminAction::from_code(&e.action).unwrap_or_default() as i32,
            actor_id: e.actor_id,
            actor_name: e.actor_name,
            operator: e.operator,
            target_id: e.target_id,
            target_username: e.target_username,
            target_email: e.target_email,
            ip: e.ip,
            user_agent: e.user_agent,
            request_id: e.request_id,
            sessions_revoked: e.sessions_revoked.and_then(|n| u64::try_from(n).ok()),
            counters_cleared: e.counters_cleared.and_then(|n| u64::try_from(n).ok()),
            code_expires_at: e.code_expires_at.map(micros_to_timestamp),
        }
    }
}

impl From<StoredAdminEvent> for pb::AdminEventRecord {
    fn from(s: StoredAdminEvent) -> Self {
        Self {
            id: s.id,
            event: Some(s.event.into()),
        }
    }
}

/// Which admin events a listing returns; `None` fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminFilter {
    /// One action's code.
    pub action: Option<String>,
    /// The acting administrator's id.
    pub actor_id: Option<i64>,
    /// The actor's name, folded.
    pub actor_name_lower: Option<String>,
    /// Only operators' (`true`) or administrators' (`false`) events.
    pub operator: Option<bool>,
    /// The account acted on.
    pub target_id: Option<i64>,
    /// The account's username at the time, folded.
    pub target_username_lower: Option<String>,
    /// The actor's IP or CIDR block, as a range of [`ip_key`]s.
    pub ip: Option<IpRange>,
    /// `occurred_at >= since`.
    pub since: Option<Micros>,
    /// `occurred_at < until`.
    pub until: Option<Micros>,
}

impl AdminFilter {
    /// The filters of a listing request (none when absent).
    pub fn parse(req: Option<&pb::AdminEventFilter>) -> Result<Self, Error> {
        let Some(req) = req else {
            return Ok(Self::default());
        };
        // A NUL can match no stored name (ingest drops them) and PostgreSQL
        // refuses it in text, so it is the caller's mistake, said as such.
        let name = |field: &str, raw: Option<&String>| {
            raw.map(|raw| {
                if raw.contains('\0') {
                    Err(Error::invalid(field, "must not contain NUL"))
                } else if raw.chars().count() > MAX_USERNAME_CHARS {
                    Err(Error::invalid(field, "must be at most 150 characters"))
                } else {
                    Ok(fold(raw))
                }
            })
            .transpose()
        };
        let action = req
            .action
            .map(|a| {
                pb::AdminAction::try_from(a)
                    .ok()
                    .filter(|a| *a != pb::AdminAction::Unspecified)
                    .map(|a| a.code().to_owned())
                    .ok_or_else(|| Error::invalid("action", "must be one of the known actions"))
            })
            .transpose()?;
        let ip = req
            .ip
            .as_deref()
            .map(|raw| {
                IpRange::parse(raw)
                    .ok_or_else(|| Error::invalid("ip", "must be an IP address or a CIDR block"))
            })
            .transpose()?;
        Ok(Self {
            action,
            actor_id: req.actor_id,
            actor_name_lower: name("actor_name", req.actor_name.as_ref())?,
            operator: req.operator,
            target_id: req.target_id,
            target_username_lower: name("target_username", req.target_username.as_ref())?,
            ip,
            since: filter_time("since", req.since.as_ref())?,
            until: filter_time("until", req.until.as_ref())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attempt::{MAX_AGE_MICROS, MAX_FUTURE_MICROS};

    /// The receiving clock in these tests.
    const NOW: Micros = 1_700_000_060_000_000;

    fn raw_event() -> pb::AdminEvent {
        pb::AdminEvent {
            event_id: "0190B1F4-0000-7000-8000-000000000001".into(),
            occurred_at: Some(micros_to_timestamp(NOW - 60_000_000)),
            action: pb::AdminAction::Deactivate as i32,
            actor_id: Some(1),
            actor_name: "Root".into(),
            operator: false,
            target_id: 7,
            target_username: "Alice".into(),
            target_email: "alice@example.com".into(),
            ip: "::ffff:10.0.0.1".into(),
            user_agent: Some("curl/8".into()),
            request_id: "req-1".into(),
            sessions_revoked: Some(2),
            counters_cleared: None,
            code_expires_at: None,
        }
    }

    fn refusal(raw: pb::AdminEvent) -> String {
        NewAdminEvent::parse(3, raw, NOW).unwrap_err().to_string()
    }

    #[test]
    fn a_good_event_is_kept_with_canonical_id_and_folded_names() {
        let e = NewAdminEvent::parse(0, raw_event(), NOW).unwrap();
        assert_eq!(e.event_id, "0190b1f4-0000-7000-8000-000000000001");
        assert_eq!(e.action, "deactivate");
        assert_eq!(e.actor_name_lower, "root");
        assert_eq!(e.target_username_lower, "alice");
        assert_eq!(e.ip_key, ip_key("10.0.0.1"));
        assert_eq!(e.sessions_revoked, Some(2));
        let back = pb::AdminEvent::from(e);
        assert_eq!(back.action, pb::AdminAction::Deactivate as i32);
        assert_eq!(back.sessions_revoked, Some(2));
    }

    #[test]
    fn bad_fields_are_refused_naming_the_event_and_the_field() {
        let mut raw = raw_event();
        raw.event_id = "nope".into();
        assert_eq!(refusal(raw), "admin_events[3].event_id must be a UUID");
        /// A field's name and how to spoil it.
        type Spoil = (&'static str, fn(&mut pb::AdminEvent));
        let cases: [Spoil; 8] = [
            ("occurred_at", |r| r.occurred_at = None),
            ("occurred_at", |r| {
                r.occurred_at = Some(micros_to_timestamp(NOW + MAX_FUTURE_MICROS + 1));
            }),
            ("occurred_at", |r| {
                r.occurred_at = Some(micros_to_timestamp(NOW - MAX_AGE_MICROS - 1));
            }),
            ("action", |r| r.action = 0),
            ("action", |r| r.action = 99),
            ("actor_id", |r| r.operator = true),
            ("target_id", |r| r.target_id = 0),
            ("ip", |r| r.ip = "10.0.0.300".into()),
        ];
        for (name, spoil) in cases {
            let mut raw = raw_event();
            spoil(&mut raw);
            let message = refusal(raw);
            assert!(
                message.starts_with(&format!("admin_events[3].{name} ")),
                "{message}"
            );
            assert!(
                message.ends_with("(event_id 0190b1f4-0000-7000-8000-000000000001)"),
                "{message}"
            );
        }
        let mut raw = raw_event();
        raw.actor_id = None;
        assert!(refusal(raw).starts_with("admin_events[3].actor_id is required"));
    }

    #[test]
    fn free_text_is_cleaned_not_refused() {
        let mut raw = raw_event();
        raw.target_username = format!("a\0b{}", "x".repeat(500));
        raw.user_agent = Some("\0".repeat(10));
        raw.operator = true;
        raw.actor_id = None;
        raw.actor_name = String::new();
        let e = NewAdminEvent::parse(0, raw, NOW).unwrap();
        assert!(e.target_username.starts_with("abx"));
        assert_eq!(e.target_username.chars().count(), MAX_USERNAME_CHARS);
        assert_eq!(e.user_agent.as_deref(), Some(""));
        assert!(e.operator);
    }

    #[test]
    fn bad_filters_name_the_field() {
        let check = |filter: pb::AdminEventFilter, field: &str| {
            let err = AdminFilter::parse(Some(&filter)).unwrap_err().to_string();
            assert!(err.starts_with(field), "{err}");
        };
        check(
            pb::AdminEventFilter {
                action: Some(0),
                ..Default::default()
            },
            "action",
        );
        check(
            pb::AdminEventFilter {
                ip: Some("1.2.3".into()),
                ..Default::default()
            },
            "ip",
        );
        check(
            pb::AdminEventFilter {
                actor_name: Some("a\0".into()),
                ..Default::default()
            },
            "actor_name",
        );
        check(
            pb::AdminEventFilter {
                target_username: Some("x".repeat(151)),
                ..Default::default()
            },
            "target_username",
        );
        assert_eq!(AdminFilter::parse(None).unwrap(), AdminFilter::default());
        let f = AdminFilter::parse(Some(&pb::AdminEventFilter {
            target_username: Some("ÄLICE".into()),
            action: Some(pb::AdminAction::GrantAdmin as i32),
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(f.target_username_lower.as_deref(), Some("älice"));
        assert_eq!(f.action.as_deref(), Some("grant_admin"));
    }
}

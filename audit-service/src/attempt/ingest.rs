//! Validating an ingested attempt: free text is cleaned, the fields the
//! log filters and counts by must mean what they say.

use std::net::IpAddr;

use proto::audit::v1 as pb;
use uuid::Uuid;

use super::{
    MAX_EMAIL_CHARS, MAX_IP_CHARS, MAX_ORIGINAL_REASON_CHARS, MAX_REQUEST_ID_CHARS,
    MAX_USER_AGENT_CHARS, MAX_USERNAME_CHARS, Micros, NewAttempt, fold_email, ip_key,
    timestamp_to_micros,
};
use crate::error::Error;

/// A producer's event id in its canonical form (the idempotency key of
/// attempts and admin events alike); `field` names it in the error.
pub(crate) fn event_id(raw: &str, field: impl Fn(&str) -> String) -> Result<String, Error> {
    Ok(Uuid::parse_str(raw)
        .map_err(|_| Error::invalid(field("event_id"), "must be a UUID"))?
        .hyphenated()
        .to_string())
}

/// When a received event occurred, as the log accepts it: present, a real
/// time, at most [`MAX_FUTURE_MICROS`] after `now` and (unless `old_ok`:
/// imported history) at most [`MAX_AGE_MICROS`] before; else why not.
pub(crate) fn occurred_at(
    ts: Option<&prost_types::Timestamp>,
    now: Micros,
    old_ok: bool,
) -> Result<Micros, &'static str> {
    let at = timestamp_to_micros(ts.ok_or("is required")?)
        .ok_or("must be a valid time between years 1 and 9999")?;
    if at > now.saturating_add(MAX_FUTURE_MICROS) {
        return Err("is more than 5 minutes ahead of the log's clock");
    }
    if !old_ok && at < now.saturating_sub(MAX_AGE_MICROS) {
        return Err("is more than 366 days old");
    }
    Ok(at)
}

/// Makes producer text storable instead of rejecting it, so no attempt is
/// ever lost to formatting: NUL (which PostgreSQL text refuses) is dropped,
/// and overlong text is cut at a character boundary. Admin events are
/// cleaned the same way, and filters go through it too, so a filter value
/// means what the same text sent at ingest would.
pub(crate) fn clean(text: String, max_chars: usize) -> String {
    if !text.contains('\0') && text.len() <= max_chars {
        return text;
    }
    text.chars()
        .filter(|&c| c != '\0')
        .take(max_chars)
        .collect()
}

/// How far ahead of this host's clock an attempt may be dated: producers
/// stamp attempts with their own clock, and NTP keeps hosts within far
/// less than this, so more means a broken clock or a forged time that
/// would otherwise sit at the top of every listing.
pub const MAX_FUTURE_MICROS: Micros = 5 * 60 * 1_000_000;

/// How far behind this host's clock an attempt may be dated: 366 days.
///
/// auth-service keeps every attempt in its outbox until audit-service acks
/// it, with no expiry, so an attempt arrives as late as the longest outage
/// of audit-service (or of the network to it) lasts. An age bound shorter
/// than any outage someone could fail to notice would turn that outage into
/// refused, and so lost, attempts; a year is far beyond that, yet still
/// refuses the times of a broken clock (the epoch, year 1, a default date).
/// Retention later removes what is older than it keeps, as for any row.
///
/// An attempt marked `imported` (history brought over from another
/// system's log) is exempt: its age says nothing about a clock.
pub const MAX_AGE_MICROS: Micros = 366 * 24 * 3_600 * 1_000_000;

impl NewAttempt {
    /// Validates one attempt of a batch received at `now`; `index` names it
    /// in the error so the producer can find the bad row, and every error
    /// after the event id also names the event.
    ///
    /// Free text is cleaned rather than refused (see `clean`); the fields
    /// the log filters and counts by must mean what they say: `ip` is empty
    /// or an address, `reject_reason` is empty on success and one of
    /// `pb::RejectReason::FAILURES` on failure, and `occurred_at` lies between
    /// [`MAX_AGE_MICROS`] before (unless the attempt is `imported`) and
    /// [`MAX_FUTURE_MICROS`] after `now`.
    pub fn parse(index: usize, raw: pb::Attempt, now: Micros) -> Result<Self, Error> {
        let field = |name: &str| format!("attempts[{index}].{name}");
        let event_id = event_id(&raw.event_id, field)?;
        let invalid = |name: &str, reason| Error::InvalidAttempt {
            field: field(name),
            reason,
            event_id: event_id.clone(),
        };
        let occurred_at = occurred_at(raw.occurred_at.as_ref(), now, raw.imported)
            .map_err(|reason| invalid("occurred_at", reason))?;
        let (count, last_occurred_at) = tally(&raw, occurred_at, now, &invalid)?;
        let reason =
            reason_of(&raw).ok_or_else(|| invalid("reason", "must be one of the known reasons"))?;
        if raw.successful && reason != pb::RejectReason::Unspecified {
            return Err(invalid("reason", "must be unspecified on a success"));
        }
        if !raw.successful && reason == pb::RejectReason::Unspecified {
            return Err(invalid("reason", "is required on a failure"));
        }
        let reject_reason = reason.code().to_owned();
        // Unspecified (a producer from before kinds) is stored as a login.
        let kind = pb::AttemptKind::try_from(raw.kind)
            .map_err(|_| invalid("kind", "must be one of the known kinds"))?
            .code()
            .to_owned();
        let ip = clean(raw.ip, MAX_IP_CHARS);
        if !ip.is_empty() && ip.parse::<IpAddr>().is_err() {
            return Err(invalid("ip", "must be empty or an IP address"));
        }
        let email = clean(raw.email, MAX_EMAIL_CHARS);
        Ok(Self {
            event_id,
            occurred_at,
            identifier: clean(raw.identifier, MAX_EMAIL_CHARS),
            user_id: raw.user_id,
            username: raw.username.map(|u| clean(u, MAX_USERNAME_CHARS)),
            email_lower: fold_email(&email),
            email,
            successful: raw.successful,
            reject_reason,
            kind,
            ip_key: ip_key(&ip),
            ip,
            user_agent: raw.user_agent.map(|ua| clean(ua, MAX_USER_AGENT_CHARS)),
            request_id: clean(raw.request_id, MAX_REQUEST_ID_CHARS),
            count,
            last_occurred_at,
            original_reject_reason: raw
                .original_reject_reason
                .map(|r| clean(r, MAX_ORIGINAL_REASON_CHARS)),
            producer_suspicious: raw.suspicious,
        })
    }

    /// Validates a whole batch received at `now` before anything is
    /// written, so a bad batch leaves no partial trace.
    pub fn parse_batch(raw: Vec<pb::Attempt>, now: Micros) -> Result<Vec<Self>, Error> {
        raw.into_iter()
            .enumerate()
            .map(|(i, a)| Self::parse(i, a, now))
            .collect()
    }
}

/// The reason `raw` gives: its `reason`, or from a producer that predates
/// it, its text; `None` when it names none the log knows.
#[allow(deprecated)]
fn reason_of(raw: &pb::Attempt) -> Option<pb::RejectReason> {
    if raw.reason != 0 {
        return pb::RejectReason::try_from(raw.reason).ok();
    }
    let legacy = raw.legacy_reject_reason.replace('\0', "");
    if legacy.is_empty() {
        return Some(pb::RejectReason::Unspecified);
    }
    pb::RejectReason::from_code(&legacy)
}

/// The count and last time of `raw`, whose first attempt is at
/// `occurred_at`: a count above 1 is a tally of failures, so a success
/// cannot have one, and its last time lies between its first and the
/// future bound; a count of 0 or 1 ignores the last time.
fn tally(
    raw: &pb::Attempt,
    occurred_at: Micros,
    now: Micros,
    invalid: &dyn Fn(&str, &'static str) -> Error,
) -> Result<(i64, Option<Micros>), Error> {
    if raw.count <= 1 {
        return Ok((1, None));
    }
    if raw.successful {
        return Err(invalid("count", "must be 0 or 1 on a success"));
    }
    let last = raw
        .last_occurred_at
        .as_ref()
        .ok_or_else(|| invalid("last_occurred_at", "is required when count > 1"))?;
    let last = timestamp_to_micros(last)
        .filter(|&t| t >= occurred_at && t <= now.saturating_add(MAX_FUTURE_MICROS))
        .ok_or_else(|| {
            invalid(
                "last_occurred_at",
                "must lie between occurred_at and 5 minutes ahead of the log's clock",
            )
        })?;
    Ok((i64::from(raw.count), Some(last)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attempt::micros_to_timestamp;
    use prost_types::Timestamp;

    /// The receiving clock in these tests: one minute after the attempt.
    const NOW: Micros = 1_700_000_060_000_000;

    fn raw_attempt() -> pb::Attempt {
        pb::Attempt {
            event_id: "0190F8A2-7C3B-7D4E-8F00-123456789ABC".into(),
            occurred_at: Some(Timestamp {
                seconds: 1_700_000_000,
                nanos: 123_456_789,
            }),
            email: "Alice@Example.COM".into(),
            reason: pb::RejectReason::BadPassword as i32,
            ..Default::default()
        }
    }

    #[test]
    fn event_ids_are_stored_in_canonical_form() {
        let a = NewAttempt::parse(0, raw_attempt(), NOW).unwrap();
        assert_eq!(a.event_id, "0190f8a2-7c3b-7d4e-8f00-123456789abc");
        assert_eq!(a.email, "Alice@Example.COM");
        assert_eq!(a.email_lower, "alice@example.com");
        assert_eq!(a.occurred_at, 1_700_000_000_123_456);
    }

    #[test]
    fn a_bad_event_id_names_the_row_and_field() {
        let mut raw = raw_attempt();
        raw.event_id = "nope".into();
        let err = NewAttempt::parse_batch(vec![raw_attempt(), raw], NOW).unwrap_err();
        assert!(err.to_string().contains("attempts[1].event_id"), "{err}");
    }

    /// The refusal of `raw` (row 2 of its batch) at `now`, as sent.
    fn refusal(raw: pb::Attempt, now: Micros) -> String {
        let fine = pb::Attempt {
            occurred_at: Some(micros_to_timestamp(now)),
            ..raw_attempt()
        };
        let batch = vec![fine.clone(), fine, raw];
        NewAttempt::parse_batch(batch, now).unwrap_err().to_string()
    }

    const EVENT: &str = "(event_id 0190f8a2-7c3b-7d4e-8f00-123456789abc)";

    #[test]
    fn an_ip_must_be_empty_or_an_address() {
        for ok in ["", "10.0.0.1", "2001:db8::1", "::ffff:10.0.0.1"] {
            let raw = pb::Attempt {
                ip: ok.into(),
                ..raw_attempt()
            };
            assert!(NewAttempt::parse(0, raw, NOW).is_ok(), "{ok}");
        }
        for bad in [
            "garbage",
            "1.2.3",
            " 10.0.0.1",
            "10.0.0.0/8",
            "fe80::1%eth0",
        ] {
            let raw = pb::Attempt {
                ip: bad.into(),
                ..raw_attempt()
            };
            let err = refusal(raw, NOW);
            assert!(err.starts_with("attempts[2].ip "), "{bad}: {err}");
            assert!(err.ends_with(EVENT), "{err}");
        }
    }

    /// `raw_attempt` failing with `reason`, spelled the current way.
    fn failing(reason: i32) -> pb::Attempt {
        pb::Attempt {
            reason,
            ..raw_attempt()
        }
    }

    /// `raw_attempt` failing with `reason`, spelled as producers did
    /// before `reason` existed (outbox rows of that time still do).
    #[allow(deprecated)]
    fn failing_legacy(reason: &str) -> pb::Attempt {
        pb::Attempt {
            reason: 0,
            legacy_reject_reason: reason.into(),
            ..raw_attempt()
        }
    }

    #[test]
    fn a_reason_is_unspecified_on_success_and_known_on_failure() {
        for reason in pb::RejectReason::FAILURES {
            for raw in [failing(reason as i32), failing_legacy(reason.code())] {
                let a = NewAttempt::parse(0, raw, NOW).unwrap();
                assert_eq!(a.reject_reason, reason.code());
            }
        }
        let success = pb::Attempt {
            successful: true,
            reason: 0,
            ..raw_attempt()
        };
        assert!(NewAttempt::parse(0, success.clone(), NOW).is_ok());
        for bad in [
            pb::Attempt {
                reason: pb::RejectReason::BadPassword as i32,
                ..success.clone()
            },
            pb::Attempt {
                successful: true,
                ..failing_legacy("bad_password")
            },
            failing(0),
            failing(99),
            failing_legacy("Bad_Password"),
            failing_legacy("bored"),
        ] {
            let err = refusal(bad, NOW);
            assert!(err.starts_with("attempts[2].reason "), "{err}");
            assert!(err.ends_with(EVENT), "{err}");
        }
    }

    #[test]
    fn a_time_must_lie_within_a_year_back_and_five_minutes_ahead() {
        let at = raw_attempt().occurred_at.unwrap();
        let at = timestamp_to_micros(&at).unwrap();
        // Exactly at each bound is accepted.
        for now in [at - MAX_FUTURE_MICROS, at + MAX_AGE_MICROS] {
            assert!(NewAttempt::parse(0, raw_attempt(), now).is_ok(), "{now}");
        }
        for now in [at - MAX_FUTURE_MICROS - 1, at + MAX_AGE_MICROS + 1] {
            let err = refusal(raw_attempt(), now);
            assert!(err.starts_with("attempts[2].occurred_at "), "{err}");
            assert!(err.ends_with(EVENT), "{err}");
        }
    }

    #[test]
    fn an_imported_attempt_may_be_years_old_but_not_in_the_future() {
        let at = timestamp_to_micros(&raw_attempt().occurred_at.unwrap()).unwrap();
        let imported = pb::Attempt {
            imported: true,
            ..raw_attempt()
        };
        let ten_years = 10 * MAX_AGE_MICROS;
        assert!(NewAttempt::parse(0, imported.clone(), at + ten_years).is_ok());
        let err = refusal(imported, at - MAX_FUTURE_MICROS - 1);
        assert!(err.starts_with("attempts[2].occurred_at "), "{err}");
    }

    #[test]
    fn the_producers_original_text_and_flag_are_kept() {
        let raw = pb::Attempt {
            original_reject_reason: Some(format!("Wrong\0 password{}", "!".repeat(500))),
            suspicious: Some(true),
            ..raw_attempt()
        };
        let a = NewAttempt::parse(0, raw, NOW).unwrap();
        let text = a.original_reject_reason.unwrap();
        assert!(text.starts_with("Wrong password!"), "{text}");
        assert_eq!(text.chars().count(), MAX_ORIGINAL_REASON_CHARS);
        assert_eq!(a.producer_suspicious, Some(true));
        assert_eq!(a.reject_reason, "bad_password");

        let live = NewAttempt::parse(0, raw_attempt(), NOW).unwrap();
        assert_eq!(live.original_reject_reason, None);
        assert_eq!(live.producer_suspicious, None);
    }

    #[test]
    fn long_text_is_truncated_on_a_char_boundary_and_nul_dropped() {
        let mut raw = raw_attempt();
        raw.user_agent = Some("é".repeat(600));
        raw.ip = "1.2.3.4\0".into();
        let a = NewAttempt::parse(0, raw, NOW).unwrap();
        assert_eq!(a.user_agent.unwrap().chars().count(), MAX_USER_AGENT_CHARS);
        assert_eq!(a.ip, "1.2.3.4");
    }
}

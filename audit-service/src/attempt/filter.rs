//! The filters of a listing or a tail, and the IP keys they range over.

use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;
use prost_types::Timestamp;
use proto::audit::v1 as pb;

use super::{
    MAX_EMAIL_CHARS, Micros, StoredAttempt, fold_email, ingest::clean, timestamp_to_micros,
};
use crate::error::Error;

/// Which attempts a listing or a tail returns; `None` fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only successes (`true`) or only failures (`false`).
    pub successful: Option<bool>,
    /// Client IP or CIDR, as a range of [`ip_key`]s.
    pub ip: Option<IpRange>,
    /// Email, already folded like [`NewAttempt::email_lower`].
    pub email_lower: Option<String>,
    /// `occurred_at >= since`.
    pub since: Option<Micros>,
    /// `occurred_at < until`.
    pub until: Option<Micros>,
    /// Exact identifier.
    pub identifier: Option<String>,
    /// The account's id.
    pub user_id: Option<i64>,
    /// A failure reason's code (`bad_password`).
    pub reason: Option<String>,
    /// Only flagged (`true`) or only unflagged (`false`) attempts.
    pub suspicious: Option<bool>,
    /// One kind's code (`password_reset`); unspecified means `login`, as
    /// it is stored.
    pub kind: Option<String>,
}

/// An inclusive range of [`ip_key`]s: one address, or a CIDR block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpRange {
    /// Key of the first address.
    pub lo: String,
    /// Key of the last address (equal to `lo` for one address).
    pub hi: String,
}

/// The stored, indexable form of an IP: 32 hex digits of its IPv6 form
/// (IPv4 as `::ffff:a.b.c.d`), so every spelling of one address has one key
/// and a CIDR block is a contiguous range. `""` when `ip` is no address.
pub fn ip_key(ip: &str) -> String {
    ip.trim()
        .parse::<IpAddr>()
        .map(|addr| hex_key(to_v6(addr)))
        .unwrap_or_default()
}

fn to_v6(addr: IpAddr) -> Ipv6Addr {
    match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

fn hex_key(addr: Ipv6Addr) -> String {
    format!("{:032x}", u128::from(addr))
}

impl IpRange {
    /// An address (`10.0.0.1`, `::1`) or a CIDR block (`10.0.0.0/8`).
    pub fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        if let Ok(addr) = raw.parse::<IpAddr>() {
            let key = hex_key(to_v6(addr));
            return Some(Self {
                lo: key.clone(),
                hi: key,
            });
        }
        let net: IpNet = raw.parse().ok()?;
        Some(Self {
            lo: hex_key(to_v6(net.network())),
            hi: hex_key(to_v6(net.broadcast())),
        })
    }

    /// Whether `key` (an [`ip_key`]) falls in the range.
    pub fn contains(&self, key: &str) -> bool {
        !key.is_empty() && self.lo.as_str() <= key && key <= self.hi.as_str()
    }
}

/// A `since`/`until` bound of a listing's filters (absent: no bound).
pub(crate) fn filter_time(name: &str, ts: Option<&Timestamp>) -> Result<Option<Micros>, Error> {
    ts.map(|ts| {
        timestamp_to_micros(ts)
            .ok_or_else(|| Error::invalid(name, "must be a valid time between years 1 and 9999"))
    })
    .transpose()
}

impl Filter {
    /// The filters of a listing or tail request (none when absent).
    pub fn parse(req: Option<&pb::AttemptFilter>) -> Result<Self, Error> {
        let Some(req) = req else {
            return Ok(Self::default());
        };
        let ip = req
            .ip
            .as_deref()
            .map(|raw| {
                IpRange::parse(raw)
                    .ok_or_else(|| Error::invalid("ip", "must be an IP address or a CIDR block"))
            })
            .transpose()?;
        let reason = req
            .reason
            .map(|r| {
                pb::RejectReason::try_from(r)
                    .ok()
                    .filter(|r| *r != pb::RejectReason::Unspecified)
                    .map(|r| r.code().to_owned())
                    .ok_or_else(|| Error::invalid("reason", "must be one of the known reasons"))
            })
            .transpose()?;
        let kind = req
            .kind
            .map(|k| {
                pb::AttemptKind::try_from(k)
                    .map(|k| k.code().to_owned())
                    .map_err(|_| Error::invalid("kind", "must be one of the known kinds"))
            })
            .transpose()?;
        Ok(Self {
            successful: req.successful,
            ip,
            // Text as ingest stores it: without NUL (which PostgreSQL
            // text refuses, failing the whole query) and cut where ingest
            // cuts, so a value matches the attempts sent with it.
            email_lower: req
                .email
                .clone()
                .map(|e| fold_email(&clean(e, MAX_EMAIL_CHARS))),
            since: filter_time("since", req.since.as_ref())?,
            until: filter_time("until", req.until.as_ref())?,
            identifier: req.identifier.clone().map(|i| clean(i, MAX_EMAIL_CHARS)),
            user_id: req.user_id,
            reason,
            suspicious: req.suspicious,
            kind,
        })
    }

    /// Whether a stored attempt passes the filter: the tail's in-memory
    /// equivalent of the listing's `WHERE` clause.
    pub fn matches(&self, s: &StoredAttempt) -> bool {
        let a = &s.attempt;
        self.successful.is_none_or(|v| a.successful == v)
            && self.ip.as_ref().is_none_or(|r| r.contains(&a.ip_key))
            && self
                .email_lower
                .as_ref()
                .is_none_or(|e| *e == a.email_lower)
            && self.since.is_none_or(|t| a.occurred_at >= t)
            && self.until.is_none_or(|t| a.occurred_at < t)
            && self.identifier.as_ref().is_none_or(|i| *i == a.identifier)
            && self.user_id.is_none_or(|u| a.user_id == Some(u))
            && self.reason.as_ref().is_none_or(|r| *r == a.reject_reason)
            && self.suspicious.is_none_or(|v| s.suspicious == v)
            && self.kind.as_ref().is_none_or(|k| *k == a.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_keys_unify_spellings_and_cidrs_are_ranges() {
        assert_eq!(ip_key("10.0.0.1"), ip_key("::ffff:10.0.0.1"));
        assert_eq!(ip_key("10.0.0.1"), "00000000000000000000ffff0a000001");
        assert_eq!(ip_key("garbage"), "");
        let net = IpRange::parse("10.0.0.0/8").unwrap();
        assert!(net.contains(&ip_key("10.255.255.255")));
        assert!(!net.contains(&ip_key("11.0.0.0")));
        assert!(!net.contains(""));
        let v6 = IpRange::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(&ip_key("2001:db8:ffff::1")));
        assert!(!v6.contains(&ip_key("2001:db9::")));
        assert!(IpRange::parse("10.0.0.0/33").is_none());
    }

    #[test]
    fn bad_filters_name_the_field() {
        for reason in [0, 99] {
            let req = pb::AttemptFilter {
                reason: Some(reason),
                ..Default::default()
            };
            assert!(
                Filter::parse(Some(&req))
                    .unwrap_err()
                    .to_string()
                    .starts_with("reason")
            );
        }
        assert_eq!(Filter::parse(None).unwrap(), Filter::default());
        let req = pb::AttemptFilter {
            ip: Some("1.2.3".into()),
            ..Default::default()
        };
        assert!(
            Filter::parse(Some(&req))
                .unwrap_err()
                .to_string()
                .starts_with("ip")
        );
    }
}

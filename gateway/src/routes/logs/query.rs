//! The log's query strings, validated: the filters every log route takes
//! ([`LogFilters`], read by one piece of code), and the listing's own page
//! size, cursor and export format. The listing, the export and the live
//! tail build their audit.v1 request from one [`LogsQuery`]; the counts read
//! the same filters next to their bucket.

use std::net::IpAddr;

use ipnet::IpNet;
use proto::audit::v1::{
    AttemptFilter, AttemptKind, ListAttemptsRequest, RejectReason, TailRequest,
};
use time::OffsetDateTime;

pub use crate::routes::params::Params;
use crate::{error::FieldErrors, routes::params::next_query};

/// The filter parameters, shared by every log route.
pub const FILTER_PARAMS: [&str; 10] = [
    "successful",
    "ip",
    "email",
    "since",
    "until",
    "identifier",
    "user_id",
    "reason",
    "suspicious",
    "kind",
];
/// The listing's parameters besides the filters; others are ignored.
const PAGE_PARAMS: [&str; 3] = ["limit", "cursor", "format"];

/// The filters of a log route, validated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogFilters {
    /// Only successes or only failures.
    pub successful: Option<bool>,
    /// Client IP, or a CIDR block, in canonical form.
    pub ip: Option<String>,
    /// Email, matched case-insensitively by audit-service.
    pub email: Option<String>,
    /// What the client submitted as username or email, exact.
    pub identifier: Option<String>,
    /// The account's id.
    pub user_id: Option<i64>,
    /// One failure reason.
    pub reason: Option<RejectReason>,
    /// Only flagged or only unflagged attempts.
    pub suspicious: Option<bool>,
    /// One kind of attempt (`login`, `password_change`, `password_reset`).
    pub kind: Option<AttemptKind>,
    /// Attempts at or after this instant.
    pub since: Option<OffsetDateTime>,
    /// Attempts before this instant.
    pub until: Option<OffsetDateTime>,
}

impl LogFilters {
    /// The filters of `params`; each bad one adds its message to `errors`
    /// (and reads as absent).
    pub fn read(params: &Params, errors: &mut FieldErrors) -> Self {
        let get = |name: &str| params.get(name);
        let successful = params.boolean("successful", errors);
        let suspicious = params.boolean("suspicious", errors);
        let ip = get("ip").and_then(|v| {
            let parsed = parse_ip_or_cidr(v);
            if parsed.is_none() {
                errors.add(
                    "ip",
                    "Enter a valid IPv4 or IPv6 address or CIDR block (e.g. 10.0.0.0/8).",
                );
            }
            parsed
        });
        let user_id = params.integer("user_id", errors);
        // Anything but a known reason is a typo the client should hear
        // about, not an empty result.
        let reason = get("reason").and_then(|v| {
            let v = v.trim();
            let reason = RejectReason::from_code(v);
            if reason.is_none() {
                let choices: Vec<&str> = RejectReason::FAILURES.map(RejectReason::code).into();
                errors.add(
                    "reason",
                    format!(
                        "\"{v}\" is not a valid choice. Choose one of: {}.",
                        choices.join(", ")
                    ),
                );
            }
            reason
        });
        let kind = get("kind").and_then(|v| {
            let v = v.trim();
            let kind = AttemptKind::from_code(v);
            if kind.is_none() {
                let choices: Vec<&str> = AttemptKind::ALL.map(AttemptKind::code).into();
                errors.add(
                    "kind",
                    format!(
                        "\"{v}\" is not a valid choice. Choose one of: {}.",
                        choices.join(", ")
                    ),
                );
            }
            kind
        });
        let (since, until) = params.time_range(errors);
        Self {
            successful,
            ip,
            email: get("email").map(str::to_owned),
            identifier: get("identifier").map(str::to_owned),
            user_id,
            reason,
            suspicious,
            kind,
            since,
            until,
        }
    }

    /// The filters as audit.v1 takes them, for every log request alike.
    pub fn to_proto(&self) -> AttemptFilter {
        AttemptFilter {
            successful: self.successful,
            ip: self.ip.clone(),
            email: self.email.clone(),
            since: self.since.map(timestamp),
            until: self.until.map(timestamp),
            identifier: self.identifier.clone(),
            user_id: self.user_id,
            reason: self.reason.map(|r| r as i32),
            suspicious: self.suspicious,
            kind: self.kind.map(|k| k as i32),
        }
    }
}

/// The query of one page request, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogsQuery {
    /// Page size, 1..=500.
    pub limit: u32,
    /// Opaque position from a previous page.
    pub cursor: Option<String>,
    /// Which attempts.
    pub filters: LogFilters,
    /// `?format=`: an export instead of a JSON page.
    pub format: Option<Format>,
    /// List oldest first (the old service's order) rather than newest
    /// first; set by the handler, never by the query string.
    pub oldest_first: bool,
    /// The filters as the client wrote them, for the `next` link.
    raw_filters: Vec<(&'static str, String)>,
}

impl LogsQuery {
    /// Validates a raw query string. Unknown parameters are ignored, empty
    /// values count as absent, and a repeated parameter keeps its last
    /// value. Every bad parameter is reported, DRF style.
    pub fn parse(query: Option<&str>) -> Result<Self, FieldErrors> {
        let params = Params::read(query, &FILTER_PARAMS, &PAGE_PARAMS)?;
        let get = |name: &str| params.get(name);

        let mut errors = FieldErrors::default();
        let limit = params.limit(&mut errors);
        let filters = LogFilters::read(&params, &mut errors);
        let format = get("format").and_then(|v| {
            if v.trim().eq_ignore_ascii_case("json") {
                return None;
            }
            let parsed = Format::parse(v);
            if parsed.is_none() {
                errors.add(
                    "format",
                    format!("\"{v}\" is not a valid choice. Choose one of: json, csv, ndjson."),
                );
            }
            parsed
        });
        if !errors.is_empty() {
            return Err(errors);
        }

        let raw_filters = params.filters(&PAGE_PARAMS);
        Ok(Self {
            limit,
            cursor: get("cursor").map(str::to_owned),
            filters,
            format,
            oldest_first: false,
            raw_filters,
        })
    }

    /// The audit-service request for this page.
    pub fn to_request(&self) -> ListAttemptsRequest {
        ListAttemptsRequest {
            limit: self.limit,
            cursor: self.cursor.clone().unwrap_or_default(),
            filter: Some(self.filters.to_proto()),
            oldest_first: self.oldest_first,
        }
    }

    /// The audit-service tail request with this query's filters.
    pub fn to_tail_request(&self) -> TailRequest {
        TailRequest {
            filter: Some(self.filters.to_proto()),
        }
    }

    /// The query string of the page after this one: same limit and filters,
    /// the given cursor.
    pub fn next_query(&self, cursor: &str) -> String {
        next_query(self.limit, &self.raw_filters, cursor)
    }
}

/// An address (IPv4-mapped IPv6 folded to IPv4) or a CIDR block, in
/// canonical text.
pub(crate) fn parse_ip_or_cidr(raw: &str) -> Option<String> {
    let raw = raw.trim();
    if let Ok(ip) = raw.parse::<IpAddr>() {
        return Some(ip.to_canonical().to_string());
    }
    raw.parse::<IpNet>().ok().map(|net| net.trunc().to_string())
}

pub(crate) fn timestamp(at: OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.unix_timestamp(),
        // Always 0..1e9, so it fits.
        nanos: at.nanosecond() as i32,
    }
}

/// A streamed format of the whole filtered log; how each is written is
/// the export module's concern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values with a header row (RFC 4180), `?format=csv`.
    Csv,
    /// One JSON object per line, `?format=ndjson`.
    Ndjson,
    /// One JSON array of every item: the listing itself under
    /// `LOG_LISTING_FORMAT=django`, never chosen by `?format=`.
    JsonArray,
}

impl Format {
    /// `csv` or `ndjson`; `None` for anything else.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "csv" => Some(Self::Csv),
            "ndjson" => Some(Self::Ndjson),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &str) -> Result<LogsQuery, FieldErrors> {
        LogsQuery::parse(Some(q))
    }

    fn error_fields(q: &str) -> Vec<String> {
        parse(q).unwrap_err().fields().map(str::to_owned).collect()
    }

    #[test]
    fn no_query_means_the_first_page_of_50_unfiltered() {
        let q = LogsQuery::parse(None).unwrap();
        assert_eq!(q.limit, 50);
        assert_eq!(
            q.to_request(),
            ListAttemptsRequest {
                limit: 50,
                cursor: String::new(),
                filter: Some(AttemptFilter::default()),
                oldest_first: false,
            }
        );
    }

    #[test]
    fn every_filter_is_passed_on() {
        let q = parse(
            "limit=10&cursor=abc&successful=FALSE&ip=::ffff:10.0.0.1&email=A%40b.c\
             &since=2024-01-01T00:00:00Z&until=2024-02-01T00:00:00.5%2B01:00",
        )
        .unwrap();
        let r = q.to_request();
        assert_eq!(r.limit, 10);
        assert_eq!(r.cursor, "abc");
        let r = r.filter.unwrap();
        assert_eq!(
            q.to_tail_request().filter.unwrap(),
            r,
            "one filter for both"
        );
        assert_eq!(r.successful, Some(false));
        assert_eq!(r.ip.as_deref(), Some("10.0.0.1"));
        assert_eq!(r.email.as_deref(), Some("A@b.c"));
        assert_eq!(r.since.unwrap().seconds, 1_704_067_200);
        let until = r.until.unwrap();
        assert_eq!(until.seconds, 1_706_742_000);
        assert_eq!(until.nanos, 500_000_000);
    }

    #[test]
    fn booleans_accept_drf_spellings() {
        for (raw, want) in [
            ("true", true),
            ("True", true),
            ("1", true),
            ("false", false),
            ("FALSE", false),
            ("0", false),
        ] {
            assert_eq!(
                parse(&format!("successful={raw}"))
                    .unwrap()
                    .filters
                    .successful,
                Some(want)
            );
        }
        assert_eq!(error_fields("successful=yes"), ["successful"]);
    }

    #[test]
    fn limits_outside_1_to_500_are_refused() {
        assert_eq!(parse("limit=1").unwrap().limit, 1);
        assert_eq!(parse("limit=500").unwrap().limit, 500);
        for bad in ["0", "501", "-1", "abc", "1.5", "99999999999999999999"] {
            let errors = parse(&format!("limit={bad}")).unwrap_err();
            assert_eq!(errors.fields().collect::<Vec<_>>(), ["limit"], "{bad}");
        }
        assert_eq!(
            parse("limit=0").unwrap_err().messages("limit").unwrap(),
            ["Ensure this value is between 1 and 500."]
        );
        assert_eq!(
            parse("limit=x").unwrap_err().messages("limit").unwrap(),
            ["A valid integer is required."]
        );
    }

    #[test]
    fn bad_ips_and_datetimes_are_refused_naming_the_parameter() {
        assert_eq!(error_fields("ip=1.2.3"), ["ip"]);
        assert_eq!(error_fields("ip=1.2.3.4/33"), ["ip"]);
        assert_eq!(error_fields("reason=bored"), ["reason"]);
        assert_eq!(error_fields("user_id=abc"), ["user_id"]);
        assert_eq!(error_fields("suspicious=perhaps"), ["suspicious"]);
        assert_eq!(error_fields("since=yesterday"), ["since"]);
        assert_eq!(error_fields("until=2024-01-01"), ["until"]);
        assert_eq!(error_fields("since=2024-01-01T00:00:00"), ["since"]);
    }

    #[test]
    fn the_new_filters_are_passed_on() {
        let r =
            parse("ip=10.1.2.3/8&identifier=Al%20ice&user_id=42&reason=locked_out&suspicious=1")
                .unwrap()
                .to_request()
                .filter
                .unwrap();
        assert_eq!(r.ip.as_deref(), Some("10.0.0.0/8"));
        assert_eq!(r.identifier.as_deref(), Some("Al ice"));
        assert_eq!(r.user_id, Some(42));
        assert_eq!(r.reason, Some(RejectReason::LockedOut as i32));
        assert_eq!(r.suspicious, Some(true));
    }

    #[test]
    fn an_unencoded_plus_in_an_offset_is_understood() {
        let q = parse("since=2024-01-01T01:00:00+01:00").unwrap();
        let filter = q.to_request().filter.unwrap();
        assert_eq!(filter.since.unwrap().seconds, 1_704_067_200);
    }

    #[test]
    fn all_problems_are_reported_together() {
        assert_eq!(
            error_fields("limit=0&successful=maybe&ip=x&since=x&until=x"),
            ["limit", "successful", "ip", "since", "until"]
        );
    }

    #[test]
    fn until_must_come_after_since() {
        assert_eq!(
            error_fields("since=2024-02-01T00:00:00Z&until=2024-01-01T00:00:00Z"),
            ["until"]
        );
    }

    #[test]
    fn empty_and_unknown_parameters_are_ignored() {
        let q = parse("ip=&successful=&foo=bar&limit=").unwrap();
        assert_eq!(q.limit, 50);
        assert_eq!(q.filters.ip, None);
        assert_eq!(q.filters.successful, None);
    }

    #[test]
    fn a_repeated_parameter_keeps_its_last_value() {
        assert_eq!(parse("limit=5&limit=7").unwrap().limit, 7);
    }

    #[test]
    fn absurdly_long_values_are_refused() {
        let long = "a".repeat(2000);
        assert_eq!(error_fields(&format!("email={long}")), ["email"]);
    }

    #[test]
    fn the_next_query_keeps_limit_and_filters_and_adds_the_cursor() {
        let q = parse("email=a%2Bb%40c.d&cursor=old&successful=true&junk=1").unwrap();
        assert_eq!(
            q.next_query("n/x=1"),
            "limit=50&email=a%2Bb%40c.d&successful=true&cursor=n%2Fx%3D1"
        );
    }

    #[test]
    fn formats_parse_case_insensitively() {
        assert_eq!(Format::parse("CSV"), Some(Format::Csv));
        assert_eq!(Format::parse("ndjson"), Some(Format::Ndjson));
        assert_eq!(Format::parse("xml"), None);
        assert_eq!(
            Format::parse("jsonarray"),
            None,
            "only the listing streams an array"
        );
    }
}

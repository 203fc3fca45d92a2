//! `GET /api/accounts/logs/login/attemps/counts/`: login attempts per time
//! bucket, for a chart of the log. Takes the listing's filters (read by the
//! same code, [`LogFilters`]) and a bucket width; audit-service
//! (`CountAttempts`) applies the range's defaults and limits and counts.

use std::time::Duration;

use axum::{
    Json,
    extract::{RawQuery, State},
    response::{IntoResponse, Response},
};
use proto::audit::v1::{CountAttemptsRequest, CountAttemptsResponse};
use serde::Serialize;

use super::{
    item::rfc3339,
    query::{FILTER_PARAMS, LogFilters, Params},
};
use crate::{
    auth::AdminUser,
    context::RequestContext,
    error::{ApiError, FieldErrors, Rpc},
    grpc::call,
    openapi::AdminErrors,
    state::AppState,
};

/// The path.
pub const COUNTS_PATH: &str = "/api/accounts/logs/login/attemps/counts/";

/// The counts' query, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CountsQuery {
    /// Which attempts, and the range (`since`, `until`).
    pub filters: LogFilters,
    /// Width of each bucket, whole seconds, not zero.
    pub bucket: Duration,
}

impl CountsQuery {
    /// Validates a raw query string as the listing does its filters, plus
    /// the required `bucket`: a whole number and one unit, `s`, `m`, `h` or
    /// `d` (`30s`, `1m`, `1h`, `1d`; a bare number is seconds), the strict
    /// form the services' duration settings take. Every bad parameter is
    /// reported, DRF style.
    pub fn parse(query: Option<&str>) -> Result<Self, FieldErrors> {
        let params = Params::read(query, &FILTER_PARAMS, &["bucket"])?;
        let mut errors = FieldErrors::default();
        let filters = LogFilters::read(&params, &mut errors);
        let bucket = match params.get("bucket") {
            None => {
                errors.add("bucket", "This field is required.");
                None
            }
            Some(raw) => {
                let parsed = common::config::parse_duration(raw);
                if parsed.is_none() {
                    errors.add(
                        "bucket",
                        "Enter a duration: a whole number above 0 and a unit, s, m, h or d \
                         (e.g. 30s, 1m, 1h, 1d).",
                    );
                }
                parsed
            }
        };
        match bucket {
            Some(bucket) if errors.is_empty() => Ok(Self { filters, bucket }),
            _ => Err(errors),
        }
    }

    /// The audit-service request.
    pub fn to_request(&self) -> CountAttemptsRequest {
        CountAttemptsRequest {
            filter: Some(self.filters.to_proto()),
            bucket: Some(prost_types::Duration {
                // Past i64 seconds is past any bucket audit-service takes;
                // it refuses the saturated value naming `bucket`.
                seconds: i64::try_from(self.bucket.as_secs()).unwrap_or(i64::MAX),
                nanos: 0,
            }),
        }
    }
}

/// The attempts of one bucket.
#[derive(Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Bucket {
    /// When the bucket starts, RFC 3339 UTC: a multiple of the bucket
    /// width since the Unix epoch (a day's buckets start at midnight UTC).
    #[schema(format = DateTime)]
    pub start: String,
    /// Attempts that succeeded.
    pub successes: u64,
    /// Attempts that failed.
    pub failures: u64,
    /// Attempts the suspicious-activity rule flagged, of either outcome.
    pub suspicious: u64,
}

/// Attempts per bucket over a range.
#[derive(Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Counts {
    /// The bucket width, in seconds.
    #[schema(minimum = 1)]
    pub bucket_seconds: i64,
    /// Start of the range counted (inclusive), RFC 3339 UTC.
    #[schema(format = DateTime)]
    pub since: String,
    /// End of the range counted (exclusive), RFC 3339 UTC.
    #[schema(format = DateTime)]
    pub until: String,
    /// Every bucket from the one holding `since` to the one holding the
    /// instant before `until`, oldest first, empty ones included (counts 0).
    pub buckets: Vec<Bucket>,
}

impl Counts {
    /// The answer of audit-service as clients see it; `None` if it holds a
    /// time RFC 3339 cannot write (audit-service never sends one).
    fn from_reply(reply: CountAttemptsResponse) -> Option<Self> {
        let time = |ts: Option<prost_types::Timestamp>| ts.and_then(rfc3339);
        let buckets = reply
            .buckets
            .into_iter()
            .map(|b| {
                Some(Bucket {
                    start: time(b.start)?,
                    successes: b.successes,
                    failures: b.failures,
                    suspicious: b.suspicious,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            bucket_seconds: reply.bucket.map(|b| b.seconds)?,
            since: time(reply.since)?,
            until: time(reply.until)?,
            buckets,
        })
    }
}

/// The handler.
#[utoipa::path(
    get,
    path = COUNTS_PATH,
    operation_id = "countLoginAttempts",
    tag = "logs",
    summary = "Count login attempts per time bucket (for a chart)",
    description = "Successes, failures and suspicious attempts in each bucket of a time range, \
                   filtered as the listing filters. Counts are of attempts, not records: a \
                   record that stands for several refused attempts (`count`) counts as that \
                   many (in the bucket of its first attempt). Buckets are aligned to the Unix \
                   epoch (UTC); the first may start before `since` and the last end after \
                   `until`, but only attempts in the range are counted. Empty buckets are \
                   included, with zero counts. Without `until` the range ends now; without \
                   `since` it starts at the start of the bucket holding `until` minus 24 hours. \
                   At most 10,000 buckets are answered (a wider range is refused naming \
                   `bucket`), and a bucket is at most 366 days.",
    params(
        ("bucket" = String, Query, pattern = "^[1-9][0-9]*[smhd]?$", example = "1h", description = "Bucket width: a whole number and a unit, `s`, `m`, `h` or `d` (`30s`, `1m`, `1h`, `1d`); a bare number is seconds."),
        ("successful" = Option<bool>, Query, description = "Only successes, or only failures."),
        ("ip" = Option<String>, Query, description = "A client IP or CIDR block."),
        ("email" = Option<String>, Query, description = "The account's email, any case."),
        ("identifier" = Option<String>, Query, description = "What was submitted as username, exact."),
        ("user_id" = Option<i64>, Query, description = "The account's id."),
        ("reason" = Option<String>, Query, description = "Failure reason, as for the listing."),
        ("kind" = Option<String>, Query, description = "What was attempted: login, password_change or password_reset."),
        ("suspicious" = Option<bool>, Query, description = "Only flagged, or only unflagged, attempts."),
        ("since" = Option<String>, Query, format = DateTime, description = "Start of the range (RFC 3339, inclusive)."),
        ("until" = Option<String>, Query, format = DateTime, description = "End of the range (RFC 3339, exclusive); later than `since`."),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The buckets of the range.", body = Counts),
        AdminErrors,
    )
)]
pub async fn counts(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    ctx: RequestContext,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let query = CountsQuery::parse(query.as_deref()).map_err(ApiError::Validation)?;
    tracing::info!(
        admin = admin.user_id,
        bucket_seconds = query.bucket.as_secs(),
        "counting login attempts"
    );
    let reply = call(
        Rpc::CountAttempts,
        state
            .audit
            .clone()
            .count_attempts(ctx.grpc_request(query.to_request())),
    )
    .await?;
    let counts = Counts::from_reply(reply).ok_or_else(|| {
        ApiError::Internal(anyhow::anyhow!(
            "CountAttempts answered a time RFC 3339 cannot write"
        ))
    })?;
    Ok((crate::headers::no_store(), Json(counts)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_fields(q: &str) -> Vec<String> {
        CountsQuery::parse(Some(q))
            .unwrap_err()
            .fields()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn buckets_take_a_unit_and_the_filters_are_the_listings() {
        let q = CountsQuery::parse(Some(
            "bucket=1h&successful=false&ip=::ffff:10.0.0.1&since=2024-01-01T00:00:00Z&limit=5",
        ))
        .unwrap();
        assert_eq!(q.bucket, Duration::from_secs(3_600));
        let r = q.to_request();
        assert_eq!(r.bucket.unwrap().seconds, 3_600);
        let filter = r.filter.unwrap();
        assert_eq!(filter.successful, Some(false));
        assert_eq!(filter.ip.as_deref(), Some("10.0.0.1"));
        assert_eq!(filter.since.unwrap().seconds, 1_704_067_200);
        for (raw, secs) in [("30s", 30), ("1m", 60), ("1d", 86_400), ("90", 90)] {
            let q = CountsQuery::parse(Some(&format!("bucket={raw}"))).unwrap();
            assert_eq!(q.bucket.as_secs(), secs, "{raw}");
        }
    }

    #[test]
    fn a_bad_or_missing_bucket_is_refused_naming_it() {
        for bad in [
            "0",
            "0s",
            "-1m",
            "%2B1m",
            "1.5h",
            "1w",
            "1 h",
            "h",
            "1hh",
            "abc",
            "%00",
            "１h",
            "99999999999999999999s",
        ] {
            assert_eq!(error_fields(&format!("bucket={bad}")), ["bucket"], "{bad}");
        }
        assert_eq!(error_fields(""), ["bucket"]);
        assert_eq!(error_fields("bucket="), ["bucket"], "empty is absent");
    }

    #[test]
    fn every_bad_parameter_is_reported_with_the_bucket() {
        assert_eq!(
            error_fields("bucket=x&ip=nope&since=2024-02-01T00:00:00Z&until=2024-01-01T00:00:00Z"),
            ["ip", "until", "bucket"]
        );
    }

    #[test]
    fn a_bucket_too_wide_is_left_for_audit_service_to_refuse() {
        let q = CountsQuery::parse(Some("bucket=99999999999999999s")).unwrap();
        assert_eq!(
            q.to_request().bucket.unwrap().seconds,
            99_999_999_999_999_999
        );
    }
}

//! Attempts over time: a count request's range and bucket width,
//! validated, and the buckets of the answer.
//!
//! All arithmetic is on whole microseconds ([`Micros`]), as the log stores
//! time on every backend. Buckets are aligned to the Unix epoch: bucket `k`
//! of width `w` covers `[k·w, (k+1)·w)`, so a bucket's start is the same
//! whatever range it is asked in.

use prost_types::Duration;
use proto::audit::v1 as pb;

use super::{Filter, MIN_SECONDS, Micros, micros_to_timestamp};
use crate::error::Error;

/// Most buckets one answer holds: a chart of 10,000 points is wider than any
/// screen, and the answer (about 30 bytes a bucket) stays small.
pub const MAX_BUCKETS: i64 = 10_000;
/// The widest bucket, 366 days: a year's bucket.
pub const MAX_BUCKET_SECONDS: i64 = 366 * 86_400;
/// The range when the request sets no `since`: the last day before `until`.
pub const DEFAULT_RANGE: Micros = 86_400 * MICROS_PER_SECOND;

const MICROS_PER_SECOND: Micros = 1_000_000;

/// A validated count request: which attempts, from when to when, in which
/// buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountQuery {
    /// The listing's filters, with `since` and `until` set to the range.
    pub filter: Filter,
    /// Start of the range (inclusive), defaults applied.
    pub since: Micros,
    /// End of the range (exclusive), defaults applied.
    pub until: Micros,
    /// Bucket width.
    pub width: Micros,
    /// Start of the first bucket: `since` rounded down to a multiple of
    /// `width`.
    pub origin: Micros,
    /// How many buckets cover the range, 1..=[`MAX_BUCKETS`].
    pub buckets: i64,
}

/// The attempts of one bucket, summed over the records in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BucketCounts {
    /// Attempts that succeeded.
    pub successes: i64,
    /// Attempts that failed.
    pub failures: i64,
    /// Attempts in flagged records, of either outcome.
    pub suspicious: i64,
}

impl CountQuery {
    /// The count of `req`, with the range's defaults taken at `now`.
    pub fn parse(req: &pb::CountAttemptsRequest, now: Micros) -> Result<Self, Error> {
        let width = parse_bucket(req.bucket.as_ref())?;
        let mut filter = Filter::parse(req.filter.as_ref())?;
        let until = filter.until.unwrap_or(now);
        let since = match filter.since {
            Some(since) => since,
            // The last day, in whole buckets.
            None => floor_to(until.saturating_sub(DEFAULT_RANGE), width),
        };
        if until <= since {
            return Err(match filter.until {
                Some(_) => Error::field("until", "Must be later than since.".to_owned()),
                None => Error::field(
                    "since",
                    "Must be earlier than until (now, when until is not given).".to_owned(),
                ),
            });
        }
        let origin = floor_to(since, width);
        // Every bucket start is a time the log could hold, so readers can
        // write each as RFC 3339 (a year's bucket from 0001-01-01 would
        // start in year 0).
        if origin < MIN_SECONDS * MICROS_PER_SECOND {
            return Err(Error::field(
                "since",
                "Must lie in a bucket that starts in year 1 or later.".to_owned(),
            ));
        }
        // Both bounds lie within years 1..=9999 and the width is positive,
        // so neither the difference nor the division can overflow.
        let buckets = (until - origin + width - 1) / width;
        if buckets > MAX_BUCKETS {
            return Err(Error::field(
                "bucket",
                format!(
                    "{buckets} buckets from since to until are more than the {MAX_BUCKETS} \
                     answered: choose a wider bucket or a shorter range."
                ),
            ));
        }
        filter.since = Some(since);
        filter.until = Some(until);
        Ok(Self {
            filter,
            since,
            until,
            width,
            origin,
            buckets,
        })
    }

    /// The answer: every bucket of the range in order, `counted` (bucket
    /// index, counts) filled in and the rest zero. Indexes outside the
    /// range (none, from a correct query) are ignored.
    pub fn response(&self, counted: &[(i64, BucketCounts)]) -> pb::CountAttemptsResponse {
        let mut buckets: Vec<pb::AttemptBucket> = (0..self.buckets)
            .map(|k| pb::AttemptBucket {
                start: Some(micros_to_timestamp(self.origin + k * self.width)),
                ..Default::default()
            })
            .collect();
        for (k, counts) in counted {
            let Some(bucket) = usize::try_from(*k).ok().and_then(|k| buckets.get_mut(k)) else {
                continue;
            };
            // Sums of positive counts; never negative.
            bucket.successes = u64::try_from(counts.successes).unwrap_or(0);
            bucket.failures = u64::try_from(counts.failures).unwrap_or(0);
            bucket.suspicious = u64::try_from(counts.suspicious).unwrap_or(0);
        }
        pb::CountAttemptsResponse {
            since: Some(micros_to_timestamp(self.since)),
            until: Some(micros_to_timestamp(self.until)),
            bucket: Some(Duration {
                seconds: self.width / MICROS_PER_SECOND,
                nanos: 0,
            }),
            buckets,
        }
    }
}

/// The bucket width: whole seconds, 1 s to [`MAX_BUCKET_SECONDS`].
fn parse_bucket(bucket: Option<&Duration>) -> Result<Micros, Error> {
    let Some(bucket) = bucket else {
        return Err(Error::field(
            "bucket",
            "Required: a whole number of seconds, e.g. 3600s.".to_owned(),
        ));
    };
    if bucket.nanos != 0 {
        return Err(Error::field(
            "bucket",
            "Must be a whole number of seconds.".to_owned(),
        ));
    }
    if !(1..=MAX_BUCKET_SECONDS).contains(&bucket.seconds) {
        return Err(Error::field(
            "bucket",
            format!("Must be between 1 second and {MAX_BUCKET_SECONDS} seconds (366 days)."),
        ));
    }
    Ok(bucket.seconds * MICROS_PER_SECOND)
}

/// `t` rounded down to a multiple of `width` (towards the past, also
/// before 1970).
fn floor_to(t: Micros, width: Micros) -> Micros {
    t.div_euclid(width) * width
}

#[cfg(test)]
mod tests {
    use prost_types::Timestamp;

    use super::*;

    const HOUR: i64 = 3_600;

    fn request(bucket: i64, since: Option<i64>, until: Option<i64>) -> pb::CountAttemptsRequest {
        let ts = |seconds| Timestamp { seconds, nanos: 0 };
        pb::CountAttemptsRequest {
            filter: Some(pb::AttemptFilter {
                since: since.map(ts),
                until: until.map(ts),
                ..Default::default()
            }),
            bucket: Some(Duration {
                seconds: bucket,
                nanos: 0,
            }),
        }
    }

    fn field_of(err: Error) -> String {
        match err {
            Error::FieldViolation { field, .. } => field.to_owned(),
            other => panic!("not a field violation: {other}"),
        }
    }

    #[test]
    fn buckets_align_to_the_epoch_and_cover_the_range() {
        // 2024-01-01T00:30:00Z to 02:30: three hourly buckets from 00:00.
        let jan1 = 1_704_067_200;
        let q =
            CountQuery::parse(&request(HOUR, Some(jan1 + 1_800), Some(jan1 + 9_000)), 0).unwrap();
        assert_eq!(q.origin, jan1 * 1_000_000);
        assert_eq!(q.buckets, 3);
        assert_eq!(q.since, (jan1 + 1_800) * 1_000_000);
        assert_eq!(q.until, (jan1 + 9_000) * 1_000_000);
    }

    #[test]
    fn before_1970_buckets_still_round_down() {
        let q = CountQuery::parse(&request(HOUR, Some(-1), Some(1)), 0).unwrap();
        assert_eq!(q.origin, -HOUR * 1_000_000);
        assert_eq!(q.buckets, 2);
    }

    #[test]
    fn without_a_range_the_last_day_in_whole_buckets_is_counted() {
        let now = (1_704_067_200 + 1_234) * 1_000_000;
        let q = CountQuery::parse(&request(HOUR, None, None), now).unwrap();
        assert_eq!(q.until, now);
        assert_eq!(q.since, (1_704_067_200 - 86_400) * 1_000_000);
        assert_eq!(q.origin, q.since);
        assert_eq!(q.buckets, 25, "24 whole hours and the current one");

        let until = 1_704_067_200 + 7 * HOUR;
        let q = CountQuery::parse(&request(HOUR, None, Some(until)), now).unwrap();
        assert_eq!(q.since, (until - 86_400) * 1_000_000);
        assert_eq!(q.buckets, 24);
    }

    #[test]
    fn bad_buckets_and_ranges_are_refused_naming_the_field() {
        for bucket in [0, -1, MAX_BUCKET_SECONDS + 1] {
            let err = CountQuery::parse(&request(bucket, None, None), 0).unwrap_err();
            assert_eq!(field_of(err), "bucket", "{bucket}");
        }
        let mut fractional = request(HOUR, None, None);
        fractional.bucket = Some(Duration {
            seconds: 1,
            nanos: 500_000_000,
        });
        assert_eq!(
            field_of(CountQuery::parse(&fractional, 0).unwrap_err()),
            "bucket"
        );
        let mut missing = request(HOUR, None, None);
        missing.bucket = None;
        assert_eq!(
            field_of(CountQuery::parse(&missing, 0).unwrap_err()),
            "bucket"
        );

        let err = CountQuery::parse(&request(HOUR, Some(10), Some(10)), 0).unwrap_err();
        assert_eq!(field_of(err), "until");
        let err = CountQuery::parse(&request(HOUR, Some(10), None), 0).unwrap_err();
        assert_eq!(field_of(err), "since", "since after the default until");
    }

    #[test]
    fn at_most_ten_thousand_buckets_are_answered() {
        let ok = CountQuery::parse(&request(1, Some(0), Some(MAX_BUCKETS)), 0).unwrap();
        assert_eq!(ok.buckets, MAX_BUCKETS);
        let err = CountQuery::parse(&request(1, Some(0), Some(MAX_BUCKETS + 1)), 0).unwrap_err();
        assert_eq!(field_of(err), "bucket");
        // A second's bucket over the default day.
        let err = CountQuery::parse(&request(1, None, None), 1_000_000_000_000).unwrap_err();
        assert!(err.to_string().contains("86400 buckets"), "{err}");
    }

    #[test]
    fn the_widest_range_and_bucket_stay_in_bounds() {
        // 0001-01-01 is a multiple of a day since the epoch, not of 366.
        let year_1 = -62_135_596_800;
        let q =
            CountQuery::parse(&request(86_400, Some(year_1), Some(year_1 + 86_400)), 0).unwrap();
        assert_eq!(q.origin, year_1 * 1_000_000);
        let err = CountQuery::parse(
            &request(MAX_BUCKET_SECONDS, Some(year_1), Some(253_402_300_799)),
            0,
        )
        .unwrap_err();
        assert_eq!(field_of(err), "since");

        let q = CountQuery::parse(
            &request(
                MAX_BUCKET_SECONDS,
                Some(year_1 + MAX_BUCKET_SECONDS),
                Some(253_402_300_799),
            ),
            0,
        )
        .unwrap();
        assert!(q.buckets <= MAX_BUCKETS);
        let response = q.response(&[]);
        assert_eq!(response.buckets.len(), usize::try_from(q.buckets).unwrap());
    }

    #[test]
    fn the_response_fills_empty_buckets_with_zeros() {
        let q = CountQuery::parse(&request(HOUR, Some(0), Some(4 * HOUR)), 0).unwrap();
        let counts = BucketCounts {
            successes: 2,
            failures: 5,
            suspicious: 1,
        };
        let response = q.response(&[(1, counts), (9, counts)]);
        let starts: Vec<i64> = response
            .buckets
            .iter()
            .map(|b| b.start.unwrap().seconds)
            .collect();
        assert_eq!(starts, [0, HOUR, 2 * HOUR, 3 * HOUR]);
        let failures: Vec<u64> = response.buckets.iter().map(|b| b.failures).collect();
        assert_eq!(failures, [0, 5, 0, 0]);
        assert_eq!(response.buckets[1].successes, 2);
        assert_eq!(response.buckets[1].suspicious, 1);
        assert_eq!(response.bucket.unwrap().seconds, HOUR);
    }
}

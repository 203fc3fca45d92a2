//! The Django service's times: text as Django's database backends write
//! it, read as instants (microseconds since the Unix epoch, UTC).
//!
//! With `USE_TZ = False` Django writes naive local times in its
//! `TIME_ZONE` (Asia/Tehran): on SQLite as text such as
//! `2021-09-21 23:30:00.250000`. Those are read in the zone given by
//! `--time-zone`, from the IANA database bundled into this binary (jiff's),
//! so the result does not depend on the machine's tzdata. Iran kept
//! daylight saving time until 2022, so two kinds of local time need a rule,
//! and each one is reported:
//! - *ambiguous* (clocks went back at the end of summer time; the hour
//!   before midnight happened twice): read as the earlier instant, the
//!   summer-time reading (`+04:30`);
//! - *nonexistent* (clocks went forward at the start of summer time; the
//!   hour after midnight never happened): moved forward by the length of
//!   the gap, so `00:30` is read as `01:30 +04:30` (RFC 5545's rule, and
//!   where a clock that missed the change would have been).
//!
//! PostgreSQL columns of type `timestamp with time zone` (what Django
//! creates there) hold instants already; the source reads them in UTC,
//! written with a trailing `Z`, and they are taken as they are.

use jiff::{
    civil::DateTime,
    tz::{AmbiguousOffset, TimeZone},
};

/// Microseconds since the Unix epoch, UTC.
pub type Micros = i64;

/// A local time that needed a rule to become an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adjustment {
    /// It happened twice; the earlier instant was taken.
    Ambiguous,
    /// It never happened; moved forward by the gap.
    Nonexistent,
}

impl Adjustment {
    /// How the report words it.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Ambiguous => {
                "ambiguous (clocks went back; read as the earlier, daylight-saving instant)"
            }
            Self::Nonexistent => {
                "nonexistent (clocks went forward; moved forward by the length of the gap)"
            }
        }
    }
}

/// Reads the source's times in one time zone.
#[derive(Debug, Clone)]
pub struct LocalClock {
    zone: TimeZone,
    name: String,
}

impl LocalClock {
    /// The zone named `name` in the bundled IANA database; the error
    /// names the option.
    pub fn new(name: &str) -> Result<Self, String> {
        let zone = TimeZone::get(name).map_err(|_| {
            format!("unknown time zone {name:?} (an IANA name such as Asia/Tehran or UTC)")
        })?;
        Ok(Self {
            zone,
            name: name.to_owned(),
        })
    }

    /// The zone's name as given.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The instant `text` stands for, and the rule it needed if any; the
    /// error says what is wrong with the text.
    pub fn read(&self, text: &str) -> Result<(Micros, Option<Adjustment>), String> {
        if let Some(utc) = text.strip_suffix('Z') {
            let at = parse_civil(utc)?;
            let ts = TimeZone::UTC
                .to_ambiguous_timestamp(at)
                .compatible()
                .map_err(|_| format!("{text:?} is out of range"))?;
            return Ok((ts.as_microsecond(), None));
        }
        let at = parse_civil(text)?;
        let ambiguous = self.zone.to_ambiguous_timestamp(at);
        let (ts, adjustment) = match ambiguous.offset() {
            AmbiguousOffset::Unambiguous { .. } => (ambiguous.compatible(), None),
            AmbiguousOffset::Fold { .. } => (ambiguous.earlier(), Some(Adjustment::Ambiguous)),
            // `compatible` reads a time in a gap with the offset before
            // it: the same wall-clock reading, shifted forward by the gap.
            AmbiguousOffset::Gap { .. } => (ambiguous.compatible(), Some(Adjustment::Nonexistent)),
        };
        let ts = ts.map_err(|_| format!("{text:?} is out of range"))?;
        Ok((ts.as_microsecond(), adjustment))
    }
}

/// `s` when it is `len` ASCII digits.
fn digits(s: &str, len: std::ops::RangeInclusive<usize>) -> Option<&str> {
    (len.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())).then_some(s)
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]` (a `T` may stand for the space), as
/// Django's backends write a naive datetime; anything else is refused
/// rather than guessed at (an offset means the source is not what the
/// importer expects).
fn parse_civil(text: &str) -> Result<DateTime, String> {
    let bad = || {
        format!(
            "{text:?} is not a date and time as Django writes one (YYYY-MM-DD HH:MM:SS[.ffffff])"
        )
    };
    let (date, time) = text.split_once([' ', 'T']).ok_or_else(bad)?;
    let mut d = date.split('-');
    let (Some(year), Some(month), Some(day), None) = (d.next(), d.next(), d.next(), d.next())
    else {
        return Err(bad());
    };
    let (clock, fraction) = match time.split_once('.') {
        Some((clock, fraction)) => (clock, Some(fraction)),
        None => (time, None),
    };
    let mut t = clock.split(':');
    let (Some(hour), Some(minute), Some(second), None) = (t.next(), t.next(), t.next(), t.next())
    else {
        return Err(bad());
    };
    let number = |s: &str, len| -> Result<i32, String> {
        digits(s, len)
            .and_then(|s| s.parse::<i32>().ok())
            .ok_or_else(bad)
    };
    let small =
        |s: &str| -> Result<i8, String> { i8::try_from(number(s, 2..=2)?).map_err(|_| bad()) };
    let nanos = match fraction {
        None => 0,
        Some(f) => {
            let f = digits(f, 1..=9).ok_or_else(bad)?;
            // Right-padded to nine digits: ".25" is 250 ms.
            format!("{f:0<9}").parse::<i32>().map_err(|_| bad())?
        }
    };
    let year = i16::try_from(number(year, 4..=4)?).map_err(|_| bad())?;
    DateTime::new(
        year,
        small(month)?,
        small(day)?,
        small(hour)?,
        small(minute)?,
        small(second)?,
        nanos,
    )
    .map_err(|_| format!("{text:?} is not a valid date and time"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tehran() -> LocalClock {
        LocalClock::new("Asia/Tehran").unwrap()
    }

    /// `text` read as UTC, for expectations.
    fn utc(text: &str) -> Micros {
        LocalClock::new("UTC").unwrap().read(text).unwrap().0
    }

    #[test]
    fn a_plain_local_time_is_its_offset_away_from_utc() {
        // Winter: +03:30. Microseconds are kept.
        assert_eq!(
            tehran().read("2023-01-05 10:20:30.123456").unwrap(),
            (utc("2023-01-05 06:50:30.123456"), None)
        );
        // Summer 2021 (+04:30); no daylight saving from 2023 on (+03:30).
        assert_eq!(
            tehran().read("2021-07-01 12:00:00").unwrap().0,
            utc("2021-07-01 07:30:00")
        );
        assert_eq!(
            tehran().read("2023-07-01T12:00:00").unwrap().0,
            utc("2023-07-01 08:30:00")
        );
    }

    #[test]
    fn the_repeated_hour_is_read_as_its_earlier_instant_and_reported() {
        // Summer time ended at 2021-09-22 00:00 +04:30: 23:00-24:00 on the
        // 21st happened twice.
        assert_eq!(
            tehran().read("2021-09-21 23:30:00").unwrap(),
            (utc("2021-09-21 19:00:00"), Some(Adjustment::Ambiguous))
        );
        assert_eq!(
            tehran().read("2021-09-22 00:00:00").unwrap(),
            (utc("2021-09-21 20:30:00"), None)
        );
    }

    #[test]
    fn the_skipped_hour_moves_forward_by_the_gap_and_is_reported() {
        // Summer time began at 2021-03-22 00:00 +03:30, which became 01:00.
        assert_eq!(
            tehran().read("2021-03-22 00:30:00").unwrap(),
            (utc("2021-03-21 21:00:00"), Some(Adjustment::Nonexistent))
        );
        assert_eq!(
            tehran().read("2021-03-22 01:30:00").unwrap(),
            (utc("2021-03-21 21:00:00"), None)
        );
    }

    #[test]
    fn an_instant_in_utc_is_taken_as_it_is() {
        assert_eq!(
            tehran().read("2021-09-21 19:00:00.5Z").unwrap(),
            (utc("2021-09-21 19:00:00.500000"), None)
        );
    }

    #[test]
    fn text_that_is_no_django_datetime_is_refused_saying_so() {
        for bad in [
            "",
            "2021-02-30 10:00:00",
            "2021-01-01",
            "2021-01-01 10:00",
            "2021-01-01 10:00:00+03:30",
            "2021-01-01 10:00:00.1234567890",
            "21-01-01 10:00:00",
            "2021-01-01 25:00:00",
            "2021-01-01 1０:00:00",
        ] {
            let err = tehran().read(bad).unwrap_err();
            assert!(err.contains("date and time"), "{bad}: {err}");
        }
        assert!(LocalClock::new("Mars/Olympus").is_err());
    }
}

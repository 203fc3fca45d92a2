//! The old Django service's answer shapes, for clients written against it:
//! each a setting of its own, all set by `COMPAT=django` (see
//! `common::compat`; MIGRATING.md says what each costs).

use std::{fmt, str::FromStr};

use axum::http::StatusCode;
use common::{compat::Compatibility, config::ConfigError};
use proto::audit::v1::RejectReason;

/// `LOG_LISTING_FORMAT`: the shape of `GET /api/accounts/logs/login/attemps/`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ListingFormat {
    /// `pages` (default): `{"results": [...], "next": ...}`, newest first,
    /// a page at a time.
    #[default]
    Pages,
    /// `django`: a bare JSON array of every matching row, oldest first,
    /// streamed, as the old service answered.
    Django,
}

/// `LOG_REASON_TEXT`: how a log item's `reject_reason` is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReasonText {
    /// `codes` (default): `unknown_user`, `bad_password`, ...; `null` on
    /// success.
    #[default]
    Codes,
    /// `django`: the old service's texts for the reasons it had, `""` on
    /// success; reasons it never had keep their codes.
    Django,
}

/// `VERIFY_FAILURE_STATUS`: the HTTP status of a failed email verification
/// (`{"status": "failed", ...}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum VerifyFailureStatus {
    /// `400` (default): clients see an error.
    #[default]
    BadRequest,
    /// `200`: as the old service answered, the failure only in the body.
    Ok,
}

/// The answer shapes, as configured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shapes {
    /// The log listing's shape.
    pub listing: ListingFormat,
    /// How reasons are written in log items.
    pub reasons: ReasonText,
    /// The status of a failed verification.
    pub verify_failure: VerifyFailureStatus,
}

impl Shapes {
    /// Reads the three settings through `get`, each defaulting to `COMPAT`'s
    /// choice (recorded in `compat`) when unset.
    pub fn read(
        get: impl Fn(&str) -> Option<String>,
        compat: &mut Compatibility,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            listing: compat.setting(
                "LOG_LISTING_FORMAT",
                get("LOG_LISTING_FORMAT"),
                ListingFormat::Pages,
                ListingFormat::Django,
                "the log listing is one unpaged array: a single request reads the whole \
                 log (streamed, but an admin token can keep the log database busy)",
            )?,
            reasons: compat.setting(
                "LOG_REASON_TEXT",
                get("LOG_REASON_TEXT"),
                ReasonText::Codes,
                ReasonText::Django,
                "log reasons are the old free texts; filter with the codes",
            )?,
            verify_failure: compat.setting(
                "VERIFY_FAILURE_STATUS",
                get("VERIFY_FAILURE_STATUS"),
                VerifyFailureStatus::BadRequest,
                VerifyFailureStatus::Ok,
                "a failed verification answers 200: clients that only check the status \
                 take it for a success",
            )?,
        })
    }
}

impl ReasonText {
    /// `reason` as a log item shows it (`None`: `null`).
    pub fn show(self, reason: RejectReason) -> Option<String> {
        match (self, reason) {
            (Self::Codes, RejectReason::Unspecified) => None,
            (Self::Codes, reason) => Some(reason.code().to_owned()),
            (Self::Django, reason) => Some(django_text(reason).to_owned()),
        }
    }
}

impl VerifyFailureStatus {
    /// The HTTP status to answer with.
    pub fn status_code(self) -> StatusCode {
        match self {
            Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::Ok => StatusCode::OK,
        }
    }
}

/// The old service's `reject_reason` for `reason`. It had three reasons
/// and `""`; `inactive`, `malformed_request`, `rate_limited` and the
/// password-reset codes have no counterpart there and keep their codes,
/// rather than being passed off as a cause they are not (a rate-limited
/// client is not a blocked user: the block is per account, the limit per
/// address).
fn django_text(reason: RejectReason) -> &'static str {
    match reason {
        RejectReason::Unspecified => "",
        RejectReason::UnknownUser => "User Not Exists",
        RejectReason::BadPassword => "Wrong password",
        RejectReason::LockedOut => "User blocked for too many attempt",
        other => other.code(),
    }
}

/// Parsing and printing of the settings' values, each a closed set of words.
macro_rules! words {
    ($type:ty, $choices:literal, $($word:literal => $value:expr),+ $(,)?) => {
        impl FromStr for $type {
            type Err = String;

            fn from_str(raw: &str) -> Result<Self, String> {
                match raw.trim().to_ascii_lowercase().as_str() {
                    $($word => Ok($value),)+
                    _ => Err(format!("expected {}", $choices)),
                }
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                $(if *self == $value {
                    return f.write_str($word);
                })+
                Ok(())
            }
        }
    };
}

words!(ListingFormat, "pages or django",
    "pages" => ListingFormat::Pages,
    "django" => ListingFormat::Django,
);
words!(ReasonText, "codes or django",
    "codes" => ReasonText::Codes,
    "django" => ReasonText::Django,
);
words!(VerifyFailureStatus, "400 or 200",
    "400" => VerifyFailureStatus::BadRequest,
    "200" => VerifyFailureStatus::Ok,
);

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn read(pairs: &[(&str, &str)]) -> Result<(Shapes, Compatibility), ConfigError> {
        let env: HashMap<&str, &str> = pairs.iter().copied().collect();
        let get = |name: &str| env.get(name).map(|v| (*v).to_owned());
        let mut compat = Compatibility::from_lookup(get)?;
        Ok((Shapes::read(get, &mut compat)?, compat))
    }

    #[test]
    fn the_defaults_are_this_services_own_shapes() {
        let (shapes, compat) = read(&[]).unwrap();
        assert_eq!(shapes, Shapes::default());
        assert!(compat.applied.is_empty());
    }

    #[test]
    fn compat_django_sets_every_shape_unless_set_explicitly() {
        let (shapes, compat) = read(&[("COMPAT", "django")]).unwrap();
        assert_eq!(
            shapes,
            Shapes {
                listing: ListingFormat::Django,
                reasons: ReasonText::Django,
                verify_failure: VerifyFailureStatus::Ok,
            }
        );
        let names: Vec<&str> = compat.applied.iter().map(|a| a.name).collect();
        assert_eq!(
            names,
            [
                "LOG_LISTING_FORMAT",
                "LOG_REASON_TEXT",
                "VERIFY_FAILURE_STATUS"
            ]
        );
        assert_eq!(compat.applied[2].value, "200");

        let (shapes, compat) =
            read(&[("COMPAT", "django"), ("LOG_LISTING_FORMAT", "Pages")]).unwrap();
        assert_eq!(shapes.listing, ListingFormat::Pages);
        assert_eq!(shapes.reasons, ReasonText::Django);
        assert_eq!(compat.applied.len(), 2);
    }

    #[test]
    fn each_setting_alone_works_without_compat() {
        let (shapes, _) = read(&[("VERIFY_FAILURE_STATUS", "200")]).unwrap();
        assert_eq!(shapes.verify_failure, VerifyFailureStatus::Ok);
        assert_eq!(shapes.listing, ListingFormat::Pages);
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value) in [
            ("LOG_LISTING_FORMAT", "array"),
            ("LOG_REASON_TEXT", "text"),
            ("VERIFY_FAILURE_STATUS", "204"),
            ("COMPAT", "rails"),
        ] {
            let err = read(&[(name, value)]).unwrap_err();
            assert_eq!(err.name, name);
        }
    }

    #[test]
    fn django_texts_cover_the_old_reasons_and_keep_codes_for_new_ones() {
        let django = |r| ReasonText::Django.show(r).unwrap();
        assert_eq!(django(RejectReason::Unspecified), "");
        assert_eq!(django(RejectReason::UnknownUser), "User Not Exists");
        assert_eq!(django(RejectReason::BadPassword), "Wrong password");
        assert_eq!(
            django(RejectReason::LockedOut),
            "User blocked for too many attempt"
        );
        assert_eq!(django(RejectReason::RateLimited), "rate_limited");
        assert_eq!(django(RejectReason::Inactive), "inactive");
        assert_eq!(ReasonText::Codes.show(RejectReason::Unspecified), None);
        assert_eq!(
            ReasonText::Codes.show(RejectReason::BadPassword).as_deref(),
            Some("bad_password")
        );
    }
}

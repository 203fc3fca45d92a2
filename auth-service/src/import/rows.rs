//! Judging the rows read from the Django database: each becomes a typed
//! row or a [`RowError`] naming its table, id and field. What cannot be
//! mapped is refused (the operator fixes the source and runs again); the
//! one value mapped instead is a User-Agent longer than the edge keeps,
//! which is cut as a live one is.

use std::{fmt, net::IpAddr};

use proto::audit::v1::RejectReason;

use super::{
    clock::{Adjustment, LocalClock, Micros},
    source::{Bytes, RawLogin, RawUser},
};
use crate::hasher::django;

/// Longest username, as Django's `varchar(150)`.
const MAX_USERNAME_CHARS: usize = 150;
/// Longest email, as Django's `varchar(254)`.
const MAX_EMAIL_CHARS: usize = 254;
/// Longest password field, as Django's `varchar(128)`.
const MAX_PASSWORD_CHARS: usize = 128;
/// Longest User-Agent kept: what the edge keeps of a live one.
pub const MAX_USER_AGENT_CHARS: usize = common::metadata::MAX_USER_AGENT_CHARS;
/// How far ahead of this host's clock a time may lie (as audit-service
/// allows): more is a broken clock or a wrong `--time-zone`.
const MAX_FUTURE_MICROS: Micros = 5 * 60 * 1_000_000;

/// The original's reject reasons, each with the reason it maps to.
pub const REASONS: [(&str, RejectReason); 3] = [
    ("User Not Exists", RejectReason::UnknownUser),
    ("Wrong password", RejectReason::BadPassword),
    ("User blocked for too many attempt", RejectReason::LockedOut),
];

/// A value that cannot be brought over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// `accounts_user` or `accounts_loginlog`.
    pub table: &'static str,
    /// The row's id.
    pub id: i64,
    /// The column.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} id {}, {}: {}",
            self.table, self.id, self.field, self.reason
        )
    }
}

/// A time read with a rule (see [`Adjustment`]), for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeNote {
    /// Table, id and column.
    pub table: &'static str,
    pub id: i64,
    pub field: &'static str,
    /// The local time as stored.
    pub local: String,
    /// The rule applied.
    pub adjustment: Adjustment,
    /// The instant it became.
    pub utc: Micros,
}

/// An `accounts_user` row that can be brought over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DjangoUser {
    pub id: i64,
    pub username: String,
    /// May be empty.
    pub email: String,
    /// A Django hash, or the unusable marker (`!…`).
    pub password: String,
    pub is_superuser: bool,
    pub is_staff: bool,
    pub is_active: bool,
    pub date_joined: Micros,
    pub activation_date: Option<Micros>,
}

/// An `accounts_loginlog` row that can be brought over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DjangoLogin {
    pub id: i64,
    /// What was submitted (the original logs it as `email`).
    pub email: String,
    /// An address, or empty.
    pub ip: String,
    pub created_at: Micros,
    /// Cut to [`MAX_USER_AGENT_CHARS`] (see `user_agent_cut`).
    pub user_agent: Option<String>,
    /// The mapped reason; `Unspecified` on a success.
    pub reason: RejectReason,
    /// The original's text, as it was.
    pub original_reason: String,
    pub successful: bool,
    pub suspicious: bool,
    /// The Django account, if the row names one.
    pub user_id: Option<i64>,
    /// The User-Agent was longer than is kept and was cut.
    pub user_agent_cut: bool,
}

/// Judges one column of a row.
struct Cells<'a> {
    table: &'static str,
    id: i64,
    clock: &'a LocalClock,
    now: Micros,
    notes: &'a mut Vec<TimeNote>,
}

impl Cells<'_> {
    fn error(&self, field: &'static str, reason: impl Into<String>) -> RowError {
        RowError {
            table: self.table,
            id: self.id,
            field,
            reason: reason.into(),
        }
    }

    /// Text that is NULL-free, valid UTF-8 without NUL, and at most `max`
    /// characters (when given).
    fn text(
        &self,
        field: &'static str,
        raw: Bytes,
        max: Option<usize>,
    ) -> Result<String, RowError> {
        let raw = raw.ok_or_else(|| self.error(field, "is NULL"))?;
        self.utf8(field, raw, max)
    }

    fn utf8(
        &self,
        field: &'static str,
        raw: Vec<u8>,
        max: Option<usize>,
    ) -> Result<String, RowError> {
        let text = String::from_utf8(raw).map_err(|e| {
            self.error(
                field,
                format!(
                    "is not valid UTF-8 (at byte {}); fix the row in the Django database",
                    e.utf8_error().valid_up_to()
                ),
            )
        })?;
        if text.contains('\0') {
            return Err(self.error(field, "contains a NUL character"));
        }
        if let Some(max) = max {
            let chars = text.chars().count();
            if chars > max {
                return Err(self.error(
                    field,
                    format!("has {chars} characters, more than the original's limit of {max}"),
                ));
            }
        }
        Ok(text)
    }

    fn boolean(&self, field: &'static str, raw: Bytes) -> Result<bool, RowError> {
        match raw.as_deref() {
            Some(b"1") => Ok(true),
            Some(b"0") => Ok(false),
            None => Err(self.error(field, "is NULL")),
            Some(other) => Err(self.error(
                field,
                format!(
                    "is not a boolean (0 or 1): {:?}",
                    String::from_utf8_lossy(other)
                ),
            )),
        }
    }

    fn time(&mut self, field: &'static str, raw: Bytes) -> Result<Micros, RowError> {
        let text = self.text(field, raw, Some(64))?;
        let (at, adjustment) = self.clock.read(&text).map_err(|e| self.error(field, e))?;
        if at > self.now.saturating_add(MAX_FUTURE_MICROS) {
            return Err(self.error(
                field,
                format!(
                    "{text:?} in {} lies in the future; is --time-zone right?",
                    self.clock.name()
                ),
            ));
        }
        if let Some(adjustment) = adjustment {
            self.notes.push(TimeNote {
                table: self.table,
                id: self.id,
                field,
                local: text,
                adjustment,
                utc: at,
            });
        }
        Ok(at)
    }

    fn optional_time(
        &mut self,
        field: &'static str,
        raw: Bytes,
    ) -> Result<Option<Micros>, RowError> {
        match raw {
            None => Ok(None),
            raw => self.time(field, raw).map(Some),
        }
    }
}

impl DjangoUser {
    /// Judges one `accounts_user` row read at `now`; times needing a rule
    /// are added to `notes`.
    pub fn parse(
        raw: RawUser,
        clock: &LocalClock,
        now: Micros,
        notes: &mut Vec<TimeNote>,
    ) -> Result<Self, RowError> {
        let mut c = Cells {
            table: "accounts_user",
            id: raw.id,
            clock,
            now,
            notes,
        };
        let username = c.text("username", raw.username, Some(MAX_USERNAME_CHARS))?;
        if username.trim().is_empty() {
            return Err(c.error("username", "is empty"));
        }
        if username.chars().any(char::is_control) {
            return Err(c.error("username", "contains a control character"));
        }
        let email = c.text("email", raw.email, Some(MAX_EMAIL_CHARS))?;
        if email.chars().any(char::is_control) {
            return Err(c.error("email", "contains a control character"));
        }
        if !email.is_empty() && !email.contains('@') {
            return Err(c.error("email", format!("{email:?} is not an email address")));
        }
        let password = c.text("password", raw.password, Some(MAX_PASSWORD_CHARS))?;
        if !django::is_django(&password) {
            let shown = password.split('$').next().unwrap_or_default();
            return Err(c.error(
                "password",
                format!(
                    "is not a Django password hash (algorithm {shown:?} unknown); to import the \
                     account without a usable password, set it to '!' in the Django database"
                ),
            ));
        }
        Ok(Self {
            id: raw.id,
            username,
            email,
            password,
            is_superuser: c.boolean("is_superuser", raw.is_superuser)?,
            is_staff: c.boolean("is_staff", raw.is_staff)?,
            is_active: c.boolean("is_active", raw.is_active)?,
            date_joined: c.time("date_joined", raw.date_joined)?,
            activation_date: c.optional_time("activation_date", raw.activation_date)?,
        })
    }
}

impl DjangoLogin {
    /// Judges one `accounts_loginlog` row read at `now`; times needing a
    /// rule are added to `notes`.
    pub fn parse(
        raw: RawLogin,
        clock: &LocalClock,
        now: Micros,
        notes: &mut Vec<TimeNote>,
    ) -> Result<Self, RowError> {
        let mut c = Cells {
            table: "accounts_loginlog",
            id: raw.id,
            clock,
            now,
            notes,
        };
        if raw.id < 1 {
            return Err(c.error("id", "is not a positive number"));
        }
        let email = c.text("email", raw.email, Some(MAX_EMAIL_CHARS))?;
        // char(39) pads with spaces.
        let ip = c.text("ip", raw.ip, Some(64))?.trim().to_owned();
        if !ip.is_empty() && ip.parse::<IpAddr>().is_err() {
            return Err(c.error("ip", format!("{ip:?} is not an IP address")));
        }
        let created_at = c.time("created_at", raw.created_at)?;
        let (user_agent, user_agent_cut) = match raw.user_agent {
            None => (None, false),
            Some(raw) => {
                let text = c.utf8("user_agent", raw, None)?;
                let cut = text.chars().count() > MAX_USER_AGENT_CHARS;
                (Some(text.chars().take(MAX_USER_AGENT_CHARS).collect()), cut)
            }
        };
        let original_reason = c.text("reject_reason", raw.reject_reason, Some(256))?;
        let successful = c.boolean("successful", raw.successful)?;
        let reason = if original_reason.is_empty() {
            RejectReason::Unspecified
        } else {
            REASONS
                .iter()
                .find(|(text, _)| *text == original_reason)
                .map(|(_, reason)| *reason)
                .ok_or_else(|| {
                    c.error(
                        "reject_reason",
                        format!(
                            "{original_reason:?} is none of the original's reasons ('', {})",
                            REASONS
                                .iter()
                                .map(|(t, _)| format!("{t:?}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })?
        };
        if successful && reason != RejectReason::Unspecified {
            return Err(c.error(
                "reject_reason",
                format!("{original_reason:?} on a successful attempt (a success has none)"),
            ));
        }
        if !successful && reason == RejectReason::Unspecified {
            return Err(c.error("reject_reason", "is empty on a failed attempt"));
        }
        let user_id = match raw.user_id {
            None => None,
            Some(raw) => {
                let text = c.utf8("user_id", raw, Some(20))?;
                Some(
                    text.parse::<i64>()
                        .map_err(|_| c.error("user_id", format!("{text:?} is not an id")))?,
                )
            }
        };
        Ok(Self {
            id: raw.id,
            email,
            ip,
            created_at,
            user_agent,
            reason,
            original_reason,
            successful,
            suspicious: c.boolean("suspicious", raw.suspicious)?,
            user_id,
            user_agent_cut,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Micros = 1_800_000_000_000_000;

    fn b(text: &str) -> Bytes {
        Some(text.as_bytes().to_vec())
    }

    fn login() -> RawLogin {
        RawLogin {
            id: 7,
            email: b("ann@example.com"),
            ip: b("10.0.0.1                               "),
            created_at: b("2021-03-01 10:00:00.5"),
            user_agent: b("curl/8"),
            reject_reason: b("Wrong password"),
            successful: b("0"),
            suspicious: b("1"),
            user_id: b("3"),
        }
    }

    fn parse(raw: RawLogin) -> Result<DjangoLogin, RowError> {
        let clock = LocalClock::new("Asia/Tehran").unwrap();
        DjangoLogin::parse(raw, &clock, NOW, &mut Vec::new())
    }

    #[test]
    fn each_original_reason_maps_and_its_text_is_kept() {
        for (text, reason) in REASONS {
            let row = parse(RawLogin {
                reject_reason: b(text),
                ..login()
            })
            .unwrap();
            assert_eq!((row.reason, row.original_reason.as_str()), (reason, text));
        }
        let ok = parse(RawLogin {
            reject_reason: b(""),
            successful: b("1"),
            ..login()
        })
        .unwrap();
        assert_eq!(ok.reason, RejectReason::Unspecified);
        assert_eq!(ok.ip, "10.0.0.1");
        assert!(ok.suspicious);
    }

    #[test]
    fn what_cannot_be_mapped_is_refused_naming_row_and_field() {
        let cases = [
            (
                RawLogin {
                    reject_reason: b("wrong password"),
                    ..login()
                },
                "reject_reason",
            ),
            (
                RawLogin {
                    reject_reason: b("Wrong password"),
                    successful: b("1"),
                    ..login()
                },
                "reject_reason",
            ),
            (
                RawLogin {
                    reject_reason: b(""),
                    ..login()
                },
                "reject_reason",
            ),
            (
                RawLogin {
                    ip: b("localhost"),
                    ..login()
                },
                "ip",
            ),
            (
                RawLogin {
                    email: Some(b"ann\xff@example.com".to_vec()),
                    ..login()
                },
                "email",
            ),
            (
                RawLogin {
                    user_agent: b("curl\0"),
                    ..login()
                },
                "user_agent",
            ),
            (
                RawLogin {
                    created_at: b("2099-01-01 00:00:00"),
                    ..login()
                },
                "created_at",
            ),
            (
                RawLogin {
                    successful: b("true"),
                    ..login()
                },
                "successful",
            ),
            (
                RawLogin {
                    email: b(&"e".repeat(255)),
                    ..login()
                },
                "email",
            ),
        ];
        for (raw, field) in cases {
            let err = parse(raw).unwrap_err();
            assert_eq!(
                (err.table, err.id, err.field),
                ("accounts_loginlog", 7, field),
                "{err}"
            );
            assert!(
                err.to_string()
                    .starts_with(&format!("accounts_loginlog id 7, {field}: "))
            );
        }
    }

    #[test]
    fn a_long_user_agent_is_cut_as_a_live_one_is() {
        let row = parse(RawLogin {
            user_agent: b(&"é".repeat(10_000)),
            ..login()
        })
        .unwrap();
        assert!(row.user_agent_cut);
        assert_eq!(
            row.user_agent.unwrap().chars().count(),
            MAX_USER_AGENT_CHARS
        );
    }

    #[test]
    fn a_user_row_needs_a_django_hash_a_name_and_booleans() {
        let clock = LocalClock::new("Asia/Tehran").unwrap();
        let raw = RawUser {
            id: 4,
            password: b("pbkdf2_sha256$600000$salt$aGFzaA=="),
            username: b("carol"),
            email: b(""),
            is_superuser: b("0"),
            is_staff: b("1"),
            is_active: b("1"),
            date_joined: b("2021-09-21 23:30:00"),
            activation_date: None,
        };
        let mut notes = Vec::new();
        let user = DjangoUser::parse(raw.clone(), &clock, NOW, &mut notes).unwrap();
        assert!(user.is_staff && user.email.is_empty());
        assert_eq!(notes.len(), 1, "the repeated hour is reported");
        assert_eq!(notes[0].adjustment, Adjustment::Ambiguous);
        for (bad, field) in [
            (
                RawUser {
                    password: b("md5$x$y"),
                    ..raw.clone()
                },
                "password",
            ),
            (
                RawUser {
                    password: b(""),
                    ..raw.clone()
                },
                "password",
            ),
            (
                RawUser {
                    username: b("ca\0rol"),
                    ..raw.clone()
                },
                "username",
            ),
            (
                RawUser {
                    username: Some(b"car\xc3ol".to_vec()),
                    ..raw.clone()
                },
                "username",
            ),
            (
                RawUser {
                    username: b(&"u".repeat(151)),
                    ..raw.clone()
                },
                "username",
            ),
            (
                RawUser {
                    email: b("nobody"),
                    ..raw.clone()
                },
                "email",
            ),
            (
                RawUser {
                    is_active: None,
                    ..raw.clone()
                },
                "is_active",
            ),
        ] {
            let err = DjangoUser::parse(bad, &clock, NOW, &mut Vec::new()).unwrap_err();
            assert_eq!(err.field, field, "{err}");
        }
        let unusable = RawUser {
            password: b("!abc"),
            ..raw
        };
        assert!(DjangoUser::parse(unusable, &clock, NOW, &mut Vec::new()).is_ok());
    }
}

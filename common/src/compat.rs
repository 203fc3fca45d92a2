//! `COMPAT`: one switch that brings back the behaviours of the Django
//! service this system replaces, for the weeks its clients still need them.
//!
//! Each behaviour is an ordinary setting of its own (`JWT_ROTATE_REFRESH_TOKENS`,
//! `LOG_LISTING_FORMAT`, ...). `COMPAT=django` only changes their defaults:
//! a variable set explicitly still wins, so an operator can take one
//! behaviour back at a time. Every service that owns such a setting reads
//! `COMPAT` itself (auth-service and the gateway, and so the all-in-one
//! binary), and warns at start-up about each one the switch turned on and
//! what it costs.

use std::{fmt, str::FromStr};

use crate::config::ConfigError;

/// The variable.
pub const VAR: &str = "COMPAT";

/// Which service's behaviour to bring back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Compat {
    /// This system's own behaviour (`COMPAT` unset, empty or `off`).
    #[default]
    Off,
    /// The Django REST framework + simplejwt service's (`COMPAT=django`).
    Django,
}

impl Compat {
    /// `django` (any case), or `off`/`none`/empty for none; anything else
    /// stops start-up naming the variable.
    pub fn parse(raw: Option<&str>) -> Result<Self, ConfigError> {
        let Some(raw) = raw else {
            return Ok(Self::Off);
        };
        match raw.trim().to_ascii_lowercase().as_str() {
            "" | "off" | "none" => Ok(Self::Off),
            "django" => Ok(Self::Django),
            _ => Err(ConfigError::new(
                VAR,
                raw,
                "expected django, or off (the default) for none",
            )),
        }
    }

    /// The name operators write.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Django => "django",
        }
    }
}

/// A setting `COMPAT` chose because its own variable was unset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The setting's variable.
    pub name: &'static str,
    /// The value `COMPAT` gave it, as an operator would write it.
    pub value: String,
    /// What it costs, in a few words, for the start-up warning.
    pub cost: &'static str,
}

impl fmt::Display for Applied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={} ({})", self.name, self.value, self.cost)
    }
}

/// `COMPAT` as one service read it, and what it turned on there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compatibility {
    /// The switch.
    pub mode: Compat,
    /// The settings it set, in the order they were read.
    pub applied: Vec<Applied>,
}

impl Compatibility {
    /// Reads `COMPAT` through `lookup` (name ⇒ value, `None` when unset).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(Self {
            mode: Compat::parse(lookup(VAR).as_deref())?,
            applied: Vec::new(),
        })
    }

    /// The value of setting `name`: `raw` parsed when the variable is set
    /// (it wins over `COMPAT`), else `django` under `COMPAT=django`
    /// (recorded with its `cost` for [`Self::warn`]), else `default`.
    pub fn setting<T>(
        &mut self,
        name: &'static str,
        raw: Option<String>,
        default: T,
        django: T,
        cost: &'static str,
    ) -> Result<T, ConfigError>
    where
        T: FromStr + fmt::Display,
        T::Err: fmt::Display,
    {
        if let Some(raw) = raw.filter(|v| !v.trim().is_empty()) {
            return raw
                .trim()
                .parse()
                .map_err(|e: T::Err| ConfigError::new(name, &raw, e.to_string()));
        }
        match self.mode {
            Compat::Off => Ok(default),
            Compat::Django => {
                self.applied.push(Applied {
                    name,
                    value: django.to_string(),
                    cost,
                });
                Ok(django)
            }
        }
    }

    /// Logs one warning naming every setting `COMPAT` turned on in
    /// `service`, with its cost; nothing when it turned none on.
    pub fn warn(&self, service: &str) {
        if self.applied.is_empty() {
            return;
        }
        let settings: Vec<String> = self.applied.iter().map(Applied::to_string).collect();
        tracing::warn!(
            service,
            compat = self.mode.as_str(),
            settings = settings.join("; "),
            "COMPAT turned on the original service's behaviour, each part at the cost \
             named with it; turn COMPAT off once the old clients are gone \
             (MIGRATING.md)"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn read(pairs: &[(&str, &str)]) -> Result<(Compatibility, bool, u16), ConfigError> {
        let env: HashMap<&str, &str> = pairs.iter().copied().collect();
        let get = |name: &str| env.get(name).map(|v| (*v).to_owned());
        let mut compat = Compatibility::from_lookup(get)?;
        let rotate = compat.setting("ROTATE", get("ROTATE"), true, false, "reuse")?;
        let status = compat.setting("STATUS", get("STATUS"), 400, 200, "200")?;
        Ok((compat, rotate, status))
    }

    #[test]
    fn unset_compat_keeps_every_default_and_applies_nothing() {
        for pairs in [&[][..], &[("COMPAT", "")], &[("COMPAT", "OFF")]] {
            let (compat, rotate, status) = read(pairs).unwrap();
            assert_eq!(compat.mode, Compat::Off);
            assert_eq!((rotate, status), (true, 400));
            assert!(compat.applied.is_empty());
        }
    }

    #[test]
    fn django_sets_each_unset_setting_and_records_it() {
        let (compat, rotate, status) = read(&[("COMPAT", " Django ")]).unwrap();
        assert_eq!(compat.mode, Compat::Django);
        assert_eq!((rotate, status), (false, 200));
        let shown: Vec<String> = compat.applied.iter().map(Applied::to_string).collect();
        assert_eq!(shown, ["ROTATE=false (reuse)", "STATUS=200 (200)"]);
    }

    #[test]
    fn an_explicit_variable_wins_over_compat() {
        let (compat, rotate, status) = read(&[("COMPAT", "django"), ("ROTATE", "true")]).unwrap();
        assert_eq!((rotate, status), (true, 200));
        assert_eq!(compat.applied.len(), 1);
        assert_eq!(compat.applied[0].name, "STATUS");
    }

    #[test]
    fn an_unknown_compat_value_names_the_variable() {
        let err = read(&[("COMPAT", "drf")]).unwrap_err();
        assert_eq!(err.name, "COMPAT");
        assert!(err.to_string().contains("django"), "{err}");
        // A lookalike (Cyrillic а) or a list is no spelling of django.
        for bad in ["dj\u{430}ngo", "django,rails", "django2", "1"] {
            assert!(Compat::parse(Some(bad)).is_err(), "{bad}");
        }
        assert_eq!(Compat::parse(Some("DJANGO")).unwrap(), Compat::Django);
    }

    #[test]
    fn a_bad_explicit_value_names_its_variable() {
        let err = read(&[("COMPAT", "django"), ("ROTATE", "maybe")]).unwrap_err();
        assert_eq!(err.name, "ROTATE");
    }
}

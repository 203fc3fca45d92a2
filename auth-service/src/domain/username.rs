use super::FieldError;

/// A username under Django's rule (1-150 of letters, digits and `@.+-_`), so
/// accounts migrated from the old system stay valid. Uniqueness is
/// case-insensitive: `Alice` and `alice` cannot both exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    /// Longest accepted username, in characters.
    pub const MAX_CHARS: usize = 150;

    /// Validates a submitted username (surrounding whitespace is dropped).
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(FieldError::required("username"));
        }
        if s.chars().count() > Self::MAX_CHARS {
            return Err(FieldError::new(
                "username",
                "Ensure this field has no more than 150 characters.",
            ));
        }
        let ok = s
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '@' | '.' | '+' | '-' | '_'));
        if !ok {
            return Err(FieldError::new(
                "username",
                "Enter a valid username. This value may contain only letters, numbers, and @/./+/-/_ characters.",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// The username as the user typed it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key uniqueness and lookups use.
    pub fn lookup_key(&self) -> String {
        self.0.to_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_django_characters_and_trims() {
        assert_eq!(
            Username::parse(" a.b+c-d_e@f ").unwrap().as_str(),
            "a.b+c-d_e@f"
        );
        assert_eq!(Username::parse("Zoë").unwrap().lookup_key(), "zoë");
    }

    #[test]
    fn rejects_empty_long_and_odd_characters() {
        assert_eq!(
            Username::parse("  ").unwrap_err().message,
            "This field is required."
        );
        assert!(Username::parse(&"a".repeat(151)).is_err());
        assert!(Username::parse(&"a".repeat(150)).is_ok());
        assert!(Username::parse("a b").is_err());
        assert!(Username::parse("a/b").is_err());
    }
}

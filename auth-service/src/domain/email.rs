use super::FieldError;

/// A syntactically valid email address (RFC 5322 addr-spec, checked by the
/// `email_address` crate), at most 254 bytes as SMTP allows. The domain is
/// lower-cased on input; uniqueness and lookups ignore case entirely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailAddress(String);

impl EmailAddress {
    /// Validates a submitted address for `field`.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, FieldError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(FieldError::required(field));
        }
        let invalid = || FieldError::new(field, "Enter a valid email address.");
        if s.len() > 254 {
            return Err(invalid());
        }
        let parsed = email_address::EmailAddress::parse_with_options(
            s,
            email_address::Options::default()
                .without_display_text()
                .without_domain_literal(),
        )
        .map_err(|_| invalid())?;
        // A dotted domain: `user@localhost` cannot receive our mail.
        if !parsed.domain().contains('.') || parsed.domain().ends_with('.') {
            return Err(invalid());
        }
        Ok(Self(format!(
            "{}@{}",
            parsed.local_part(),
            parsed.domain().to_lowercase()
        )))
    }

    /// The address as stored and mailed to.
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
    fn lowercases_the_domain_only_but_looks_up_case_insensitively() {
        let e = EmailAddress::parse("email", " Ann@Example.COM ").unwrap();
        assert_eq!(e.as_str(), "Ann@example.com");
        assert_eq!(e.lookup_key(), "ann@example.com");
    }

    #[test]
    fn rejects_malformed_addresses() {
        for bad in [
            "",
            "ann",
            "ann@",
            "@example.com",
            "ann@localhost",
            "a b@example.com",
            "Ann <ann@example.com>",
        ] {
            assert!(
                EmailAddress::parse("email", bad).is_err(),
                "{bad:?} was accepted"
            );
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(EmailAddress::parse("email", &long).is_err());
    }
}

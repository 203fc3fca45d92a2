use super::{EmailAddress, FieldError, Username};

/// A password that passed the policy. The text never reaches `Debug` output.
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

impl Password {
    /// Fewest characters accepted (NIST 800-63B minimum).
    pub const MIN_CHARS: usize = 8;
    /// Most bytes accepted: bounds argon2's input so huge bodies cost nothing.
    pub const MAX_BYTES: usize = 1024;

    /// Checks a new password against the policy; reports every broken rule.
    pub fn parse_new(
        raw: &str,
        username: Option<&Username>,
        email: Option<&EmailAddress>,
    ) -> Result<Self, Vec<FieldError>> {
        if raw.is_empty() {
            return Err(vec![FieldError::required("password")]);
        }
        let mut errors = Vec::new();
        if raw.chars().count() < Self::MIN_CHARS {
            errors.push(FieldError::new(
                "password",
                "This password is too short. It must contain at least 8 characters.",
            ));
        }
        if raw.len() > Self::MAX_BYTES {
            errors.push(FieldError::new(
                "password",
                "This password is too long. It must contain at most 1024 bytes.",
            ));
        }
        if raw.chars().all(|c| c.is_ascii_digit()) {
            errors.push(FieldError::new(
                "password",
                "This password is entirely numeric.",
            ));
        }
        let lowered = raw.to_lowercase();
        if username.is_some_and(|u| lowered == u.lookup_key()) {
            errors.push(FieldError::new(
                "password",
                "The password is too similar to the username.",
            ));
        }
        if email.is_some_and(|e| {
            let key = e.lookup_key();
            lowered == key || key.split('@').next() == Some(lowered.as_str())
        }) {
            errors.push(FieldError::new(
                "password",
                "The password is too similar to the email address.",
            ));
        }
        if errors.is_empty() {
            Ok(Self(raw.to_owned()))
        } else {
            Err(errors)
        }
    }

    /// The password text, for hashing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> Username {
        Username::parse("alice").unwrap()
    }
    fn email() -> EmailAddress {
        EmailAddress::parse("email", "alice.smith@example.com").unwrap()
    }

    #[test]
    fn accepts_a_reasonable_password() {
        assert!(Password::parse_new("correct horse", Some(&user()), Some(&email())).is_ok());
    }

    #[test]
    fn rejects_short_numeric_long_and_identity_passwords() {
        assert!(Password::parse_new("short", None, None).is_err());
        assert!(Password::parse_new("1234567890", None, None).is_err());
        assert!(Password::parse_new(&"x".repeat(1025), None, None).is_err());
        assert!(Password::parse_new(&"x".repeat(1024), None, None).is_ok());
        assert!(
            Password::parse_new(
                "ALICEalice",
                Some(&Username::parse("aliceALICE").unwrap()),
                None
            )
            .is_err()
        );
        assert!(Password::parse_new("alice.smith@example.com", None, Some(&email())).is_err());
        assert!(Password::parse_new("alice.smith", None, Some(&email())).is_err());
    }

    #[test]
    fn reports_every_broken_rule() {
        let errs = Password::parse_new("1234", None, None).unwrap_err();
        assert_eq!(errs.len(), 2);
    }

    #[test]
    fn debug_hides_the_text() {
        let p = Password::parse_new("correct horse", None, None).unwrap();
        assert_eq!(format!("{p:?}"), "Password(***)");
    }
}

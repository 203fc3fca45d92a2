use unicode_normalization::UnicodeNormalization;
use unicode_security::{GeneralSecurityProfile, MixedScript};

use super::{FieldError, names};

/// A username under Django's rule (1-150 of letters, digits and `@.+-_`), so
/// accounts migrated from the old system stay valid, kept in NFKC as the
/// Django service kept it (`ａｄｍｉｎ` is `admin`, `ﬁ` is `fi`). Letters
/// outside ASCII must be ones Unicode's TR39 allows in identifiers (no
/// invisible fillers, no obsolete scripts), and one username is written in
/// one script (`аdmin` with a Cyrillic `а` is refused). Uniqueness is by
/// [`Username::lookup_key`] (case folded) and, across every account's
/// username and email, by lookalike (see [`names`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    /// Longest accepted username, in characters.
    pub const MAX_CHARS: usize = 150;

    /// Validates a submitted username (surrounding whitespace is dropped,
    /// the rest is normalised to NFKC).
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(FieldError::required("username"));
        }
        let too_long = || {
            FieldError::new(
                "username",
                "Ensure this field has no more than 150 characters.",
            )
        };
        // Checked before normalising too, so a huge value costs nothing.
        if s.chars().count() > Self::MAX_CHARS {
            return Err(too_long());
        }
        let s: String = s.nfkc().collect();
        if s.chars().count() > Self::MAX_CHARS {
            return Err(too_long());
        }
        let ok = s.chars().all(|c| {
            matches!(c, '@' | '.' | '+' | '-' | '_')
                || c.is_ascii_alphanumeric()
                || (c.is_alphanumeric() && c.identifier_allowed())
        });
        if !ok {
            return Err(FieldError::new(
                "username",
                "Enter a valid username. This value may contain only letters, numbers, and @/./+/-/_ characters.",
            ));
        }
        if !s.as_str().is_single_script() {
            return Err(FieldError::new(
                "username",
                "Enter a username written in one script (letters that only look alike, such as Latin and Cyrillic, cannot be mixed).",
            ));
        }
        Ok(Self(s))
    }

    /// The username as stored and shown (NFKC).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key lookups use and `username_lower` holds: NFKC, case folded.
    pub fn lookup_key(&self) -> String {
        names::fold(&self.0)
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

    #[test]
    fn compatibility_forms_are_stored_in_nfkc_and_fold_to_one_key() {
        assert_eq!(Username::parse("ａｄｍｉｎ").unwrap().as_str(), "admin");
        assert_eq!(Username::parse("ﬁnn").unwrap().as_str(), "finn");
        // A combining accent composes into the letter it follows.
        let decomposed = Username::parse("zoe\u{308}").unwrap();
        assert_eq!(decomposed.as_str(), "zo\u{eb}");
        assert_eq!(
            Username::parse("STRASSE").unwrap().lookup_key(),
            Username::parse("straße").unwrap().lookup_key()
        );
    }

    #[test]
    fn invisible_control_and_mixed_script_names_are_refused() {
        for bad in [
            "ad\u{200d}min", // zero-width joiner
            "ad\u{200b}min", // zero-width space
            "admin\u{202e}", // right-to-left override
            "ad\u{0}min",    // NUL
            "ad\u{3164}min", // Hangul filler: a "letter" that shows nothing
            "ad\u{ad}min",   // soft hyphen
            "\u{430}dmin",   // Cyrillic а among Latin letters
            "раypal",        // Cyrillic р and а
        ] {
            assert!(Username::parse(bad).is_err(), "{bad:?} was accepted");
        }
        // One script other than Latin is fine, and so are digits with it.
        assert!(Username::parse("пётр_1").is_ok());
        assert!(Username::parse("田中さん").is_ok());
    }

    #[test]
    fn expansion_by_normalisation_counts_against_the_limit() {
        // U+FDFA becomes 18 characters in NFKC (and is refused as a
        // non-letter anyway); 149 Latin letters plus one ligature that
        // becomes two exceed 150.
        let long = format!("{}\u{fb01}", "a".repeat(149));
        assert!(Username::parse(&long).is_err());
    }
}

use unicode_normalization::UnicodeNormalization;

use super::{FieldError, names};

/// A deliverable email address: an RFC 5322 addr-spec (checked by the
/// `email_address` crate) without the forms a mail server reads otherwise
/// than a person does, at most 254 bytes as SMTP allows.
///
/// One mailbox is one account: the domain is stored in IDNA ASCII
/// (`bücher.de` as `xn--bcher-kva.de`, what the mail relay needs), lower
/// case; the local part in NFC (a macOS keyboard's decomposed `é` is the
/// composed one). Refused: MIME encoded-words (`=?utf-8?q?x?=@…`, which
/// some servers decode into another mailbox), quoted local parts and
/// comments (one mailbox spelled many ways), domain literals, undotted
/// domains. A non-ASCII local part parses (lookups may name one) but can be
/// mailed only through a relay that speaks SMTPUTF8: registration checks
/// [`EmailAddress::needs_smtputf8`] against the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailAddress(String);

/// The message for an address that can never receive our mail here.
pub const SMTPUTF8_REFUSED: &str = "Enter an address with only ASCII characters before the @: our mail server cannot deliver to other addresses.";

impl EmailAddress {
    /// Most bytes in an address (RFC 5321's path limit less the brackets).
    pub const MAX_BYTES: usize = 254;

    /// Validates a submitted address for `field`.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, FieldError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(FieldError::required(field));
        }
        let invalid = || FieldError::new(field, "Enter a valid email address.");
        // Checked before normalising too, so a huge value costs nothing.
        if s.len() > Self::MAX_BYTES || s.chars().any(char::is_control) {
            return Err(invalid());
        }
        if s.contains("=?") && s.contains("?=") {
            return Err(FieldError::new(
                field,
                "Enter a plain email address: MIME encoded words (=?...?=) are not accepted.",
            ));
        }
        let Some((local, domain)) = s.rsplit_once('@') else {
            return Err(invalid());
        };
        // A domain literal (`[127.0.0.1]`) is not a mailbox we send to.
        if domain.contains(['[', ']']) {
            return Err(invalid());
        }
        if local.contains(['"', '(', ')', '\\']) || domain.contains(['(', ')']) {
            return Err(FieldError::new(
                field,
                "Enter a plain email address: quoted text and comments are not accepted.",
            ));
        }
        let local: String = local.nfc().collect();
        let domain = names::ascii_domain(domain).ok_or_else(invalid)?;
        // A dotted domain: `user@localhost` cannot receive our mail.
        if !domain.contains('.') || domain.ends_with('.') {
            return Err(invalid());
        }
        let address = format!("{local}@{domain}");
        if address.len() > Self::MAX_BYTES {
            return Err(invalid());
        }
        email_address::EmailAddress::parse_with_options(
            &address,
            email_address::Options::default()
                .without_display_text()
                .without_domain_literal(),
        )
        .map_err(|_| invalid())?;
        Ok(Self(address))
    }

    /// The address as stored and mailed to.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key lookups use and `email_lower` holds: the local part case
    /// folded (the domain is already lower-case ASCII).
    pub fn lookup_key(&self) -> String {
        names::email_fold(&self.0)
    }

    /// Whether mailing it needs a relay that speaks SMTPUTF8 (RFC 6531):
    /// its local part is not ASCII (the domain always is).
    pub fn needs_smtputf8(&self) -> bool {
        !self.0.is_ascii()
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
            "ann@exa\u{0}mple.com",
            "an\u{0}n@example.com",
            "ann@[127.0.0.1]",
        ] {
            assert_eq!(
                EmailAddress::parse("email", bad).map_err(|e| e.message),
                Err(if bad.is_empty() {
                    "This field is required.".to_owned()
                } else {
                    "Enter a valid email address.".to_owned()
                }),
                "{bad:?}"
            );
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(EmailAddress::parse("email", &long).is_err());
    }

    #[test]
    fn encoded_words_quotes_and_comments_are_refused_with_a_reason() {
        for (bad, says) in [
            ("=?utf-8?q?x?=@example.test", "encoded"),
            ("=?utf-8?b?dmlj?=@example.com", "encoded"),
            ("\"vic\"@example.com", "quoted"),
            ("\"vic@x\"@example.com", "quoted"),
            ("vic(comment)@example.com", "comments"),
            ("vic@(comment)example.com", "comments"),
        ] {
            let err = EmailAddress::parse("email", bad).unwrap_err();
            assert_eq!(err.field, "email");
            assert!(err.message.contains(says), "{bad:?}: {}", err.message);
        }
    }

    #[test]
    fn international_domains_are_stored_in_ascii_and_local_parts_in_nfc() {
        let idn = EmailAddress::parse("email", "ann@Bücher.DE").unwrap();
        assert_eq!(idn.as_str(), "ann@xn--bcher-kva.de");
        assert!(!idn.needs_smtputf8());
        assert_eq!(
            EmailAddress::parse("email", "ann@xn--bcher-kva.de").unwrap(),
            idn
        );
        let nfd = EmailAddress::parse("email", "jose\u{301}@example.com").unwrap();
        let nfc = EmailAddress::parse("email", "jos\u{e9}@example.com").unwrap();
        assert_eq!(nfd, nfc);
        assert_eq!(nfd.lookup_key(), nfc.lookup_key());
        assert!(nfc.needs_smtputf8());
    }
}

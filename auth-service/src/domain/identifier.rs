use sha2::Digest;

use super::{EmailAddress, names};

/// The keys one login identifier is looked up by, in the order they win.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginLookup {
    /// The email fold, when the identifier is an email address: that
    /// email's account wins over any account whose username looks like it.
    pub email: Option<String>,
    /// The identifier lower-cased as before issue #14: the key an account
    /// whose new key collided with an older account's at the migration
    /// still holds (see `store::identities`).
    pub legacy: String,
    /// The username fold (NFKC, case folded).
    pub username: String,
}

/// What a client typed to log in: a username or an email, whichever it
/// chose. Unlike [`super::Username`] it is never refused for its content:
/// every login is decided and logged, so the type's job is to say what the
/// text may be used for (a lookup, a counter name, a log field) without
/// letting attacker-chosen bytes (NUL, 60 KB names) reach a key column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginIdentifier(String);

impl LoginIdentifier {
    /// Longest identifier, in characters, that could name an account (an
    /// email of 254 bytes has at most 254 characters; usernames stop at
    /// 150). Also the most of it the log keeps.
    pub const MAX_CHARS: usize = 254;

    /// The submitted text without surrounding whitespace.
    pub fn new(raw: &str) -> Self {
        Self(raw.trim().to_owned())
    }

    /// Whether nothing but whitespace was sent.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// As typed (trimmed).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key accounts are looked up by (NFKC, case folded, as
    /// usernames are), or `None` when the text could name no account at
    /// all (it holds NUL, which PostgreSQL text refuses, or is longer than
    /// any username or email), so it is not looked up.
    pub fn lookup_key(&self) -> Option<String> {
        could_name_an_account(&self.0).then(|| names::fold(&self.0))
    }

    /// Every key the account is looked up by (see [`LoginLookup`]), or
    /// `None` as for [`Self::lookup_key`].
    pub fn lookup(&self) -> Option<LoginLookup> {
        let username = self.lookup_key()?;
        Some(LoginLookup {
            email: EmailAddress::parse("username", &self.0)
                .ok()
                .map(|e| e.lookup_key()),
            legacy: self.0.to_lowercase(),
            username,
        })
    }

    /// The name a counter of a non-existent account is kept under: the
    /// lookup key, or a digest of the text when it has none.
    pub fn counter_name(&self) -> String {
        self.lookup_key().unwrap_or_else(|| {
            let digest = sha2::Sha256::digest(self.0.to_lowercase().as_bytes());
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            format!("#{hex}")
        })
    }

    /// The text the log keeps: cut to [`Self::MAX_CHARS`] characters.
    pub fn for_log(&self) -> String {
        self.0.chars().take(Self::MAX_CHARS).collect()
    }
}

fn could_name_an_account(text: &str) -> bool {
    !text.contains('\0') && text.chars().count() <= LoginIdentifier::MAX_CHARS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surrounding_whitespace_is_not_part_of_it() {
        let id = LoginIdentifier::new("  Alice@Example.com\t");
        assert_eq!(id.as_str(), "Alice@Example.com");
        assert_eq!(id.lookup_key().as_deref(), Some("alice@example.com"));
        assert!(LoginIdentifier::new(" \n ").is_empty());
    }

    #[test]
    fn text_no_account_can_have_is_not_looked_up_and_counted_by_digest() {
        let edge = LoginIdentifier::new(&"y".repeat(LoginIdentifier::MAX_CHARS));
        assert_eq!(edge.counter_name(), "y".repeat(254));
        for odd in ["ad\0min".to_owned(), "x".repeat(255)] {
            let id = LoginIdentifier::new(&odd);
            assert_eq!(id.lookup_key(), None);
            let name = id.counter_name();
            assert!(name.starts_with('#') && name.len() == 65, "{name}");
        }
        assert_eq!(
            LoginIdentifier::new(&"X".repeat(300)).counter_name(),
            LoginIdentifier::new(&"x".repeat(300)).counter_name(),
            "case does not make a new counter"
        );
    }

    #[test]
    fn lookups_normalise_as_registration_does() {
        let wide = LoginIdentifier::new("ＡＤＭＩＮ").lookup().unwrap();
        assert_eq!(wide.username, "admin");
        assert_eq!(wide.email, None);
        let email = LoginIdentifier::new("VIC@Example.com").lookup().unwrap();
        assert_eq!(email.email.as_deref(), Some("vic@example.com"));
        assert_eq!(email.username, "vic@example.com");
        let idn = LoginIdentifier::new("ann@bücher.de").lookup().unwrap();
        assert_eq!(idn.email.as_deref(), Some("ann@xn--bcher-kva.de"));
        assert_eq!(idn.legacy, "ann@bücher.de");
        assert_eq!(LoginIdentifier::new("a\0b").lookup(), None);
    }

    #[test]
    fn the_log_keeps_at_most_254_characters() {
        let id = LoginIdentifier::new(&"🦀".repeat(300));
        assert_eq!(id.for_log().chars().count(), 254);
    }
}

use sha2::Digest;

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

    /// The key accounts are looked up by (lower-cased), or `None` when the
    /// text could name no account at all (it holds NUL, which PostgreSQL
    /// text refuses, or is longer than any username or email), so it is
    /// not looked up.
    pub fn lookup_key(&self) -> Option<String> {
        let lowered = self.0.to_lowercase();
        could_name_an_account(&lowered).then_some(lowered)
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

fn could_name_an_account(lowered: &str) -> bool {
    !lowered.contains('\0') && lowered.chars().count() <= LoginIdentifier::MAX_CHARS
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
    fn the_log_keeps_at_most_254_characters() {
        let id = LoginIdentifier::new(&"🦀".repeat(300));
        assert_eq!(id.for_log().chars().count(), 254);
    }
}

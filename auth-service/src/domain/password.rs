use std::{borrow::Cow, collections::HashSet, sync::LazyLock};

use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfkc_quick};

use super::{EmailAddress, FieldError, Username};

/// The 10,000 most common passwords, most common first, one per line
/// (lower-case). Source: the `passwords` frequency list of zxcvbn 4.5.0
/// (PyPI package `zxcvbn`, MIT licence, © Dropbox, Inc. and contributors),
/// first 10,000 entries.
static COMMON_PASSWORDS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../../data/common-passwords.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
});

/// A password as it is hashed and verified: NFKC, as NIST SP 800-63B
/// 5.1.1.2 asks of verifiers that accept Unicode ("the verifier SHOULD
/// apply the Normalization Process for Stabilized Strings using either the
/// NFKC or NFKD normalization"), so the same password typed as composed
/// (most keyboards) or decomposed (macOS input can produce it) characters
/// is one password. NFKC over NFKD: ASCII and most typed text is already
/// NFKC, so it is borrowed unchanged. The one place this happens; the
/// hasher calls it on every hash and verify.
pub fn normalise(password: &str) -> Cow<'_, str> {
    match is_nfkc_quick(password.chars()) {
        IsNormalized::Yes => Cow::Borrowed(password),
        _ => {
            let nfkc: String = password.nfkc().collect();
            if nfkc == password {
                Cow::Borrowed(password)
            } else {
                Cow::Owned(nfkc)
            }
        }
    }
}

/// Whether `password` is on the common list (compared lower-cased, so
/// `Password1` counts as `password1`).
pub fn is_common(password: &str) -> bool {
    COMMON_PASSWORDS.contains(password.to_lowercase().as_str())
}

/// Levenshtein distance over characters (both inputs are short: a
/// password of at most 1024 bytes against a name).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Whether the (lower-cased) password is too close to `name`: within two
/// edits of it, or little more than it (forwards or backwards) — fewer
/// than 4 characters remain once every occurrence is removed. Names under
/// 3 characters are too short to judge.
fn too_similar(lowered: &str, name: &str) -> bool {
    if name.chars().count() < 3 {
        return false;
    }
    let reversed: String = name.chars().rev().collect();
    let rest = lowered.replace(name, "").replace(&reversed, "");
    edit_distance(lowered, name) <= 2 || rest.chars().count() < 4
}

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

    /// Checks a new password (in NFKC, see [`normalise`]) against the
    /// policy; reports every broken rule.
    pub fn parse_new(
        raw: &str,
        username: Option<&Username>,
        email: Option<&EmailAddress>,
    ) -> Result<Self, Vec<FieldError>> {
        if raw.is_empty() {
            return Err(vec![FieldError::required("password")]);
        }
        // Over the byte cap is refused below before normalising costs much:
        // NFKC of 1 KiB is cheap, of a 60 MB body it is not.
        let normalised = if raw.len() > Self::MAX_BYTES {
            Cow::Borrowed(raw)
        } else {
            normalise(raw)
        };
        let raw = normalised.as_ref();
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
        if is_common(raw) {
            errors.push(FieldError::new("password", "This password is too common."));
        }
        let lowered = raw.to_lowercase();
        if username.is_some_and(|u| too_similar(&lowered, &u.lookup_key())) {
            errors.push(FieldError::new(
                "password",
                "The password is too similar to the username.",
            ));
        }
        if email.is_some_and(|e| {
            let key = e.lookup_key();
            too_similar(&lowered, &key)
                || key
                    .split('@')
                    .next()
                    .is_some_and(|local| too_similar(&lowered, local))
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

    /// The password text (NFKC), for hashing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_common_list_has_ten_thousand_entries_and_catches_favourites() {
        assert_eq!(COMMON_PASSWORDS.len(), 10_000);
        assert!(is_common("Password1") || is_common("password"));
        assert!(is_common("qwertyuiop"));
        assert!(!is_common("correct-horse-battery-9"));
        assert!(Password::parse_new("qwertyuiop", None, None).is_err());
    }

    #[test]
    fn passwords_close_to_the_username_or_email_are_refused() {
        let u = Username::parse("alice").unwrap();
        let e = EmailAddress::parse("email", "bob.smith@example.com").unwrap();
        for bad in [
            "alice123",
            "Alice!!",
            "ecila-99",
            "alicee1",
            "bob.smith1",
            "bob.smith@example.co",
        ] {
            assert!(
                Password::parse_new(bad, Some(&u), Some(&e)).is_err(),
                "{bad}"
            );
        }
        for good in ["alice-pass-1", "tiger-lamp-42"] {
            assert!(
                Password::parse_new(good, Some(&u), Some(&e)).is_ok(),
                "{good}"
            );
        }
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

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
        // Too short, entirely numeric, and on the common list.
        let errs = Password::parse_new("1234", None, None).unwrap_err();
        assert_eq!(errs.len(), 3);
    }

    #[test]
    fn composed_and_decomposed_forms_are_one_password() {
        let composed = Password::parse_new("caf\u{e9}-cr\u{e8}me-42", None, None).unwrap();
        let decomposed = Password::parse_new("cafe\u{301}-cre\u{300}me-42", None, None).unwrap();
        assert_eq!(composed.expose(), decomposed.expose());
        assert_eq!(normalise("ﬁne-ｗｉｄｅ"), "fine-wide");
        assert!(matches!(normalise("plain ascii"), Cow::Borrowed(_)));
    }

    #[test]
    fn debug_hides_the_text() {
        let p = Password::parse_new("correct horse", None, None).unwrap();
        assert_eq!(format!("{p:?}"), "Password(***)");
    }
}

//! The keys one account's names are known by (issue #14).
//!
//! Two kinds of key, both total functions of text (no input is refused
//! here; the parsers refuse):
//! - the *fold* ([`fold`], [`email_fold`]): what "the same name" means for
//!   lookups and the `username_lower` / `email_lower` columns. A username
//!   is folded as NFKC, Unicode default case folding, NFKC again (Unicode's
//!   NFKC_Casefold shape), so `ａｄｍｉｎ`, `ADMIN` and `admin` are one name,
//!   as the old Django service's NFKC normalisation made them. An email is
//!   its local part in NFC, case folded, `@`, its domain in IDNA ASCII
//!   (UTS 46), lower-cased.
//! - the *claim* ([`claims`]): the TR39 confusable skeleton of a fold, so
//!   `аdmin` (Cyrillic а) and `admin` claim one key. Every account claims
//!   its username's, its email's and, for a username shaped like an email,
//!   that email's key, all in ONE key space (`account_names`): a username
//!   equal to or looking like another account's email collides with it on
//!   insert, in the transaction that creates the account.
//!
//! Claims use the skeleton alone: a fold equal to another fold has an equal
//! skeleton, so a separate fold claim would refuse nothing more.

use unicode_normalization::UnicodeNormalization;

/// A username's (or any identifier's) fold: NFKC, default case fold, NFKC.
pub fn fold(text: &str) -> String {
    let nfkc: String = text.nfkc().collect();
    caseless::default_case_fold_str(&nfkc).nfkc().collect()
}

/// An email's lookup key: NFC local part, case folded, `@`, the domain in
/// IDNA ASCII, lower-cased. Text without an `@` is folded as a whole; a
/// domain IDNA refuses is kept lower-cased (it then names no account that
/// registration let in).
pub fn email_fold(text: &str) -> String {
    let Some((local, domain)) = text.rsplit_once('@') else {
        return caseless::default_case_fold_str(&text.nfc().collect::<String>());
    };
    let local: String = local.nfc().collect();
    let local: String = caseless::default_case_fold_str(&local).nfc().collect();
    format!(
        "{local}@{}",
        ascii_domain(domain).unwrap_or_else(|| domain.to_lowercase())
    )
}

/// The domain in IDNA ASCII (`bücher.de` → `xn--bcher-kva.de`),
/// lower-cased; `None` when UTS 46 refuses it.
pub fn ascii_domain(domain: &str) -> Option<String> {
    idna::domain_to_ascii(domain)
        .ok()
        .filter(|d| !d.is_empty())
        .map(|d| d.to_ascii_lowercase())
}

/// The TR39 skeleton of a fold: lookalikes share it.
pub fn skeleton(folded: &str) -> String {
    unicode_security::skeleton(folded).collect()
}

/// An email's claim: the skeleton of its fold with the domain in Unicode
/// (so a domain spelled with a Cyrillic `а` claims what the Latin one does,
/// which its `xn--` form would hide).
pub fn email_skeleton(text: &str) -> String {
    let folded = email_fold(text);
    match folded.rsplit_once('@') {
        Some((local, domain)) => {
            let (unicode, _) = idna::domain_to_unicode(domain);
            skeleton(&format!("{local}@{}", fold(&unicode)))
        }
        None => skeleton(&folded),
    }
}

/// Which request field a claimed key protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimKind {
    /// The username's own key.
    Username,
    /// The key of a username that is shaped like an email.
    UsernameAsEmail,
    /// The email's key.
    Email,
}

impl ClaimKind {
    /// As stored in `account_names.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Username => "username",
            Self::UsernameAsEmail => "username_email",
            Self::Email => "email",
        }
    }

    /// The request field a collision on this key is reported under.
    pub fn field(self) -> &'static str {
        match self {
            Self::Username | Self::UsernameAsEmail => "username",
            Self::Email => "email",
        }
    }
}

/// The keys the account (`username`, `email`) claims, each once, username
/// first: what `account_names` holds for it.
pub fn claims(username: &str, email: &str) -> Vec<(String, ClaimKind)> {
    let mut keys: Vec<(String, ClaimKind)> = Vec::with_capacity(3);
    let mut add = |key: String, kind: ClaimKind| {
        if !keys.iter().any(|(k, _)| *k == key) {
            keys.push((key, kind));
        }
    };
    add(skeleton(&fold(username)), ClaimKind::Username);
    if username.contains('@') {
        add(email_skeleton(username), ClaimKind::UsernameAsEmail);
    }
    add(email_skeleton(email), ClaimKind::Email);
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_joins_width_case_and_compatibility_forms() {
        assert_eq!(fold("ａｄｍｉｎ"), "admin");
        assert_eq!(fold("ADMIN"), "admin");
        assert_eq!(fold("ﬁnn"), "finn");
        assert_eq!(fold("Straße"), "strasse");
        // Composed and decomposed é are one name.
        assert_eq!(fold("zoe\u{301}"), fold("zoë".replace('ë', "é").as_str()));
    }

    #[test]
    fn email_fold_keeps_nfc_local_and_idna_domain() {
        assert_eq!(email_fold("Ann@Example.COM"), "ann@example.com");
        assert_eq!(email_fold("ann@Bücher.de"), "ann@xn--bcher-kva.de");
        assert_eq!(email_fold("ann@xn--bcher-kva.de"), "ann@xn--bcher-kva.de");
        assert_eq!(
            email_fold("jose\u{301}@x.test"),
            email_fold("jos\u{e9}@x.test")
        );
    }

    #[test]
    fn lookalikes_share_a_claim_and_different_names_do_not() {
        assert_eq!(skeleton(&fold("\u{430}dmin")), skeleton(&fold("admin")));
        assert_eq!(skeleton(&fold("ａｄｍｉｎ")), skeleton(&fold("Admin")));
        assert_ne!(skeleton(&fold("admin")), skeleton(&fold("adrnin2")));
        assert_ne!(skeleton(&fold("alice")), skeleton(&fold("bob")));
        assert_eq!(
            email_skeleton("vic@ex\u{430}mple.com"),
            email_skeleton("vic@example.com")
        );
    }

    #[test]
    fn a_username_shaped_like_an_email_claims_that_emails_key() {
        let mallory = claims("VIC@example.com", "mallory@example.net");
        let vic = claims("vic", "vic@example.com");
        let vic_email = vic.iter().find(|(_, k)| *k == ClaimKind::Email).unwrap();
        assert!(mallory.iter().any(|(key, _)| *key == vic_email.0));
        // One's own email as username claims one key, not two.
        assert_eq!(claims("vic@example.com", "vic@example.com").len(), 1);
        assert_eq!(claims("vic", "vic@example.com").len(), 2);
    }
}

use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A 6-digit email verification code. Generated from the thread-local CSPRNG
/// (ChaCha, seeded from the OS); stored only as a salted SHA-256.
pub struct VerificationCode(String);

impl std::fmt::Debug for VerificationCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VerificationCode(***)")
    }
}

impl VerificationCode {
    /// A fresh uniformly random code, `000000`..=`999999`.
    pub fn generate() -> Self {
        let n: u32 = rand::rng().random_range(0..1_000_000);
        Self(format!("{n:06}"))
    }

    /// Accepts exactly six ASCII digits (after trimming); anything else is
    /// simply a wrong code, so `None`.
    pub fn parse(raw: &str) -> Option<Self> {
        let s = raw.trim();
        (s.len() == 6 && s.bytes().all(|b| b.is_ascii_digit())).then(|| Self(s.to_owned()))
    }

    /// The digits, for the email body only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Salted digest for storage.
    pub fn digest(&self, salt: &[u8]) -> Vec<u8> {
        let mut h = Sha256::new();
        h.update(salt);
        h.update(self.0.as_bytes());
        h.finalize().to_vec()
    }

    /// Constant-time comparison against a stored digest.
    pub fn matches(&self, salt: &[u8], digest: &[u8]) -> bool {
        bool::from(self.digest(salt).as_slice().ct_eq(digest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_are_six_digits_and_round_trip() {
        for _ in 0..100 {
            let c = VerificationCode::generate();
            assert_eq!(c.expose().len(), 6);
            let parsed = VerificationCode::parse(c.expose()).unwrap();
            assert!(parsed.matches(b"salt", &c.digest(b"salt")));
        }
    }

    #[test]
    fn parse_accepts_only_six_digits() {
        assert!(VerificationCode::parse(" 012345 ").is_some());
        for bad in ["12345", "1234567", "12a456", "", "１２３４５６"] {
            assert!(VerificationCode::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn different_code_or_salt_does_not_match() {
        let c = VerificationCode::parse("123456").unwrap();
        let d = c.digest(b"s1");
        assert!(
            !VerificationCode::parse("123457")
                .unwrap()
                .matches(b"s1", &d)
        );
        assert!(!c.matches(b"s2", &d));
    }
}

//! Password hashes made by Django (`django.contrib.auth.hashers`), so that
//! accounts imported from the Django service keep their passwords.
//!
//! Django stores `<algorithm>$<fields>`; the formats of the hashers it
//! ships by default, as its own `encode` writes them:
//!
//! - `pbkdf2_sha256$<iterations>$<salt>$<base64 PBKDF2-HMAC-SHA256>` and
//!   `pbkdf2_sha1$…` alike (the key as long as the digest);
//! - `argon2$argon2id$v=19$m=…,t=…,p=…$<salt>$<hash>`: argon2-cffi's PHC
//!   string after the prefix (argon2i too, in older rows);
//! - `bcrypt_sha256$$2b$<cost>$<salt+hash>`: bcrypt of the lowercase hex
//!   SHA-256 of the password; `bcrypt$$2b$…`: bcrypt of the password;
//! - `scrypt$<n>$<salt>$<r>$<p>$<base64 64-byte key>`.
//!
//! Keys must have the length Django writes: a shorter PBKDF2 or scrypt key
//! is a prefix of the full one, so accepting it would weaken the check.
//!
//! The salts are used as the text Django stored (its bytes), like Django.
//! Every hash here is verified once and replaced by argon2id (see
//! [`super::needs_rehash`]). A row could ask for any amount of work, so
//! the parameters are bounded: above the maxima it verifies as false.

use argon2::{Argon2, PasswordHash};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use sha2::Digest as _;
use subtle::ConstantTimeEq;

/// At most 10 million PBKDF2 iterations (Django 5.2 uses 1 million).
pub const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;
/// At most 256 MiB of argon2 memory (Django uses 100 MiB).
pub const MAX_ARGON2_KIB: u32 = 256 * 1024;
/// At most 10 argon2 passes (Django uses 2).
pub const MAX_ARGON2_PASSES: u32 = 10;
/// At most 64 argon2 lanes (Django uses 8).
pub const MAX_ARGON2_LANES: u32 = 64;
/// At most bcrypt cost 15 (Django uses 12; each step doubles the work).
pub const MAX_BCRYPT_COST: u32 = 15;
/// At most 256 MiB of scrypt memory (`128·n·r`; Django uses 16 MiB)...
pub const MAX_SCRYPT_BYTES: u64 = 256 << 20;
/// ...and 1 GiB of mixing in all (`128·n·r·p`; Django uses 80 MiB).
pub const MAX_SCRYPT_WORK: u64 = 1 << 30;

/// Django's prefix for a password that can never match
/// (`make_password(None)`, `set_unusable_password`).
const UNUSABLE_PREFIX: char = '!';

/// The algorithm names of the formats understood here.
const ALGORITHMS: [&str; 6] = [
    "pbkdf2_sha256",
    "pbkdf2_sha1",
    "argon2",
    "bcrypt_sha256",
    "bcrypt",
    "scrypt",
];

/// Whether `encoded` is a Django hash (one of the formats above, well
/// formed or not) or a Django unusable password: any such row is replaced
/// by argon2id at its first successful login.
pub fn is_django(encoded: &str) -> bool {
    is_unusable(encoded) || algorithm(encoded).is_some()
}

/// Whether `encoded` is Django's "no password" marker.
pub fn is_unusable(encoded: &str) -> bool {
    encoded.starts_with(UNUSABLE_PREFIX)
}

/// The known algorithm name `encoded` starts with.
fn algorithm(encoded: &str) -> Option<&'static str> {
    let (name, _) = encoded.split_once('$')?;
    ALGORITHMS.into_iter().find(|a| *a == name)
}

/// A stored hash that was not computed because it is malformed, in no
/// known format (`None`) or asks for more work than allowed: it never
/// verifies. Names the algorithm only, never the hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused(pub Option<&'static str>);

impl Refused {
    /// Logs it (once per verification: the caller's choice).
    pub fn warn(self) {
        tracing::warn!(
            algorithm = self.0.unwrap_or("unknown"),
            "stored password hash is malformed, in no known format or asks for more work \
             than allowed; it never verifies"
        );
    }
}

/// Whether `password` (the bytes Django would have hashed) matches the
/// Django hash `encoded`; an unusable password never does.
pub fn verify(password: &[u8], encoded: &str) -> Result<bool, Refused> {
    if is_unusable(encoded) {
        return Ok(false);
    }
    let Some(name) = algorithm(encoded) else {
        return Err(Refused(None));
    };
    let rest = &encoded[name.len() + 1..];
    let checked = match name {
        "pbkdf2_sha256" => pbkdf2::<pbkdf2::sha2::Sha256>(password, rest, 32),
        "pbkdf2_sha1" => pbkdf2::<sha1::Sha1>(password, rest, 20),
        "argon2" => argon2(password, rest),
        "bcrypt_sha256" => {
            let hex = hex_lower(&sha2::Sha256::digest(password));
            bcrypt(hex.as_bytes(), rest)
        }
        "bcrypt" => bcrypt(password, rest),
        _ => scrypt(password, rest),
    };
    checked.ok_or(Refused(Some(name)))
}

/// The PBKDF2 iteration count of a `pbkdf2_sha256` hash: what the
/// imported rows cost, for [`super::PasswordHasher::set_django_decoy`].
pub fn pbkdf2_sha256_iterations(encoded: &str) -> Option<u32> {
    let rest = encoded.strip_prefix("pbkdf2_sha256$")?;
    let (iterations, _) = rest.split_once('$')?;
    iterations
        .parse()
        .ok()
        .filter(|i| (1..=MAX_PBKDF2_ITERATIONS).contains(i))
}

/// Django's default PBKDF2 iteration count (5.2): the decoy when the
/// Django rows left are of other formats.
pub const DJANGO_DEFAULT_ITERATIONS: u32 = 1_000_000;

/// The decoy for [`super::PasswordHasher::set_django_decoy`] from
/// [`crate::store::AuthStore::django_hash_census`]: `None` when no Django
/// hash remains, else the iteration count most `pbkdf2_sha256` rows have
/// (ties: the higher), or Django's default when none is pbkdf2_sha256.
pub fn decoy_iterations(census: &[(String, i64)]) -> Option<u32> {
    if census.iter().all(|(_, n)| *n <= 0) {
        return None;
    }
    let mut by_count = std::collections::BTreeMap::<u32, i64>::new();
    for (head, n) in census {
        let iterations = head
            .split_once('$')
            .and_then(|(i, _)| i.parse::<u32>().ok())
            .filter(|i| (1..=MAX_PBKDF2_ITERATIONS).contains(i));
        if let Some(i) = iterations {
            *by_count.entry(i).or_default() += n;
        }
    }
    Some(
        by_count
            .into_iter()
            .max_by_key(|&(i, n)| (n, i))
            .map_or(DJANGO_DEFAULT_ITERATIONS, |(i, _)| i),
    )
}

/// Runs PBKDF2-HMAC-SHA256 for `iterations` on `password` with a fixed
/// salt and drops the result: the work a `pbkdf2_sha256` row costs.
pub fn pbkdf2_sha256_decoy(password: &[u8], iterations: u32) {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<pbkdf2::sha2::Sha256>(
        password,
        b"decoy-salt-decoy",
        iterations,
        &mut out,
    );
    std::hint::black_box(out);
}

/// Exactly `N` `$`-separated fields; `None` for more or fewer.
fn fields<const N: usize>(encoded: &str) -> Option<[&str; N]> {
    encoded.split('$').collect::<Vec<_>>().try_into().ok()
}

/// `<iterations>$<salt>$<base64 key>`; `None` when malformed.
fn pbkdf2<D: pbkdf2::hmac::EagerHash>(password: &[u8], rest: &str, len: usize) -> Option<bool> {
    let [iterations, salt, hash] = fields(rest)?;
    let iterations: u32 = iterations.parse().ok()?;
    if !(1..=MAX_PBKDF2_ITERATIONS).contains(&iterations) || salt.is_empty() {
        return None;
    }
    let expected = STANDARD.decode(hash).ok().filter(|h| h.len() == len)?;
    let mut out = vec![0u8; len];
    pbkdf2::pbkdf2_hmac::<D>(password, salt.as_bytes(), iterations, &mut out);
    Some(out.ct_eq(&expected).into())
}

/// argon2-cffi's PHC string without its leading `$`.
fn argon2(password: &[u8], rest: &str) -> Option<bool> {
    let phc = format!("${rest}");
    let parsed = PasswordHash::new(&phc).ok()?;
    let params = argon2::Params::try_from(&parsed).ok()?;
    let algorithm = argon2::Algorithm::try_from(parsed.algorithm.as_str()).ok()?;
    // No `v=`: argon2 1.0 (0x10), as argon2-cffi reads it, not the
    // crate's default 1.3.
    let version = match parsed.version {
        None => argon2::Version::V0x10,
        Some(v) => argon2::Version::try_from(v).ok()?,
    };
    let (Some(salt), Some(expected)) = (parsed.salt.as_ref(), parsed.hash.as_ref()) else {
        return None;
    };
    if params.m_cost() > MAX_ARGON2_KIB
        || params.t_cost() > MAX_ARGON2_PASSES
        || params.p_cost() > MAX_ARGON2_LANES
    {
        return None;
    }
    // Its own memory, freed afterwards: a 100 MiB Django row does not grow
    // the thread's reusable argon2id block.
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into(password, salt.as_ref(), &mut out)
        .ok()?;
    Some(out.as_slice().ct_eq(expected.as_bytes()).into())
}

/// A bcrypt string (`$2b$<cost>$<22 salt + 31 hash>`).
fn bcrypt(password: &[u8], data: &str) -> Option<bool> {
    let ["", _version, cost, _] = fields(data)? else {
        return None;
    };
    let cost: u32 = cost.parse().ok()?;
    if cost > MAX_BCRYPT_COST {
        return None;
    }
    // Truncating at 72 bytes, as the bcrypt Django used did; the crate
    // compares in constant time.
    ::bcrypt::verify(password, data).ok()
}

/// `<n>$<salt>$<r>$<p>$<base64 key>`.
fn scrypt(password: &[u8], rest: &str) -> Option<bool> {
    let [n, salt, r, p, hash] = fields(rest)?;
    let (n, r, p): (u64, u32, u32) = (n.parse().ok()?, r.parse().ok()?, p.parse().ok()?);
    let memory = 128u64.checked_mul(n)?.checked_mul(r.into())?;
    if n < 2
        || !n.is_power_of_two()
        || memory > MAX_SCRYPT_BYTES
        || memory.checked_mul(p.into())? > MAX_SCRYPT_WORK
        || salt.is_empty()
    {
        return None;
    }
    let expected = STANDARD.decode(hash).ok().filter(|h| h.len() == 64)?;
    let log_n = u8::try_from(n.trailing_zeros()).ok()?;
    let params = ::scrypt::Params::new(log_n, r, p).ok()?;
    let mut out = vec![0u8; expected.len()];
    ::scrypt::scrypt(password, salt.as_bytes(), &params, &mut out).ok()?;
    Some(out.ct_eq(&expected).into())
}

fn hex_lower(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
pub(super) mod tests {
    use std::process::Command;

    use super::*;

    fn verifies(password: &[u8], encoded: &str) -> bool {
        verify(password, encoded) == Ok(true)
    }

    /// Django's own hashers, cheaper than its defaults (Django's code runs
    /// unchanged; only the cost attributes differ) so debug builds verify
    /// fast, plus `pbkdf2_default` at Django's default cost.
    const MAKE: &str = r#"
import sys
from django.conf import settings
settings.configure(PASSWORD_HASHERS=["django.contrib.auth.hashers.PBKDF2PasswordHasher"])
from django.contrib.auth import hashers as h
class Pbkdf2(h.PBKDF2PasswordHasher): iterations = 1000
class Pbkdf2Sha1(h.PBKDF2SHA1PasswordHasher): iterations = 1000
class Argon2id(h.Argon2PasswordHasher): memory_cost = 1024; parallelism = 2
class Argon2i(Argon2id):
    def params(self):
        import argon2
        p = super().params()
        return argon2.Parameters(type=argon2.Type.I, version=p.version, salt_len=p.salt_len,
            hash_len=p.hash_len, time_cost=p.time_cost, memory_cost=p.memory_cost,
            parallelism=p.parallelism)
class BcryptSha256(h.BCryptSHA256PasswordHasher): rounds = 4
class Bcrypt(h.BCryptPasswordHasher): rounds = 4
class Scrypt(h.ScryptPasswordHasher): work_factor = 2**10; parallelism = 2
hashers = {"pbkdf2_sha256": Pbkdf2(), "pbkdf2_sha1": Pbkdf2Sha1(), "argon2id": Argon2id(),
    "argon2i": Argon2i(), "bcrypt_sha256": BcryptSha256(), "bcrypt": Bcrypt(), "scrypt": Scrypt(),
    "pbkdf2_default": h.PBKDF2PasswordHasher()}
password = sys.argv[1]
for name in sys.argv[2:]:
    print(h.make_password(password, hasher=hashers[name]))
"#;

    /// Hashes of `password` made by real Django, one per hasher in
    /// `names`; `None` (outside CI only) when python3 with Django is
    /// missing.
    pub(in crate::hasher) fn django_hashes(password: &str, names: &[&str]) -> Option<Vec<String>> {
        let output = Command::new("python3")
            .args(["-c", MAKE, password])
            .args(names)
            .output();
        let output = match output {
            Ok(o) if o.status.success() => o,
            other => {
                assert!(
                    !common::testing::in_ci(),
                    "python3 with django, argon2-cffi and bcrypt is needed and CI=true \
                     (pip install django argon2-cffi bcrypt; .ci/run does): {other:?}"
                );
                eprintln!("note: python3 with django is missing; this test did not run");
                return None;
            }
        };
        let hashes: Vec<String> = String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(hashes.len(), names.len());
        Some(hashes)
    }

    const FORMATS: [&str; 7] = [
        "pbkdf2_sha256",
        "pbkdf2_sha1",
        "argon2id",
        "argon2i",
        "bcrypt_sha256",
        "bcrypt",
        "scrypt",
    ];

    #[test]
    fn every_default_django_hasher_verifies_the_right_password_only() {
        // Non-ASCII: Django hashes the UTF-8 bytes as typed.
        let password = "Ünïcode pass-42 ".repeat(3);
        let Some(hashes) = django_hashes(&password, &FORMATS) else {
            return;
        };
        for (name, encoded) in FORMATS.iter().zip(&hashes) {
            let prefix = name.trim_end_matches("id").trim_end_matches('i');
            assert!(encoded.starts_with(&format!("{prefix}$")), "{encoded}");
            assert!(is_django(encoded), "{name}");
            assert!(super::super::needs_rehash(encoded), "{name}");
            assert!(verifies(password.as_bytes(), encoded), "{name}: {encoded}");
            assert!(!verifies(b"wrong password", encoded), "{name}");
            let mut off_by_one = password.clone().into_bytes();
            off_by_one[0] ^= 1;
            assert!(!verifies(&off_by_one, encoded), "{name}");
            assert!(!verifies(b"", encoded), "{name}");
        }
        assert!(
            hashes[2].starts_with("argon2$argon2id$v=19$"),
            "{}",
            hashes[2]
        );
        assert!(
            hashes[3].starts_with("argon2$argon2i$v=19$"),
            "{}",
            hashes[3]
        );
        // Old Django argon2 rows carry no version: argon2 1.0, which the
        // same hash does not verify as.
        let unversioned = hashes[2].replace("$v=19$", "$");
        assert!(!verifies(password.as_bytes(), &unversioned));
        assert!(
            hashes[4].starts_with("bcrypt_sha256$$2b$04$"),
            "{}",
            hashes[4]
        );
    }

    #[test]
    fn the_decoy_is_the_most_common_pbkdf2_count_while_any_django_hash_remains() {
        let census = |rows: &[(&str, i64)]| {
            decoy_iterations(
                &rows
                    .iter()
                    .map(|(h, n)| ((*h).to_owned(), *n))
                    .collect::<Vec<_>>(),
            )
        };
        assert_eq!(census(&[]), None);
        // 870000 split over salt characters outnumbers 1000000.
        assert_eq!(
            census(&[("1000000$", 3), ("870000$a", 2), ("870000$b", 2), ("", 9)]),
            Some(870_000)
        );
        assert_eq!(census(&[("36000$ab", 1)]), Some(36_000));
        // Only other formats (or unreadable counts): Django's default.
        assert_eq!(census(&[("", 4)]), Some(DJANGO_DEFAULT_ITERATIONS));
        assert_eq!(
            census(&[("99999999", 1), ("x$", 1)]),
            Some(DJANGO_DEFAULT_ITERATIONS)
        );
        assert_eq!(census(&[("1000$abc", 1), ("2000$abc", 1)]), Some(2000));
    }

    #[test]
    fn djangos_default_pbkdf2_sha256_verifies_and_tells_its_iterations() {
        let Some(hashes) = django_hashes("correct horse", &["pbkdf2_default"]) else {
            return;
        };
        let encoded = &hashes[0];
        assert_eq!(pbkdf2_sha256_iterations(encoded), Some(1_000_000));
        assert!(verifies(b"correct horse", encoded));
        assert!(!verifies(b"correct horsf", encoded));
    }

    #[test]
    fn malformed_and_unknown_encodings_are_false_without_panic() {
        let Some(hashes) = django_hashes("pw", &FORMATS) else {
            return;
        };
        for encoded in &hashes {
            // Every truncation, and every field removed, emptied or mangled.
            for end in 0..encoded.len() {
                assert!(!verifies(b"pw", &encoded[..end]), "{}", &encoded[..end]);
            }
            let fields: Vec<&str> = encoded.split('$').collect();
            for i in 1..fields.len() {
                for replacement in ["", "x", "-1", "99999999999999999999", "\0", "é", "$"] {
                    if replacement == fields[i] {
                        continue;
                    }
                    let mut mangled = fields.clone();
                    mangled[i] = replacement;
                    let mangled = mangled.join("$");
                    assert!(!verifies(b"pw", &mangled), "{mangled}");
                }
                let mut removed = fields.clone();
                removed.remove(i);
                let removed = removed.join("$");
                assert!(!verifies(b"pw", &removed), "{removed}");
            }
            assert!(!verifies(b"pw", &format!("{encoded}$extra")));
            assert!(!verifies(b"pw", &format!("{encoded}\0")));
        }
        for odd in [
            "",
            "$",
            "!",
            "!unusable-marker-from-django",
            "md5$salt$hash",
            "unsalted_md5$hash",
            "pbkdf2_sha512$1000$salt$aGFzaA==",
            "PBKDF2_SHA256$1000$salt$aGFzaA==",
            "\u{0}pbkdf2_sha256$1000$salt$aGFzaA==",
        ] {
            assert!(!verifies(b"pw", odd), "{odd:?}");
        }
        // Unusable passwords are Django's and get replaced when set.
        assert!(is_django("!x") && is_unusable("!x"));
        assert!(!is_django("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"));
    }

    #[test]
    fn hostile_work_factors_are_refused_before_any_work() {
        let Some(hashes) = django_hashes("pw", &["pbkdf2_sha256", "bcrypt_sha256", "scrypt"])
        else {
            return;
        };
        // A real hash with its cost raised: refusal is by the parameters
        // alone (were they computed, this test would run for hours).
        let with_field = |encoded: &str, i: usize, value: &str| {
            let mut fields: Vec<&str> = encoded.split('$').collect();
            fields[i] = value;
            fields.join("$")
        };
        let started = std::time::Instant::now();
        for hostile in [
            with_field(&hashes[0], 1, "10000001"),
            with_field(&hashes[0], 1, "4294967295"),
            with_field(&hashes[0], 1, "0"),
            with_field(&hashes[1], 3, "16"),
            with_field(&hashes[1], 3, "31"),
            with_field(&hashes[2], 1, &(1u64 << 30).to_string()),
            with_field(&hashes[2], 1, "1000"),
            with_field(&hashes[2], 4, "100000"),
            with_field(&hashes[2], 3, "4294967295"),
            "argon2$argon2id$v=19$m=4194304,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into(),
            "argon2$argon2id$v=19$m=1024,t=1000,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into(),
            "argon2$argon2id$v=19$m=1024,t=1,p=255$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into(),
        ] {
            assert!(verify(b"pw", &hostile).is_err(), "{hostile}");
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "hostile rows were computed: {:?}",
            started.elapsed()
        );
        // At the maximum it is still computed (and right).
        assert_eq!(
            pbkdf2_sha256_iterations(&with_field(&hashes[0], 1, "10000000")),
            Some(MAX_PBKDF2_ITERATIONS)
        );
        assert_eq!(
            pbkdf2_sha256_iterations(&with_field(&hashes[0], 1, "10000001")),
            None
        );
    }
}

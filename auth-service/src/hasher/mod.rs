//! argon2id hashing on a fixed pool of worker threads that own their memory.
//!
//! Each argon2id run needs 19 MiB and ~20 ms of one core. Running them on the
//! async workers would stall every other request. Running them through
//! `spawn_blocking` bounds the CPU but not the memory: the blocking pool
//! grows threads, and every thread's allocator arena keeps its freed 19 MiB
//! blocks (measured: auth-service at ~500-700 MiB RSS under a 16-way login
//! load). So a fixed number of threads each allocate their argon2 memory
//! once and reuse it for every hash: memory is `threads x 19 MiB`, for ever,
//! and a login flood simply queues.
//!
//! Hashes imported from Django verify too ([`django`]), and cost what
//! every other login costs while any remain (see
//! [`PasswordHasher::set_django_decoy`]).

pub mod django;

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU32, Ordering},
    mpsc,
};

use argon2::password_hash::{
    self,
    phc::{Output, ParamsString, Salt},
};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;

use crate::domain::normalise_password;

/// Work for a hashing thread: it gets the thread's reusable memory.
type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// Hashes and verifies passwords with OWASP's baseline argon2id
/// (m=19456 KiB, t=2, p=1: `Params::default()`).
#[derive(Clone)]
pub struct PasswordHasher {
    jobs: mpsc::Sender<Job>,
    /// Verified for unknown users so that a miss costs what a hit costs.
    dummy_hash: Arc<str>,
    /// PBKDF2-SHA256 iterations every check adds while Django hashes
    /// remain in the store (0: none remain).
    django_decoy: Arc<AtomicU32>,
}

impl PasswordHasher {
    /// Starts `threads` hashing threads (each holding 19 MiB).
    pub fn new(threads: usize) -> anyhow::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    let mut memory = vec![Block::default(); Params::default().block_count()];
                    loop {
                        // The lock is held only while waiting for the next
                        // job; a poisoned lock or a closed queue ends the thread.
                        let job = match queue.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(&mut memory),
                            Err(_) => return,
                        }
                    }
                })?;
        }
        let dummy_hash = hash_with(&mut Vec::new(), uuid::Uuid::new_v4().as_bytes())?;
        Ok(Self {
            jobs,
            dummy_hash: dummy_hash.into(),
            django_decoy: Arc::new(AtomicU32::new(0)),
        })
    }

    /// While the store holds Django hashes (`Some` of their most common
    /// PBKDF2 iteration count), every password check costs one argon2id
    /// AND one PBKDF2-SHA256 of that many iterations: the real check plus
    /// a dummy of the other kind. So an imported account that has not
    /// logged in yet, an argon2id account and an unknown user take the
    /// same time. `None` (no Django hash left): one argon2id, as before.
    pub fn set_django_decoy(&self, iterations: Option<u32>) {
        let iterations = iterations.map_or(0, |i| i.min(django::MAX_PBKDF2_ITERATIONS));
        self.django_decoy.store(iterations, Ordering::Relaxed);
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Box::new(move |memory| {
                let _ = tx.send(f(memory));
            }))
            .map_err(|_| anyhow::anyhow!("argon2 threads have stopped"))?;
        Ok(rx.await?)
    }

    /// A PHC string for `password` in NFKC (see
    /// [`crate::domain::normalise_password`]): every stored hash made from
    /// now on is of the normalised form.
    pub async fn hash(&self, password: String) -> anyhow::Result<String> {
        self.run(move |memory| hash_with(memory, normalise_password(&password).as_bytes()))
            .await?
    }

    /// Whether `password` (normalised) matches `phc`, a hash of a
    /// normalised password. With `phc = None` (unknown user) it verifies
    /// against a dummy hash and returns false, taking the same time.
    pub async fn verify(&self, password: String, phc: Option<String>) -> anyhow::Result<bool> {
        Ok(self.verify_stored(password, phc, false).await? != Verified::No)
    }

    /// Verifies `password` against `phc`, which is a hash of the raw text as
    /// typed when `legacy` (made before passwords were normalised) and of
    /// its NFKC form otherwise. A legacy hash is tried with the normalised
    /// form first, then the raw one: [`Verified::Raw`] asks the caller to
    /// store a hash of the normalised form.
    ///
    /// Cost and timing depend on the submitted text alone, never on the
    /// account: text that NFKC leaves unchanged (all ASCII) costs one
    /// check, whatever the account; other text costs two for every
    /// account and for unknown users (the second against the dummy hash
    /// where there is nothing else to try), so neither the existence nor the
    /// age of an account shows in the time taken. A check is one argon2
    /// run, plus the Django decoy while Django hashes remain (see
    /// [`Self::set_django_decoy`]).
    pub async fn verify_stored(
        &self,
        password: String,
        phc: Option<String>,
        legacy: bool,
    ) -> anyhow::Result<Verified> {
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| self.dummy_hash.to_string());
        let dummy = self.dummy_hash.clone();
        let decoy = self.django_decoy.load(Ordering::Relaxed);
        self.run(move |memory| {
            // A refused Django row is logged once, not once per form tried.
            let mut warned = false;
            let mut verify_with = |memory: &mut Vec<Block>, password: &[u8], phc: &str| {
                check(memory, password, phc, &dummy, decoy).unwrap_or_else(|refused| {
                    if !std::mem::replace(&mut warned, true) {
                        refused.warn();
                    }
                    false
                })
            };
            let normalised = normalise_password(&password);
            let changed = normalised != password.as_str();
            let matched = verify_with(memory, normalised.as_bytes(), &phc);
            if !changed {
                return if matched && known {
                    Verified::Normalised
                } else {
                    Verified::No
                };
            }
            // Computed in every case, so the time does not tell which.
            let raw = if legacy && known && !matched {
                verify_with(memory, password.as_bytes(), &phc)
            } else {
                let _ = verify_with(memory, password.as_bytes(), &dummy);
                false
            };
            match (known, matched, raw) {
                (false, _, _) => Verified::No,
                (true, true, _) => Verified::Normalised,
                (true, false, true) => Verified::Raw,
                (true, false, false) => Verified::No,
            }
        })
        .await
    }
}

/// What a verification found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// No match (or no account).
    No,
    /// The password's NFKC form matched.
    Normalised,
    /// Only the raw text matched a legacy hash: store a hash of the
    /// normalised form.
    Raw,
}

/// Resizes `memory` to exactly what `params` needs (normally a no-op).
fn blocks<'m>(memory: &'m mut Vec<Block>, params: &Params) -> &'m mut [Block] {
    memory.resize(params.block_count(), Block::default());
    memory.as_mut_slice()
}

fn hash_with(memory: &mut Vec<Block>, password: &[u8]) -> anyhow::Result<String> {
    let params = Params::default();
    let salt = password_hash::try_generate_salt().map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    argon2
        .hash_password_into_with_memory(password, &salt, &mut out, blocks(memory, &params))
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params)
            .map_err(|e| anyhow::anyhow!("argon2 params: {e}"))?,
        salt: Some(Salt::new(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?),
        hash: Some(Output::new(&out).map_err(|e| anyhow::anyhow!("output: {e}"))?),
    };
    Ok(phc.to_string())
}

/// One check of `password` against a stored hash: argon2id (a PHC string,
/// `$…`) or anything else as Django's, padded with `decoy` PBKDF2
/// iterations or a run against the argon2id `dummy` (see
/// [`PasswordHasher::set_django_decoy`]). A Django unusable password costs
/// a run against the dummy, like an unknown user.
fn check(
    memory: &mut Vec<Block>,
    password: &[u8],
    stored: &str,
    dummy: &str,
    decoy: u32,
) -> Result<bool, django::Refused> {
    if stored.starts_with('$') || django::is_unusable(stored) {
        let matched = if stored.starts_with('$') {
            verify_with(memory, password, stored)
        } else {
            let _ = verify_with(memory, password, dummy);
            false
        };
        if decoy > 0 {
            django::pbkdf2_sha256_decoy(password, decoy);
        }
        return Ok(matched);
    }
    let matched = django::verify(password, stored);
    if decoy > 0 {
        let _ = verify_with(memory, password, dummy);
    }
    matched
}

fn verify_with(memory: &mut Vec<Block>, password: &[u8], phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        tracing::error!("stored password hash is not a valid PHC string");
        return false;
    };
    let (Ok(algorithm), Ok(params), Some(salt), Some(expected)) = (
        Algorithm::try_from(parsed.algorithm.as_str()),
        Params::try_from(&parsed),
        parsed.salt.as_ref(),
        parsed.hash.as_ref(),
    ) else {
        tracing::error!("stored password hash is not a usable argon2 hash");
        return false;
    };
    let version = parsed
        .version
        .and_then(|v| Version::try_from(v).ok())
        .unwrap_or_default();
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params.clone())
        .hash_password_into_with_memory(password, salt.as_ref(), &mut out, blocks(memory, &params))
        .is_ok()
        && bool::from(out.as_slice().ct_eq(expected.as_bytes()))
}

/// Whether a stored PHC string was made with weaker settings than the
/// current ones (another algorithm, less memory, fewer passes or lanes),
/// so it should be replaced on the next successful login. Unreadable
/// strings are not "weaker": they cannot have verified. Every Django
/// hash is replaced, as Django upgrades hashes on login.
pub fn needs_rehash(phc: &str) -> bool {
    if django::is_django(phc) {
        return true;
    }
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let current = argon2::Params::default();
    let Ok(params) = argon2::Params::try_from(&parsed) else {
        return true;
    };
    parsed.algorithm != argon2::Algorithm::Argon2id.ident()
        || params.m_cost() < current.m_cost()
        || params.t_cost() < current.t_cost()
        || params.p_cost() < current.p_cost()
}

#[cfg(test)]
mod tests {
    use argon2::{PasswordHasher as _, PasswordVerifier as _};

    use super::*;

    #[test]
    fn weaker_hashes_need_a_rehash_and_current_ones_do_not() {
        let weak = Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(8192, 1, 1, None).unwrap(),
        )
        .hash_password(b"pw")
        .unwrap()
        .to_string();
        assert!(needs_rehash(&weak));
        let argon2i = Argon2::new(
            argon2::Algorithm::Argon2i,
            argon2::Version::V0x13,
            argon2::Params::default(),
        )
        .hash_password(b"pw")
        .unwrap()
        .to_string();
        assert!(needs_rehash(&argon2i));
        let current = Argon2::default().hash_password(b"pw").unwrap().to_string();
        assert!(!needs_rehash(&current));
    }

    #[tokio::test]
    async fn pool_hashes_interoperate_with_the_argon2_crates_own_format() {
        let h = PasswordHasher::new(1).unwrap();
        // Ours verify with the crate's verifier...
        let ours = h.hash("correct horse".into()).await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &parsed)
                .is_ok()
        );
        // ...and hashes made by the crate (and weaker ones) verify with ours.
        let theirs = Argon2::default()
            .hash_password(b"correct horse")
            .unwrap()
            .to_string();
        assert!(
            h.verify("correct horse".into(), Some(theirs))
                .await
                .unwrap()
        );
        let weak = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8192, 1, 1, None).unwrap(),
        )
        .hash_password(b"pw")
        .unwrap()
        .to_string();
        assert!(h.verify("pw".into(), Some(weak.clone())).await.unwrap());
        assert!(!h.verify("px".into(), Some(weak)).await.unwrap());
    }

    #[tokio::test]
    async fn hashes_are_argon2id_at_owasp_baseline_and_verify() {
        let h = PasswordHasher::new(1).unwrap();
        let phc = h.hash("correct horse".into()).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(
            h.verify("correct horse".into(), Some(phc.clone()))
                .await
                .unwrap()
        );
        assert!(!h.verify("wrong horse".into(), Some(phc)).await.unwrap());
    }

    #[tokio::test]
    async fn hashes_are_of_the_nfkc_form_so_either_typing_verifies() {
        let h = PasswordHasher::new(1).unwrap();
        let composed = "caf\u{e9}-pass-42".to_owned();
        let decomposed = "cafe\u{301}-pass-42".to_owned();
        let phc = h.hash(decomposed.clone()).await.unwrap();
        assert!(h.verify(composed.clone(), Some(phc.clone())).await.unwrap());
        assert!(h.verify(decomposed.clone(), Some(phc)).await.unwrap());
        // The crate's own verifier agrees: the hash is of the NFC bytes.
        let theirs = h.hash(composed.clone()).await.unwrap();
        assert!(
            Argon2::default()
                .verify_password(composed.as_bytes(), &PasswordHash::new(&theirs).unwrap())
                .is_ok()
        );
    }

    #[tokio::test]
    async fn legacy_hashes_of_the_raw_text_verify_once_and_ask_for_a_rehash() {
        let h = PasswordHasher::new(1).unwrap();
        let decomposed = "cafe\u{301}-pass-42".to_owned();
        let composed = "caf\u{e9}-pass-42".to_owned();
        // A hash of the raw decomposed bytes, as stored before normalising.
        let legacy = Argon2::default()
            .hash_password(decomposed.as_bytes())
            .unwrap()
            .to_string();
        assert_eq!(
            h.verify_stored(decomposed.clone(), Some(legacy.clone()), true)
                .await
                .unwrap(),
            Verified::Raw
        );
        // Not tried raw unless the row says legacy.
        assert_eq!(
            h.verify_stored(decomposed.clone(), Some(legacy.clone()), false)
                .await
                .unwrap(),
            Verified::No
        );
        // Typed composed, it was never this account's password.
        assert_eq!(
            h.verify_stored(composed, Some(legacy.clone()), true)
                .await
                .unwrap(),
            Verified::No
        );
        // A legacy hash of ASCII text is a hash of its normalised form.
        let ascii = Argon2::default()
            .hash_password(b"plain-pass-42")
            .unwrap()
            .to_string();
        assert_eq!(
            h.verify_stored("plain-pass-42".into(), Some(ascii), true)
                .await
                .unwrap(),
            Verified::Normalised
        );
        assert_eq!(
            h.verify_stored(decomposed, None, true).await.unwrap(),
            Verified::No
        );
    }

    #[tokio::test]
    async fn django_hashes_verify_through_the_pool_with_and_without_the_decoy() {
        let Some(hashes) = django::tests::django_hashes("crème-42", &["pbkdf2_sha256", "argon2id"])
        else {
            return;
        };
        let h = PasswordHasher::new(1).unwrap();
        let argon2id = h.hash("crème-42".into()).await.unwrap();
        for decoy in [None, Some(1000)] {
            h.set_django_decoy(decoy);
            for django in &hashes {
                // Imported rows are legacy (Django did not normalise).
                assert_eq!(
                    h.verify_stored("crème-42".into(), Some(django.clone()), true)
                        .await
                        .unwrap(),
                    Verified::Normalised
                );
                assert_eq!(
                    h.verify_stored("crème-43".into(), Some(django.clone()), true)
                        .await
                        .unwrap(),
                    Verified::No
                );
                assert!(needs_rehash(django));
            }
            assert!(
                h.verify("crème-42".into(), Some(argon2id.clone()))
                    .await
                    .unwrap()
            );
            assert!(
                !h.verify("crème-43".into(), Some(argon2id.clone()))
                    .await
                    .unwrap()
            );
            assert!(!h.verify("crème-42".into(), None).await.unwrap());
            for unknown in [
                "md5$salt$hash",
                "pbkdf2_sha256$99999999999$s$aGFzaA==",
                "",
                "é",
            ] {
                assert_eq!(
                    h.verify_stored("crème-42".into(), Some(unknown.into()), true)
                        .await
                        .unwrap(),
                    Verified::No
                );
            }
            assert!(
                !h.verify("crème-42".into(), Some("!unusable".into()))
                    .await
                    .unwrap()
            );
        }
    }

    /// Not an assertion on time (shared CI cores make that flaky): prints
    /// what each kind of login costs with and without the decoy, for the
    /// record (`cargo test -p auth-service --lib login_costs -- --ignored --nocapture`).
    #[tokio::test]
    #[ignore = "a measurement, not a test: it asserts nothing about the times it prints"]
    async fn login_costs_with_the_django_decoy_are_printed() {
        let Some(hashes) = django::tests::django_hashes("pw-42", &["pbkdf2_default"]) else {
            return;
        };
        let h = PasswordHasher::new(1).unwrap();
        let argon2id = h.hash("pw-42".into()).await.unwrap();
        let cases = [
            ("unknown user", None),
            ("argon2id user", Some(argon2id)),
            ("imported pbkdf2_sha256 user", Some(hashes[0].clone())),
            ("unusable password", Some("!x".to_owned())),
        ];
        for decoy in [None, django::pbkdf2_sha256_iterations(&hashes[0])] {
            h.set_django_decoy(decoy);
            for (name, stored) in &cases {
                let mut times = Vec::new();
                for _ in 0..5 {
                    let started = std::time::Instant::now();
                    let _ = h
                        .verify_stored("wrong-pw".into(), stored.clone(), true)
                        .await
                        .unwrap();
                    times.push(started.elapsed().as_millis());
                }
                times.sort_unstable();
                eprintln!("decoy {decoy:?}: {name}: median {} ms {times:?}", times[2]);
            }
        }
    }

    #[tokio::test]
    async fn unknown_users_never_verify() {
        let h = PasswordHasher::new(1).unwrap();
        assert!(!h.verify("anything".into(), None).await.unwrap());
    }
}

//! argon2id hashing off the async threads, under a concurrency cap.
//!
//! Each hash holds 19 MiB and ~20 ms of one core. Running them on the async
//! workers would stall every other request; running unboundedly many would
//! let a login flood exhaust memory. So they run in `spawn_blocking` behind
//! a semaphore, and excess requests wait their turn.

use std::sync::Arc;

use argon2::{Argon2, PasswordHash, PasswordHasher as _, PasswordVerifier as _};
use tokio::sync::Semaphore;

/// Hashes and verifies passwords with OWASP's baseline argon2id
/// (m=19456 KiB, t=2, p=1: `Argon2::default()`).
#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    /// Verified for unknown users so that a miss costs what a hit costs.
    dummy_hash: Arc<str>,
}

impl PasswordHasher {
    /// A hasher allowing `concurrency` simultaneous argon2 runs.
    pub fn new(concurrency: usize) -> anyhow::Result<Self> {
        let dummy = Argon2::default()
            .hash_password(uuid::Uuid::new_v4().as_bytes())
            .map_err(|e| anyhow::anyhow!("argon2: {e}"))?
            .to_string();
        Ok(Self {
            permits: Arc::new(Semaphore::new(concurrency)),
            dummy_hash: dummy.into(),
        })
    }

    /// A PHC string for `password`.
    pub async fn hash(&self, password: String) -> anyhow::Result<String> {
        let _permit = self.permits.acquire().await?;
        tokio::task::spawn_blocking(move || {
            Argon2::default()
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| anyhow::anyhow!("argon2: {e}"))
        })
        .await?
    }

    /// Whether `password` matches `phc`. With `phc = None` (unknown user) it
    /// verifies against a dummy hash and returns false, taking the same time.
    pub async fn verify(&self, password: String, phc: Option<String>) -> anyhow::Result<bool> {
        let _permit = self.permits.acquire().await?;
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| self.dummy_hash.to_string());
        let ok = tokio::task::spawn_blocking(move || {
            let Ok(parsed) = PasswordHash::new(&phc) else {
                tracing::error!("stored password hash is not a valid PHC string");
                return false;
            };
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .await?;
        Ok(ok && known)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    async fn unknown_users_never_verify() {
        let h = PasswordHasher::new(1).unwrap();
        assert!(!h.verify("anything".into(), None).await.unwrap());
    }
}

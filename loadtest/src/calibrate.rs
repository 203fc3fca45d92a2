//! Raw argon2id throughput with the service's parameters on all cores: the
//! physical ceiling for logins on this machine.

use std::time::{Duration, Instant};

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};

/// Hashes per second across `threads` threads for `duration`.
pub fn argon2_per_second(threads: usize, duration: Duration) -> anyhow::Result<f64> {
    let phc = Argon2::default()
        .hash_password(b"calibration password")
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .to_string();
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let phc = phc.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while start.elapsed() < duration {
                    if let Ok(parsed) = PasswordHash::new(&phc) {
                        let _ = Argon2::default().verify_password(b"calibration password", &parsed);
                    }
                    n += 1;
                }
                n
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// What one `JWT_ALGORITHM` costs on one core, measured in-process with
/// auth-service's own `TokenService` (the cached signers and the
/// jsonwebtoken verification both services run).
pub struct TokenCost {
    /// The JWS name.
    pub algorithm: &'static str,
    /// µs per token signed (an access token's claims).
    pub sign_us: f64,
    /// µs per token verified (signature, expiry, issuer, type).
    pub verify_us: f64,
    /// Length of an access token, bytes.
    pub token_len: usize,
}

/// Signs, then verifies, access tokens with a key of each algorithm for
/// `duration` each, on the calling thread.
pub fn token_costs(duration: Duration) -> anyhow::Result<Vec<TokenCost>> {
    use auth_service::{
        store::TokenOwner,
        tokens::{ACCESS, KeyAlgorithm, TokenPolicy, TokenService, generate_key},
    };
    let policy = TokenPolicy {
        issuer: "auth-service".into(),
        access_ttl: Duration::from_secs(300),
        refresh_ttl: Duration::from_secs(86_400),
        key_reload_interval: Duration::from_secs(60),
        algorithm: KeyAlgorithm::EdDsa,
        publish_delay: Duration::from_secs(600),
    };
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs(),
    )?;
    let owner = TokenOwner {
        id: 42,
        username: "bench-user".into(),
        is_staff: false,
    };
    let mut costs = Vec::new();
    for algorithm in KeyAlgorithm::ALL {
        let tokens = TokenService::from_rows(&[generate_key(algorithm, now, now)?], &policy)?;
        let mut signed = Vec::new();
        let start = Instant::now();
        while start.elapsed() < duration {
            // A pair is two signatures.
            let pair = tokens.issue(owner.clone(), now, "bench-jti".into())?;
            signed.push(pair.access);
        }
        let sign_us = start.elapsed().as_secs_f64() * 1e6 / (2 * signed.len()) as f64;
        let start = Instant::now();
        let mut verified = 0usize;
        while start.elapsed() < duration {
            tokens.verify(&signed[verified % signed.len()], ACCESS)?;
            verified += 1;
        }
        costs.push(TokenCost {
            algorithm: algorithm.name(),
            sign_us,
            verify_us: start.elapsed().as_secs_f64() * 1e6 / verified as f64,
            token_len: signed[0].len(),
        });
    }
    Ok(costs)
}

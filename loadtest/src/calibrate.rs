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

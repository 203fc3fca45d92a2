//! Emailed codes (verification and password reset share one rule set: six
//! CSPRNG digits, stored as a salted digest, ten minutes, five tries counted
//! before checking, at most one a minute), issued by the account API and by
//! user administration alike.

use rand::RngCore;

use crate::{
    domain::VerificationCode,
    store::{AuthStore, CodePurpose, StoreError, StoredCode},
};

/// A code's lifetime.
pub const CODE_TTL_SECS: i64 = 600;
/// Wrong tries after which a code is dead.
pub const CODE_MAX_TRIES: i32 = 5;
/// Least time between two codes of one purpose for one account.
pub const CODE_RESEND_SECS: i64 = 60;

/// Stores a fresh code for `purpose` and returns it for mailing; `None`
/// when the account's last one is under [`CODE_RESEND_SECS`] old (it stays
/// the live one). The check and the replacement are one statement, so
/// racing requests cannot both replace a fresh code.
pub async fn issue<S: AuthStore>(
    store: &S,
    purpose: CodePurpose,
    user_id: i64,
    now: i64,
) -> Result<Option<VerificationCode>, StoreError> {
    let code = VerificationCode::generate();
    let mut salt = vec![0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let stored = StoredCode {
        code_hash: code.digest(&salt),
        salt,
        created_at: now,
        expires_at: now + CODE_TTL_SECS,
        tries: 0,
    };
    let stored = store
        .put_code(purpose, user_id, &stored, now - CODE_RESEND_SECS)
        .await?;
    Ok(stored.then_some(code))
}

/// The subject of a verification code's mail.
pub const VERIFICATION_SUBJECT: &str = "Your verification code";

/// The body of a verification code's mail to `username`.
pub fn verification_mail(username: &str, code: &VerificationCode) -> String {
    format!(
        "Hello {username},\n\nYour verification code is: {}\n\nIt expires in 10 minutes. If you did not ask for it, ignore this email.\n",
        code.expose()
    )
}

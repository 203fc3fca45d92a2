//! Emailed codes (verification and password reset share one rule set: six
//! CSPRNG digits, stored as a salted digest, ten minutes, five tries counted
//! before checking, at most one a minute) and the mail they travel in.

use rand::RngCore;

use super::AuthApi;
use crate::{
    domain::VerificationCode,
    error::Error,
    store::{AuthStore, CodePurpose, StoredCode, User},
};

/// A code's lifetime.
pub(super) const CODE_TTL_SECS: i64 = 600;
/// Wrong tries after which a code is dead.
pub(super) const CODE_MAX_TRIES: i32 = 5;
/// Least time between two codes of one purpose for one account.
pub(super) const CODE_RESEND_SECS: i64 = 60;

impl<S: AuthStore> AuthApi<S> {
    /// Stores a fresh code for `purpose` and returns it for mailing; `None`
    /// when the account's last one is under [`CODE_RESEND_SECS`] old (it
    /// stays the live one).
    pub(super) async fn issue_code(
        &self,
        purpose: CodePurpose,
        user: &User,
        now: i64,
    ) -> Result<Option<VerificationCode>, Error> {
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
        let stored = self
            .store
            .put_code(purpose, user.id, &stored, now - CODE_RESEND_SECS)
            .await?;
        if !stored {
            tracing::info!(
                user_id = user.id,
                ?purpose,
                "code not re-sent: the last one is under a minute old"
            );
        }
        Ok(stored.then_some(code))
    }

    /// Sends `body` to the account in the background: the answer never
    /// waits on (or tells about) the mail server.
    pub(super) fn mail(&self, user: &User, subject: &str, body: String) {
        let (mailer, from, to, id, subject) = (
            self.mailer.clone(),
            self.mail_from.clone(),
            user.email.clone(),
            user.id,
            subject.to_owned(),
        );
        tokio::spawn(async move {
            match mailer.send(&from, &to, &subject, body).await {
                Ok(()) => tracing::info!(user_id = id, subject, "mail sent"),
                Err(e) => tracing::error!(user_id = id, subject, error = %e, "mail failed"),
            }
        });
    }
}

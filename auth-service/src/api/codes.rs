//! Emailed codes as the account API issues them (the rules are in
//! [`crate::codes`]) and the mail they travel in.

use super::AuthApi;
use crate::{
    domain::VerificationCode,
    error::Error,
    store::{AuthStore, CodePurpose, User},
};

pub(super) use crate::codes::CODE_MAX_TRIES;

impl<S: AuthStore> AuthApi<S> {
    /// Stores a fresh code for `purpose` and returns it for mailing; `None`
    /// when the account's last one is under a minute old (it stays the live
    /// one). See [`crate::codes::issue`].
    pub(super) async fn issue_code(
        &self,
        purpose: CodePurpose,
        user: &User,
        now: i64,
    ) -> Result<Option<VerificationCode>, Error> {
        let code = crate::codes::issue(&self.store, purpose, user.id, now).await?;
        if code.is_none() {
            tracing::info!(
                user_id = user.id,
                ?purpose,
                "code not re-sent: the last one is under a minute old"
            );
        }
        Ok(code)
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

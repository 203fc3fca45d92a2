//! Passwords after sign-up: a change by the signed-in user (with the
//! current password, under the login's brute-force counters) and a reset
//! by a code emailed to the account's verified address (the verification
//! code rules). Both set the password in one transaction with their audit
//! attempt and revoke every session the old password opened.

use proto::auth::v1 as pb;

use super::{AuthApi, codes::CODE_MAX_TRIES, new_id};
use crate::{
    attempt::{AttemptKind, RejectReason},
    context::ClientContext,
    domain::{EmailAddress, FieldError, Password, Username, VerificationCode, normalise_password},
    error::Error,
    hasher::Verified,
    store::{AuthStore, CodePurpose, KeptSession, NewRefreshToken, PasswordSet, User},
    throttle::LoginKeys,
    tokens::ACCESS,
};

/// What a wrong current password gets (Django's `PasswordChangeForm`).
pub const WRONG_OLD_PASSWORD: &str =
    "Your old password was entered incorrectly. Please enter it again.";

impl<S: AuthStore> AuthApi<S> {
    /// Changes the password of the access token's user at `at`, who proves
    /// it with the current password; answers with a fresh pair, every
    /// other session being revoked.
    pub async fn change_own_password(
        &self,
        ctx: &ClientContext,
        req: pb::ChangePasswordRequest,
        at: time::OffsetDateTime,
    ) -> Result<pb::TokenPair, Error> {
        let now = at.unix_timestamp();
        let claims = self.verify_token(req.access.trim(), ACCESS).await?;
        // A token from before the last revocation (the thief's, after the
        // owner changed the password) changes nothing.
        let user = self.live_owner(&claims).await?.ok_or(Error::InvalidToken)?;

        // Field rules first: they need no secret, so they are answered
        // without counting a try or checking the current password.
        let mut problems = Vec::new();
        if req.old_password.is_empty() {
            problems.push(FieldError::required("old_password"));
        }
        if let Err(errors) = new_password_rules(
            &req.new_password,
            req.new_password2.as_deref(),
            Username::parse(&user.username).ok().as_ref(),
            EmailAddress::parse("email", &user.email).ok().as_ref(),
        ) {
            problems.extend(errors);
        }
        // Compared as stored: two spellings of one NFKC form are one password.
        if !req.old_password.is_empty()
            && normalise_password(&req.new_password) == normalise_password(&req.old_password)
        {
            problems.push(FieldError::new(
                "new_password",
                "The new password must differ from the current one.",
            ));
        }
        if !problems.is_empty() {
            return Err(Error::Invalid(problems));
        }

        let attempt = self.begin(AttemptKind::PasswordChange, ctx, &user.username, at);
        let keys = LoginKeys::new(Some(user.id), &attempt.identifier, attempt.client.clone());
        // Counted like a login try, before the password is looked at: a
        // stolen access token is no unthrottled password oracle.
        let reserved = self.reserve(&attempt, &keys, Some(&user)).await?;
        // A hash from before passwords were normalised is tried as typed
        // too; the new hash replaces it anyway.
        let verified = self
            .hasher
            .verify_stored(
                req.old_password,
                Some(user.password_hash.clone()),
                !user.password_nfkc,
            )
            .await?;
        if verified == Verified::No {
            self.record_failure(&attempt, Some(&user), RejectReason::BadPassword)
                .await?;
            if reserved.lock_started {
                tracing::warn!(user_id = user.id, "account locked");
                self.notify_lock(&user);
            }
            // A field error, not UNAUTHENTICATED: the token was good, and a
            // client must be able to tell "sign in again" from "retype".
            return Err(Error::Invalid(vec![FieldError::new(
                "old_password",
                WRONG_OLD_PASSWORD,
            )]));
        }

        let hash = self.hasher.hash(req.new_password).await?;
        let jti = new_id();
        let pair = self.tokens.issue(&user, now, jti.clone())?;
        let refresh = NewRefreshToken {
            jti,
            family_id: new_id(),
            user_id: user.id,
            issued_at: now,
            expires_at: pair.refresh_exp,
        };
        let entry = self.entry(&attempt, Some(&user), Ok(()));
        self.store
            .record_password_set(
                &entry,
                PasswordSet {
                    user_id: user.id,
                    password_hash: &hash,
                    now,
                    reset_code: None,
                    kept: Some(KeptSession {
                        refresh: &refresh,
                        access_jti: &pair.access_jti,
                        keys: &keys,
                        reserved: &reserved,
                    }),
                },
            )
            .await?;
        self.outbox_signal.notify_one();
        tracing::info!(event_id = %entry.event_id, user_id = user.id, "password changed");
        self.notify_password_set(&user, "changed");
        Ok(pb::TokenPair {
            access: pair.access,
            refresh: pair.refresh,
        })
    }

    /// Mails a reset code to a verified, active account; answers the same
    /// for any address.
    pub async fn send_reset_code(
        &self,
        ctx: &ClientContext,
        req: pb::RequestPasswordResetRequest,
        now: i64,
    ) -> Result<(), Error> {
        self.rate_limit("reset", self.limits.reset_request, ctx, now)
            .await?;
        let email =
            EmailAddress::parse("email", &req.email).map_err(|e| Error::Invalid(vec![e]))?;
        // Per address too, counted whether or not it has an account (the
        // refusal says nothing about that), so many clients cannot flood
        // one inbox.
        let limit = self.limits.reset_request_email;
        let (hits, start) = self
            .store
            .rate_hit(
                &format!("rl:reset-email:{}", email.lookup_key()),
                now,
                limit.window,
            )
            .await?;
        if let Some(retry_after) = limit.retry_after(hits, start, now) {
            tracing::warn!("password reset requests for one address over its limit");
            return Err(Error::Throttled { retry_after });
        }
        // Unknown, unverified (verify instead) and disabled accounts get no
        // code, and the same answer.
        let Some(user) = self.store.user_by_email(&email.lookup_key()).await? else {
            return Ok(());
        };
        if !user.is_active {
            return Ok(());
        }
        let Some(code) = self
            .issue_code(CodePurpose::PasswordReset, &user, now)
            .await?
        else {
            return Ok(());
        };
        let body = format!(
            "Hello {},\n\nSomeone asked to reset your password.\n\n\
             Your password reset code is: {}\n\n\
             It expires in 10 minutes. Resetting signs you out everywhere.\n\
             If you did not ask for it, ignore this email: your password stays as it is.\n",
            user.username,
            code.expose()
        );
        self.mail(&user, "Your password reset code", body);
        Ok(())
    }

    /// Sets a new password when the reset code is right and alive.
    pub async fn reset_with_code(
        &self,
        ctx: &ClientContext,
        req: pb::ResetPasswordRequest,
        at: time::OffsetDateTime,
    ) -> Result<pb::ResetOutcome, Error> {
        use pb::ResetOutcome as O;
        let now = at.unix_timestamp();
        let attempt = self.begin(AttemptKind::PasswordReset, ctx, &req.email, at);
        let limited = self
            .rate_limit("reset-confirm", self.limits.reset_confirm, ctx, now)
            .await;
        if let Err(Error::Throttled { .. }) = &limited {
            // Tallied per client and window, so a flood costs one record.
            self.record_failure(&attempt, None, RejectReason::RateLimited)
                .await?;
        }
        limited?;
        let mut problems = Vec::new();
        if req.email.trim().is_empty() {
            problems.push(FieldError::required("email"));
        }
        if req.code.trim().is_empty() {
            problems.push(FieldError::required("code"));
        }
        // The rules that need no account (the username is checked once the
        // code has proved the caller owns it, so a refusal here says
        // nothing about which account the address has).
        let email = EmailAddress::parse("email", &req.email).ok();
        if let Err(errors) = new_password_rules(
            &req.new_password,
            req.new_password2.as_deref(),
            None,
            email.as_ref(),
        ) {
            problems.extend(errors);
        }
        if !problems.is_empty() {
            return Err(Error::Invalid(problems));
        }

        let user = match &email {
            Some(email) => self.store.user_by_email(&email.lookup_key()).await?,
            None => None,
        };
        let Some(user) = user else {
            self.record_failure(&attempt, None, RejectReason::UnknownUser)
                .await?;
            return Ok(O::CodeWrong);
        };
        // The try is counted before the comparison, so a burst of guesses
        // gets at most CODE_MAX_TRIES comparisons against one code.
        let Some(stored) = self
            .store
            .reserve_code_try(CodePurpose::PasswordReset, user.id, CODE_MAX_TRIES)
            .await?
        else {
            let (reason, outcome) =
                match self.store.code(CodePurpose::PasswordReset, user.id).await? {
                    Some(_) => (RejectReason::TooManyAttempts, O::TooManyAttempts),
                    None => (RejectReason::CodeWrong, O::CodeWrong),
                };
            self.record_failure(&attempt, Some(&user), reason).await?;
            return Ok(outcome);
        };
        let matches = VerificationCode::parse(&req.code)
            .is_some_and(|c| c.matches(&stored.salt, &stored.code_hash));
        if !matches {
            self.record_failure(&attempt, Some(&user), RejectReason::CodeWrong)
                .await?;
            return Ok(O::CodeWrong);
        }
        if now >= stored.expires_at {
            self.record_failure(&attempt, Some(&user), RejectReason::CodeExpired)
                .await?;
            return Ok(O::CodeExpired);
        }
        // Disabled after the code was sent: a reset does not activate.
        if !user.is_active {
            self.record_failure(&attempt, Some(&user), RejectReason::Inactive)
                .await?;
            return Ok(O::CodeWrong);
        }
        if let Err(errors) = new_password_rules(
            &req.new_password,
            None,
            Username::parse(&user.username).ok().as_ref(),
            email.as_ref(),
        ) {
            return Err(Error::Invalid(errors));
        }
        let hash = self.hasher.hash(req.new_password).await?;
        let entry = self.entry(&attempt, Some(&user), Ok(()));
        let set = self
            .store
            .record_password_set(
                &entry,
                PasswordSet {
                    user_id: user.id,
                    password_hash: &hash,
                    now,
                    reset_code: Some(&stored.code_hash),
                    kept: None,
                },
            )
            .await?;
        if !set {
            // Another request used the code first.
            self.record_failure(&attempt, Some(&user), RejectReason::CodeWrong)
                .await?;
            return Ok(O::CodeWrong);
        }
        self.outbox_signal.notify_one();
        tracing::info!(event_id = %entry.event_id, user_id = user.id, "password reset");
        self.notify_password_set(&user, "reset");
        Ok(O::PasswordReset)
    }

    /// Tells the owner their password was changed or reset, so a change
    /// they did not make does not go unnoticed.
    fn notify_password_set(&self, user: &User, how: &str) {
        let body = format!(
            "Hello {},\n\nThe password of your account was {how}, and every session\n\
             signed in with the old one was signed out.\n\
             If this was not you, reset your password now and contact support.\n",
            user.username
        );
        self.mail(user, &format!("Your password was {how}"), body);
    }
}

/// The registration rules for a new password, reported under the request's
/// field names (`new_password`, `new_password2`).
fn new_password_rules(
    new_password: &str,
    confirmation: Option<&str>,
    username: Option<&Username>,
    email: Option<&EmailAddress>,
) -> Result<(), Vec<FieldError>> {
    let mut errors: Vec<FieldError> = match Password::parse_new(new_password, username, email) {
        Ok(_) => Vec::new(),
        Err(errors) => errors
            .into_iter()
            .map(|e| FieldError::new("new_password", e.message))
            .collect(),
    };
    if confirmation.is_some_and(|c| c != new_password) {
        errors.push(FieldError::new(
            "new_password2",
            "Password fields didn't match.",
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

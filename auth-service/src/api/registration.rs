//! Registration and email verification by emailed code.

use proto::auth::v1 as pb;

use super::{AuthApi, codes::CODE_MAX_TRIES};
use crate::{
    context::ClientContext,
    domain::{EmailAddress, FieldError, Password, SMTPUTF8_REFUSED, Username, VerificationCode},
    error::Error,
    hasher::Verified,
    store::{AuthStore, CodePurpose, NewUser, Registration, StoreError, User},
};

impl<S: AuthStore> AuthApi<S> {
    /// Creates an inactive account, to be activated by an emailed code.
    pub async fn register_account(
        &self,
        ctx: &ClientContext,
        req: pb::RegisterRequest,
        now: i64,
    ) -> Result<pb::RegisterResponse, Error> {
        self.rate_limit("register", self.limits.register, ctx, now)
            .await?;
        let mut errors = Vec::new();
        let username = Username::parse(&req.username)
            .map_err(|e| errors.push(e))
            .ok();
        let email = EmailAddress::parse("email", &req.email)
            .map_err(|e| errors.push(e))
            .ok()
            .filter(|e| {
                let deliverable = self.smtputf8 || !e.needs_smtputf8();
                if !deliverable {
                    errors.push(FieldError::new("email", SMTPUTF8_REFUSED));
                }
                deliverable
            });
        let password = Password::parse_new(&req.password, username.as_ref(), email.as_ref())
            .map_err(|e| errors.extend(e))
            .ok();
        if req
            .password2
            .as_deref()
            .is_some_and(|p2| p2 != req.password)
        {
            errors.push(FieldError::new(
                "password2",
                "Password fields didn't match.",
            ));
        }
        let (Some(username), Some(email), Some(password), true) =
            (username, email, password, errors.is_empty())
        else {
            return Err(Error::Invalid(errors));
        };
        let hash = self.hasher.hash(password.expose().to_owned()).await?;
        // An unverified account holds its email only until someone
        // registers it again (it may be someone else's address: see
        // `verify_email`), and its username for the unverified TTL.
        let Registration { user, replaced } = self
            .store
            .register_user(
                NewUser {
                    username: username.as_str(),
                    username_lower: &username.lookup_key(),
                    email: email.as_str(),
                    email_lower: &email.lookup_key(),
                    password_hash: &hash,
                    is_active: false,
                    is_staff: false,
                    now,
                },
                now - self.unverified_ttl,
            )
            .await
            .map_err(conflict)?;
        if replaced > 0 {
            tracing::info!(
                user_id = user.id,
                replaced,
                "account registered in place of unverified ones"
            );
        } else {
            tracing::info!(user_id = user.id, "account registered");
        }
        Ok(pb::RegisterResponse {
            username: user.username,
            email: user.email,
        })
    }

    /// Mails a fresh code to an inactive account; answers the same for
    /// any address.
    pub async fn send_verification_code(
        &self,
        ctx: &ClientContext,
        req: pb::RequestVerificationCodeRequest,
        now: i64,
    ) -> Result<(), Error> {
        self.rate_limit("code", self.limits.code_request, ctx, now)
            .await?;
        let email =
            EmailAddress::parse("email", &req.email).map_err(|e| Error::Invalid(vec![e]))?;
        // Same answer, and nearly the same work, whether or not the account
        // exists: the mail is sent in the background either way.
        let Some(user) = self.store.user_by_email(&email.lookup_key()).await? else {
            return Ok(());
        };
        // Only an unverified account within its TTL gets a code: one past
        // it holds nothing any more, and a verified one (active, or
        // disabled by an operator) is not (re-)activated by email.
        if !user.awaiting_verification(now, self.unverified_ttl) {
            return Ok(());
        }
        let Some(code) = self
            .issue_code(CodePurpose::Verification, &user, now)
            .await?
        else {
            return Ok(());
        };
        let body = crate::codes::verification_mail(&user.username, &code);
        self.mail(&user, crate::codes::VERIFICATION_SUBJECT, body);
        Ok(())
    }

    /// Activates the account when the code is right and alive, and the
    /// caller either knows the account's password or sets a new one.
    ///
    /// The code proves the mailbox; the password was chosen by whoever
    /// registered, who need not be the mailbox owner (a pre-hijacked
    /// account: someone registers your address with their password and
    /// waits for you to verify it). So a code alone activates nothing
    /// (unless `AUTH_VERIFY_WITHOUT_PASSWORD`): `password` must match the
    /// registered one, or `new_password` replaces it. A wrong `password`
    /// answers as a wrong code does (no hint which was wrong), counts as a
    /// try and leaves the code in place.
    pub async fn verify_email(
        &self,
        ctx: &ClientContext,
        req: pb::VerifyCodeRequest,
        now: i64,
    ) -> Result<pb::VerifyOutcome, Error> {
        self.rate_limit("verify", self.limits.code_verify, ctx, now)
            .await?;
        use pb::VerifyOutcome as O;
        let mut missing = Vec::new();
        if req.email.trim().is_empty() {
            missing.push(FieldError::required("email"));
        }
        if req.code.trim().is_empty() {
            missing.push(FieldError::required("code"));
        }
        let proof = match (req.password, req.new_password) {
            (Some(_), Some(_)) => {
                missing.push(FieldError::new(
                    "new_password",
                    "Send either password or new_password, not both.",
                ));
                None
            }
            (Some(password), None) => Some(Proof::Password(password)),
            (None, Some(new_password)) => Some(Proof::NewPassword(new_password)),
            (None, None) if self.verify_without_password => Some(Proof::CodeAlone),
            (None, None) => {
                missing.push(FieldError::new(
                    "password",
                    "This field is required: the account's password, or new_password to \
                     choose a new one.",
                ));
                None
            }
        };
        let (Some(proof), true) = (proof, missing.is_empty()) else {
            return Err(Error::Invalid(missing));
        };
        let Ok(email) = EmailAddress::parse("email", &req.email) else {
            return Ok(O::CodeWrong);
        };
        // The rules that do not depend on the account come first, so a
        // weak new password costs no try and reveals nothing.
        if let Proof::NewPassword(new_password) = &proof {
            Password::parse_new(new_password, None, Some(&email)).map_err(as_new_password)?;
        }
        let Some(user) = self.store.user_by_email(&email.lookup_key()).await? else {
            return Ok(O::CodeWrong);
        };
        // Past its TTL an unverified account no longer holds anything (the
        // sweeper deletes it); a verified one has nothing to verify.
        if !user.awaiting_verification(now, self.unverified_ttl) {
            return Ok(O::CodeWrong);
        }
        // The try is counted before the comparison, so a burst of guesses
        // gets at most CODE_MAX_TRIES comparisons against one code.
        let Some(stored) = self
            .store
            .reserve_code_try(CodePurpose::Verification, user.id, CODE_MAX_TRIES)
            .await?
        else {
            return Ok(
                match self.store.code(CodePurpose::Verification, user.id).await? {
                    Some(_) => O::TooManyAttempts,
                    None => O::CodeWrong,
                },
            );
        };
        let code_matches = VerificationCode::parse(&req.code)
            .is_some_and(|c| c.matches(&stored.salt, &stored.code_hash));
        let new_hash = match proof {
            // Checked whether or not the code matched, so the time taken
            // does not tell a caller which of the two was wrong.
            Proof::Password(password) => {
                let known = self
                    .hasher
                    .verify_stored(
                        password,
                        Some(user.password_hash.clone()),
                        !user.password_nfkc,
                    )
                    .await?
                    != Verified::No;
                if !(code_matches && known) {
                    return Ok(O::CodeWrong);
                }
                None
            }
            Proof::NewPassword(new_password) if code_matches => {
                if now >= stored.expires_at {
                    return Ok(O::CodeExpired);
                }
                Some(self.new_password_hash(&user, new_password).await?)
            }
            Proof::NewPassword(_) => return Ok(O::CodeWrong),
            Proof::CodeAlone if code_matches => None,
            Proof::CodeAlone => return Ok(O::CodeWrong),
        };
        if now >= stored.expires_at {
            return Ok(O::CodeExpired);
        }
        if self
            .store
            .activate_with_code(user.id, &stored.code_hash, now, new_hash.as_deref())
            .await?
        {
            tracing::info!(
                user_id = user.id,
                new_password = new_hash.is_some(),
                "account activated"
            );
            Ok(O::Activated)
        } else {
            Ok(O::CodeWrong)
        }
    }

    /// The hash of `new_password` once it passes the registration rules
    /// against the account's own username and email too (only a caller
    /// holding the right code gets this far, so naming the field reveals
    /// nothing to a guesser).
    async fn new_password_hash(&self, user: &User, new_password: String) -> Result<String, Error> {
        let username = Username::parse(&user.username).ok();
        let email = EmailAddress::parse("email", &user.email).ok();
        let password = Password::parse_new(&new_password, username.as_ref(), email.as_ref())
            .map_err(as_new_password)?;
        Ok(self.hasher.hash(password.expose().to_owned()).await?)
    }
}

/// What, besides the code, a verification offers as the mailbox owner's
/// consent to the account's password.
enum Proof {
    /// The account's password, as registered.
    Password(String),
    /// A password to replace the registrant's.
    NewPassword(String),
    /// Nothing (`AUTH_VERIFY_WITHOUT_PASSWORD`).
    CodeAlone,
}

/// The password rules' complaints, about the field `new_password`.
fn as_new_password(errors: Vec<FieldError>) -> Error {
    Error::Invalid(
        errors
            .into_iter()
            .map(|e| FieldError::new("new_password", e.message))
            .collect(),
    )
}

fn conflict(e: StoreError) -> Error {
    match e {
        StoreError::Duplicate(field) => Error::Conflict(vec![FieldError::new(
            field,
            format!("A user with that {field} already exists."),
        )]),
        other => other.into(),
    }
}

//! The `auth.v1.AuthService` implementation.

use std::sync::Arc;

use lettre::message::Mailbox;
use proto::auth::v1::{self as pb, auth_service_server::AuthService};
use rand::RngCore;
use tokio::sync::Notify;
use tonic::{Request, Response, Status};

use crate::{
    attempt::{RejectReason, outbox_entry},
    context::ClientContext,
    domain::{EmailAddress, FieldError, Password, Username, VerificationCode},
    error::Error,
    hasher::PasswordHasher,
    mail::Mailer,
    store::{AuthStore, NewRefreshToken, NewUser, Rotation, StoreError, StoredCode, User},
    tokens::{ACCESS, REFRESH, TokenService},
};

/// A verification code's lifetime.
const CODE_TTL_SECS: i64 = 600;
/// Wrong tries after which a code is dead.
const CODE_MAX_TRIES: i32 = 5;
/// Least time between two codes for one address.
const CODE_RESEND_SECS: i64 = 60;

/// Shared state of the API.
pub struct AuthApi<S> {
    store: S,
    hasher: PasswordHasher,
    tokens: Arc<TokenService>,
    mailer: Mailer,
    mail_from: Mailbox,
    /// Wakes the outbox forwarder when an attempt is written.
    outbox_signal: Arc<Notify>,
}

impl<S: AuthStore> AuthApi<S> {
    /// Assembles the API over its collaborators.
    pub fn new(
        store: S,
        hasher: PasswordHasher,
        tokens: Arc<TokenService>,
        mailer: Mailer,
        mail_from: Mailbox,
        outbox_signal: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            hasher,
            tokens,
            mailer,
            mail_from,
            outbox_signal,
        }
    }

    async fn record(
        &self,
        ctx: &ClientContext,
        identifier: &str,
        user: Option<&User>,
        outcome: Result<(), RejectReason>,
        refresh: Option<&NewRefreshToken>,
    ) -> Result<(), Error> {
        let entry = outbox_entry(
            ctx,
            identifier,
            user,
            outcome,
            time::OffsetDateTime::now_utc(),
        );
        self.store.record_login(&entry, refresh).await?;
        self.outbox_signal.notify_one();
        tracing::info!(
            event_id = %entry.event_id,
            successful = outcome.is_ok(),
            reason = outcome.err().map_or("", RejectReason::as_str),
            user_id = user.map(|u| u.id),
            "login attempt"
        );
        Ok(())
    }

    async fn login_inner(
        &self,
        ctx: &ClientContext,
        req: pb::LoginRequest,
    ) -> Result<pb::TokenPair, Error> {
        let identifier = req.username.trim();
        let mut problems: Vec<FieldError> = req
            .malformed_fields
            .iter()
            .map(|f| FieldError::new(f.clone(), "Malformed value."))
            .collect();
        if problems.is_empty() {
            if identifier.is_empty() {
                problems.push(FieldError::required("username"));
            }
            if req.password.is_empty() {
                problems.push(FieldError::required("password"));
            }
        }
        if !problems.is_empty() {
            self.record(
                ctx,
                identifier,
                None,
                Err(RejectReason::MalformedRequest),
                None,
            )
            .await?;
            return Err(Error::Invalid(problems));
        }

        let user = self.store.user_by_login(&identifier.to_lowercase()).await?;
        let matched = self
            .hasher
            .verify(req.password, user.as_ref().map(|u| u.password_hash.clone()))
            .await?;
        let outcome = match &user {
            None => Err(RejectReason::UnknownUser),
            Some(_) if !matched => Err(RejectReason::BadPassword),
            Some(u) if !u.is_active => Err(RejectReason::Inactive),
            Some(_) => Ok(()),
        };
        let (Some(user), Ok(())) = (&user, outcome) else {
            self.record(ctx, identifier, user.as_ref(), outcome, None)
                .await?;
            return Err(Error::BadCredentials);
        };
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let jti = new_id();
        let pair = self.tokens.issue(user, now, jti.clone())?;
        let refresh = NewRefreshToken {
            jti,
            family_id: new_id(),
            user_id: user.id,
            issued_at: now,
            expires_at: pair.refresh_exp,
        };
        self.record(ctx, identifier, Some(user), Ok(()), Some(&refresh))
            .await?;
        Ok(pb::TokenPair {
            access: pair.access,
            refresh: pair.refresh,
        })
    }

    async fn register_inner(
        &self,
        req: pb::RegisterRequest,
    ) -> Result<pb::RegisterResponse, Error> {
        let mut errors = Vec::new();
        let username = Username::parse(&req.username)
            .map_err(|e| errors.push(e))
            .ok();
        let email = EmailAddress::parse("email", &req.email)
            .map_err(|e| errors.push(e))
            .ok();
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
        let user = self
            .store
            .create_user(NewUser {
                username: username.as_str(),
                username_lower: &username.lookup_key(),
                email: email.as_str(),
                email_lower: &email.lookup_key(),
                password_hash: &hash,
                is_active: false,
                is_staff: false,
                now: time::OffsetDateTime::now_utc().unix_timestamp(),
            })
            .await
            .map_err(conflict)?;
        tracing::info!(user_id = user.id, "account registered");
        Ok(pb::RegisterResponse {
            username: user.username,
            email: user.email,
        })
    }

    async fn request_code_inner(
        &self,
        req: pb::RequestVerificationCodeRequest,
    ) -> Result<(), Error> {
        let email =
            EmailAddress::parse("email", &req.email).map_err(|e| Error::Invalid(vec![e]))?;
        // Same answer, and nearly the same work, whether or not the account
        // exists: the mail is sent in the background either way.
        let Some(user) = self.store.user_by_email(&email.lookup_key()).await? else {
            return Ok(());
        };
        if user.is_active {
            return Ok(());
        }
        let code = VerificationCode::generate();
        let mut salt = vec![0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let stored = StoredCode {
            code_hash: code.digest(&salt),
            salt,
            created_at: now,
            expires_at: now + CODE_TTL_SECS,
            tries: 0,
        };
        if !self
            .store
            .put_code(user.id, &stored, now - CODE_RESEND_SECS)
            .await?
        {
            tracing::info!(
                user_id = user.id,
                "verification code not re-sent: last one is under 60 s old"
            );
            return Ok(());
        }
        let (mailer, from, to) = (
            self.mailer.clone(),
            self.mail_from.clone(),
            user.email.clone(),
        );
        let body = format!(
            "Hello {},\n\nYour verification code is: {}\n\nIt expires in 10 minutes. If you did not ask for it, ignore this email.\n",
            user.username,
            code.expose()
        );
        tokio::spawn(async move {
            match mailer
                .send(&from, &to, "Your verification code", body)
                .await
            {
                Ok(()) => tracing::info!(user_id = user.id, "verification code sent"),
                Err(e) => {
                    tracing::error!(user_id = user.id, error = %e, "verification email failed")
                }
            }
        });
        Ok(())
    }

    async fn verify_code_inner(
        &self,
        req: pb::VerifyCodeRequest,
    ) -> Result<pb::VerifyOutcome, Error> {
        use pb::VerifyOutcome as O;
        let mut missing = Vec::new();
        if req.email.trim().is_empty() {
            missing.push(FieldError::required("email"));
        }
        if req.code.trim().is_empty() {
            missing.push(FieldError::required("code"));
        }
        if !missing.is_empty() {
            return Err(Error::Invalid(missing));
        }
        let Ok(email) = EmailAddress::parse("email", &req.email) else {
            return Ok(O::CodeWrong);
        };
        let Some(user) = self.store.user_by_email(&email.lookup_key()).await? else {
            return Ok(O::CodeWrong);
        };
        let Some(stored) = self.store.code(user.id).await? else {
            return Ok(O::CodeWrong);
        };
        if stored.tries >= CODE_MAX_TRIES {
            return Ok(O::TooManyAttempts);
        }
        let matches = VerificationCode::parse(&req.code)
            .is_some_and(|c| c.matches(&stored.salt, &stored.code_hash));
        if !matches {
            self.store.count_wrong_code(user.id).await?;
            return Ok(O::CodeWrong);
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        if now >= stored.expires_at {
            return Ok(O::CodeExpired);
        }
        if self
            .store
            .activate_with_code(user.id, &stored.code_hash, now)
            .await?
        {
            tracing::info!(user_id = user.id, "account activated");
            Ok(O::Activated)
        } else {
            Ok(O::CodeWrong)
        }
    }

    async fn refresh_inner(&self, req: pb::RefreshRequest) -> Result<pb::TokenPair, Error> {
        if req.refresh.trim().is_empty() {
            return Err(Error::Invalid(vec![FieldError::required("refresh")]));
        }
        let claims = self.tokens.verify(req.refresh.trim(), REFRESH)?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let jti = new_id();
        let next = NewRefreshToken {
            jti: jti.clone(),
            family_id: String::new(),
            user_id: claims.user_id,
            issued_at: now,
            expires_at: now + self.tokens.refresh_ttl(),
        };
        match self.store.rotate_refresh(&claims.jti, now, &next).await? {
            Rotation::Rotated(user) => {
                let pair = self.tokens.issue(&user, now, jti)?;
                Ok(pb::TokenPair {
                    access: pair.access,
                    refresh: pair.refresh,
                })
            }
            Rotation::Reused => {
                tracing::warn!(
                    user_id = claims.user_id,
                    "refresh token reused: family revoked"
                );
                Err(Error::InvalidToken)
            }
            Rotation::Inactive | Rotation::Invalid => Err(Error::InvalidToken),
        }
    }

    async fn introspect_inner(
        &self,
        req: pb::IntrospectTokenRequest,
    ) -> Result<pb::IntrospectTokenResponse, Error> {
        let Ok(claims) = self.tokens.verify(req.token.trim(), ACCESS) else {
            return Ok(pb::IntrospectTokenResponse::default());
        };
        match self.store.user_by_id(claims.user_id).await? {
            Some(user) if user.is_active => Ok(pb::IntrospectTokenResponse {
                active: true,
                user_id: user.id,
                username: user.username,
                is_staff: user.is_staff,
                exp: claims.exp,
                jti: claims.jti,
            }),
            _ => Ok(pb::IntrospectTokenResponse::default()),
        }
    }
}

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
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

#[tonic::async_trait]
impl<S: AuthStore> AuthService for AuthApi<S> {
    #[tracing::instrument(skip_all)]
    async fn register(
        &self,
        req: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        Ok(Response::new(self.register_inner(req.into_inner()).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn request_verification_code(
        &self,
        req: Request<pb::RequestVerificationCodeRequest>,
    ) -> Result<Response<pb::RequestVerificationCodeResponse>, Status> {
        self.request_code_inner(req.into_inner()).await?;
        Ok(Response::new(pb::RequestVerificationCodeResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn verify_code(
        &self,
        req: Request<pb::VerifyCodeRequest>,
    ) -> Result<Response<pb::VerifyCodeResponse>, Status> {
        let outcome = self.verify_code_inner(req.into_inner()).await?;
        Ok(Response::new(pb::VerifyCodeResponse {
            outcome: outcome.into(),
        }))
    }

    #[tracing::instrument(skip_all, fields(request_id))]
    async fn login(
        &self,
        req: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::TokenPair>, Status> {
        let ctx = ClientContext::from_metadata(req.metadata());
        tracing::Span::current().record("request_id", ctx.request_id.as_str());
        Ok(Response::new(
            self.login_inner(&ctx, req.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn refresh(
        &self,
        req: Request<pb::RefreshRequest>,
    ) -> Result<Response<pb::TokenPair>, Status> {
        Ok(Response::new(self.refresh_inner(req.into_inner()).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn introspect_token(
        &self,
        req: Request<pb::IntrospectTokenRequest>,
    ) -> Result<Response<pb::IntrospectTokenResponse>, Status> {
        Ok(Response::new(
            self.introspect_inner(req.into_inner()).await?,
        ))
    }

    async fn get_jwks(
        &self,
        _req: Request<pb::GetJwksRequest>,
    ) -> Result<Response<pb::GetJwksResponse>, Status> {
        let keys = self
            .tokens
            .jwks()
            .iter()
            .map(|k| pb::Jwk {
                kty: "OKP".into(),
                crv: "Ed25519".into(),
                x: k.x.clone(),
                kid: k.kid.clone(),
                alg: "EdDSA".into(),
                r#use: "sig".into(),
            })
            .collect();
        Ok(Response::new(pb::GetJwksResponse { keys }))
    }
}

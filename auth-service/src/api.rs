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
    store::{
        AuthStore, LoginEffects, LoginReservation, NewRefreshToken, NewUser, Rotation, StoreError,
        StoredCode, User,
    },
    throttle::{
        BruteForcePolicy, DEFAULT_IPV6_PREFIX, Limit, LoginKeys, RateLimits, client_key,
        could_name_an_account, wait,
    },
    tokens::{ACCESS, Claims, REFRESH, TokenService},
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
    /// Login brute-force thresholds.
    brute_force: BruteForcePolicy,
    /// Per-IP and per-family limits.
    limits: RateLimits,
    /// The IPv6 prefix length every per-IP counter counts by.
    ipv6_prefix: u8,
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
            brute_force: BruteForcePolicy::default(),
            limits: RateLimits::default(),
            ipv6_prefix: DEFAULT_IPV6_PREFIX,
        }
    }

    /// Replaces the default thresholds.
    pub fn with_limits(mut self, brute_force: BruteForcePolicy, limits: RateLimits) -> Self {
        self.brute_force = brute_force;
        self.limits = limits;
        self
    }

    /// Counts IPv6 clients by networks of this prefix length.
    pub fn with_ipv6_prefix(mut self, prefix: u8) -> Self {
        self.ipv6_prefix = prefix;
        self
    }

    /// The key a client is counted under (see [`client_key`]).
    fn client(&self, ctx: &ClientContext) -> String {
        client_key(&ctx.ip, self.ipv6_prefix)
    }

    /// Counts one `action` from the caller's network before any work is
    /// done for it; refuses past `limit`. Callers that send no address are
    /// counted together as one client, so leaving it out escapes nothing.
    async fn rate_limit(
        &self,
        action: &str,
        limit: Limit,
        ctx: &ClientContext,
    ) -> Result<(), Error> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let (hits, start) = self
            .store
            .rate_hit(
                &format!("rl:{action}:{}", self.client(ctx)),
                now,
                limit.window,
            )
            .await?;
        match limit.retry_after(hits, start, now) {
            Some(retry_after) => {
                tracing::warn!(action, ip = %ctx.ip, "rate limit reached");
                Err(Error::Throttled { retry_after })
            }
            None => Ok(()),
        }
    }

    /// Verifies `token`, re-reading the signing keys first when it names
    /// a key this replica has not loaded (added by `rotate-keys`).
    async fn verify_token(&self, token: &str, token_type: &str) -> Result<Claims, Error> {
        if self.tokens.should_reload_for(token) {
            self.tokens.reload(&self.store).await?;
        }
        self.tokens.verify(token, token_type)
    }

    /// Tells the owner, once per lock, that their account is locked.
    fn notify_lock(&self, user: &User) {
        let (mailer, from, to, id) = (
            self.mailer.clone(),
            self.mail_from.clone(),
            user.email.clone(),
            user.id,
        );
        let body = format!(
            "Hello {},\n\nYour account was temporarily locked after many failed sign-in attempts. \
             It unlocks by itself after a short wait. If these attempts were not you, \
             consider changing your password.\n",
            user.username
        );
        tokio::spawn(async move {
            match mailer
                .send(&from, &to, "Your account was temporarily locked", body)
                .await
            {
                Ok(()) => tracing::info!(user_id = id, "lock notification sent"),
                Err(e) => tracing::error!(user_id = id, error = %e, "lock notification failed"),
            }
        });
    }

    /// Writes the attempt to the outbox (with what it changes) and wakes
    /// the forwarder.
    async fn record(
        &self,
        ctx: &ClientContext,
        identifier: &str,
        user: Option<&User>,
        outcome: Result<(), RejectReason>,
        effects: LoginEffects<'_>,
        now: time::OffsetDateTime,
    ) -> Result<(), Error> {
        let entry = outbox_entry(ctx, identifier, user, outcome, now);
        self.store.record_login(&entry, effects).await?;
        self.outbox_signal.notify_one();
        crate::attempt::count(outcome);
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
        // One instant for the whole attempt: its counters, tokens and log row.
        let at = time::OffsetDateTime::now_utc();
        let now = at.unix_timestamp();
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
                LoginEffects::Nothing,
                at,
            )
            .await?;
            return Err(Error::Invalid(problems));
        }

        let lookup = identifier.to_lowercase();
        let user = if could_name_an_account(&lookup) {
            self.store.user_by_login(&lookup).await?
        } else {
            None
        };
        let keys = LoginKeys::new(user.as_ref().map(|u| u.id), identifier, &self.client(ctx));

        // The try is counted before, and decided without, looking at the
        // password: a refused attempt says nothing about whether the
        // password was right, and a burst gets no more password checks
        // than the thresholds allow.
        let reserved = match self
            .store
            .reserve_login(&keys, &self.brute_force, now)
            .await?
        {
            LoginReservation::Granted(reserved) => reserved,
            LoginReservation::Refused {
                until,
                account_locked,
            } => {
                let reason = if account_locked {
                    RejectReason::LockedOut
                } else {
                    RejectReason::RateLimited
                };
                self.record(
                    ctx,
                    identifier,
                    user.as_ref(),
                    Err(reason),
                    LoginEffects::Nothing,
                    at,
                )
                .await?;
                return Err(Error::Throttled {
                    retry_after: wait(until, now),
                });
            }
        };

        let password = req.password;
        let matched = self
            .hasher
            .verify(
                password.clone(),
                user.as_ref().map(|u| u.password_hash.clone()),
            )
            .await?;
        let outcome = match &user {
            None => Err(RejectReason::UnknownUser),
            Some(_) if !matched => Err(RejectReason::BadPassword),
            Some(u) if !u.is_active => Err(RejectReason::Inactive),
            Some(_) => Ok(()),
        };
        let (Some(user), Ok(())) = (&user, outcome) else {
            // Inactive stays counted too: otherwise the lock arriving one
            // attempt late would tell a guesser that one password was right.
            self.record(
                ctx,
                identifier,
                user.as_ref(),
                outcome,
                LoginEffects::Nothing,
                at,
            )
            .await?;
            if reserved.lock_started {
                tracing::warn!(user_id = user.as_ref().map(|u| u.id), "account locked");
                if let Some(user) = &user {
                    self.notify_lock(user);
                }
            }
            return Err(Error::BadCredentials);
        };
        if crate::hasher::needs_rehash(&user.password_hash) {
            // The one moment we hold the plain password of a known-good
            // login: upgrade a hash made with older, weaker parameters.
            let upgraded = self.hasher.hash(password).await?;
            self.store.set_password_hash(user.id, &upgraded).await?;
            tracing::info!(
                user_id = user.id,
                "password hash upgraded to current parameters"
            );
        }
        let jti = new_id();
        let pair = self.tokens.issue(user, now, jti.clone())?;
        let refresh = NewRefreshToken {
            jti,
            family_id: new_id(),
            user_id: user.id,
            issued_at: now,
            expires_at: pair.refresh_exp,
        };
        self.record(
            ctx,
            identifier,
            Some(user),
            Ok(()),
            LoginEffects::Success {
                refresh: &refresh,
                keys: &keys,
                reserved: &reserved,
            },
            at,
        )
        .await?;
        Ok(pb::TokenPair {
            access: pair.access,
            refresh: pair.refresh,
        })
    }

    async fn register_inner(
        &self,
        ctx: &ClientContext,
        req: pb::RegisterRequest,
    ) -> Result<pb::RegisterResponse, Error> {
        self.rate_limit("register", self.limits.register, ctx)
            .await?;
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
        ctx: &ClientContext,
        req: pb::RequestVerificationCodeRequest,
    ) -> Result<(), Error> {
        self.rate_limit("code", self.limits.code_request, ctx)
            .await?;
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
        ctx: &ClientContext,
        req: pb::VerifyCodeRequest,
    ) -> Result<pb::VerifyOutcome, Error> {
        self.rate_limit("verify", self.limits.code_verify, ctx)
            .await?;
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
        // The try is counted before the comparison, so a burst of guesses
        // gets at most CODE_MAX_TRIES comparisons against one code.
        let Some(stored) = self.store.reserve_code_try(user.id, CODE_MAX_TRIES).await? else {
            return Ok(match self.store.code(user.id).await? {
                Some(_) => O::TooManyAttempts,
                None => O::CodeWrong,
            });
        };
        let matches = VerificationCode::parse(&req.code)
            .is_some_and(|c| c.matches(&stored.salt, &stored.code_hash));
        if !matches {
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
        let claims = self.verify_token(req.refresh.trim(), REFRESH).await?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let jti = new_id();
        let next = NewRefreshToken {
            jti: jti.clone(),
            family_id: String::new(),
            user_id: claims.user_id,
            issued_at: now,
            expires_at: now + self.tokens.refresh_ttl(),
        };
        match self
            .store
            .rotate_refresh(&claims.jti, now, &next, self.limits.refresh_family)
            .await?
        {
            Rotation::Rotated(owner) => {
                let pair = self.tokens.issue(owner, now, jti)?;
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
            Rotation::Throttled(retry_after) => {
                tracing::warn!(
                    user_id = claims.user_id,
                    "refresh family over its rate limit"
                );
                Err(Error::Throttled { retry_after })
            }
            Rotation::Inactive | Rotation::Invalid => Err(Error::InvalidToken),
        }
    }

    async fn logout_inner(&self, req: pb::LogoutRequest) -> Result<(), Error> {
        if req.refresh.trim().is_empty() {
            return Err(Error::Invalid(vec![FieldError::required("refresh")]));
        }
        let claims = self.verify_token(req.refresh.trim(), REFRESH).await?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        if !self.store.logout_family(&claims.jti, now).await? {
            return Err(Error::InvalidToken);
        }
        tracing::info!(user_id = claims.user_id, "session logged out");
        Ok(())
    }

    async fn logout_all_inner(
        &self,
        req: pb::LogoutAllRequest,
    ) -> Result<pb::LogoutAllResponse, Error> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let user_id = if !req.refresh.trim().is_empty() {
            let claims = self.verify_token(req.refresh.trim(), REFRESH).await?;
            self.store
                .live_refresh_owner(&claims.jti, now)
                .await?
                .ok_or(Error::InvalidToken)?
        } else if !req.access.trim().is_empty() {
            self.verify_token(req.access.trim(), ACCESS).await?.user_id
        } else {
            return Err(Error::Invalid(vec![FieldError::required("refresh")]));
        };
        let revoked_sessions = self.store.logout_user(user_id, now).await?;
        tracing::info!(user_id, revoked_sessions, "all sessions logged out");
        Ok(pb::LogoutAllResponse { revoked_sessions })
    }

    async fn introspect_inner(
        &self,
        req: pb::IntrospectTokenRequest,
    ) -> Result<pb::IntrospectTokenResponse, Error> {
        let Ok(claims) = self.verify_token(req.token.trim(), ACCESS).await else {
            return Ok(pb::IntrospectTokenResponse::default());
        };
        // "Log out everywhere" ends every token issued up to that second,
        // including any issued within it: `iat` has whole seconds only, and
        // a token wrongly refused costs a login, one wrongly kept a breach.
        let live = |user: &User| {
            user.is_active && user.sessions_revoked_at.is_none_or(|at| claims.iat > at)
        };
        match self.store.user_by_id(claims.user_id).await? {
            Some(user) if live(&user) => Ok(pb::IntrospectTokenResponse {
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
        let ctx = ClientContext::from_metadata(req.metadata());
        Ok(Response::new(
            self.register_inner(&ctx, req.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn request_verification_code(
        &self,
        req: Request<pb::RequestVerificationCodeRequest>,
    ) -> Result<Response<pb::RequestVerificationCodeResponse>, Status> {
        let ctx = ClientContext::from_metadata(req.metadata());
        self.request_code_inner(&ctx, req.into_inner()).await?;
        Ok(Response::new(pb::RequestVerificationCodeResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn verify_code(
        &self,
        req: Request<pb::VerifyCodeRequest>,
    ) -> Result<Response<pb::VerifyCodeResponse>, Status> {
        let ctx = ClientContext::from_metadata(req.metadata());
        let outcome = self.verify_code_inner(&ctx, req.into_inner()).await?;
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
    async fn logout(
        &self,
        req: Request<pb::LogoutRequest>,
    ) -> Result<Response<pb::LogoutResponse>, Status> {
        self.logout_inner(req.into_inner()).await?;
        Ok(Response::new(pb::LogoutResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn logout_all(
        &self,
        req: Request<pb::LogoutAllRequest>,
    ) -> Result<Response<pb::LogoutAllResponse>, Status> {
        Ok(Response::new(
            self.logout_all_inner(req.into_inner()).await?,
        ))
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
        // Fresh from the database: the gateway asks when it meets a kid it
        // does not know, which is exactly when a key was just rotated in.
        if let Err(e) = self.tokens.reload(&self.store).await {
            tracing::warn!(error = %e, "signing keys not reloaded; serving the loaded ones");
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let keys = self
            .tokens
            .jwks(now)
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
        Ok(Response::new(pb::GetJwksResponse {
            keys,
            signing_kid: self.tokens.signing_kid(now),
        }))
    }
}

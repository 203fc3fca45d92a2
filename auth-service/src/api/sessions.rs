//! Sessions and tokens: refresh (rotating, or in place when rotation is
//! off), logout (one session or every one), and introspection for the
//! gateway's long-lived streams.

use proto::auth::v1 as pb;

use super::{AuthApi, new_id};
use crate::{
    domain::FieldError,
    error::Error,
    store::{AuthStore, NewRefreshToken, Rotation, TokenOwner, User},
    tokens::{ACCESS, Claims, REFRESH},
};

impl<S: AuthStore> AuthApi<S> {
    /// Rotates a refresh token into a new pair (or, with rotation off,
    /// answers an access token alone: [`Self::refresh_in_place`]). A token
    /// presented again within the reuse grace, while the token its first
    /// use issued is still unused, gets that same refresh token again (two
    /// tabs, or a retry after a lost answer); any other reuse revokes its
    /// family.
    pub async fn refresh_session(
        &self,
        req: pb::RefreshRequest,
        now: i64,
    ) -> Result<pb::TokenPair, Error> {
        if req.refresh.trim().is_empty() {
            return Err(Error::Invalid(vec![FieldError::required("refresh")]));
        }
        let claims = self.verify_token(req.refresh.trim(), REFRESH).await?;
        if !self.rotate_refresh_tokens {
            return self.refresh_in_place(&claims, now).await;
        }
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
            .rotate_refresh(
                &claims.jti,
                now,
                &next,
                self.limits.refresh_family,
                self.refresh_reuse_grace,
            )
            .await?
        {
            Rotation::Rotated(owner) => {
                let pair = self.tokens.issue(owner, now, jti)?;
                Ok(pb::TokenPair {
                    access: pair.access,
                    refresh: pair.refresh,
                })
            }
            Rotation::Replayed { owner, successor } => {
                tracing::info!(
                    user_id = claims.user_id,
                    "refresh token presented again within the reuse grace: same successor"
                );
                let pair = self.tokens.reissue(
                    owner,
                    now,
                    successor.jti,
                    successor.issued_at,
                    successor.expires_at,
                )?;
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

    /// A refresh without rotation (`JWT_ROTATE_REFRESH_TOKENS=false`, as
    /// simplejwt does by default): a fresh access token, and an empty
    /// `refresh` saying the presented token stays in use. The token must
    /// still be live: logout, a password change or reset and operator
    /// revocation end it as they end any session. Its refreshes are counted
    /// against the family limit first; without rotation a session is this
    /// one token, so they are counted by its `jti`.
    async fn refresh_in_place(&self, claims: &Claims, now: i64) -> Result<pb::TokenPair, Error> {
        let limit = self.limits.refresh_family;
        let (hits, start) = self
            .store
            .rate_hit(&format!("rt:{}", claims.jti), now, limit.window)
            .await?;
        if let Some(retry_after) = limit.retry_after(hits, start, now) {
            tracing::warn!(
                user_id = claims.user_id,
                "refresh token over its rate limit"
            );
            return Err(Error::Throttled { retry_after });
        }
        let owner = self
            .store
            .live_refresh_owner(&claims.jti, now)
            .await?
            .ok_or(Error::InvalidToken)?;
        let user = self
            .store
            .user_by_id(owner)
            .await?
            .filter(|user| user.is_active)
            .ok_or(Error::InvalidToken)?;
        Ok(pb::TokenPair {
            access: self.tokens.issue_access(&TokenOwner::from(&user), now)?,
            refresh: String::new(),
        })
    }

    /// Ends the refresh token's session (its family).
    pub async fn log_out(&self, req: pb::LogoutRequest, now: i64) -> Result<(), Error> {
        if req.refresh.trim().is_empty() {
            return Err(Error::Invalid(vec![FieldError::required("refresh")]));
        }
        let claims = self.verify_token(req.refresh.trim(), REFRESH).await?;
        if !self.store.logout_family(&claims.jti, now).await? {
            return Err(Error::InvalidToken);
        }
        tracing::info!(user_id = claims.user_id, "session logged out");
        Ok(())
    }

    /// Ends every session of the token's user, and every access token
    /// issued up to `now` as far as introspection is concerned.
    pub async fn log_out_everywhere(
        &self,
        req: pb::LogoutAllRequest,
        now: i64,
    ) -> Result<pb::LogoutAllResponse, Error> {
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
        let revoked_sessions = self
            .store
            .logout_user(user_id, now, crate::store::no_admin_events)
            .await?;
        tracing::info!(user_id, revoked_sessions, "all sessions logged out");
        Ok(pb::LogoutAllResponse { revoked_sessions })
    }

    /// Whether an access token is still good for its user right now.
    pub async fn introspect(
        &self,
        req: pb::IntrospectTokenRequest,
    ) -> Result<pb::IntrospectTokenResponse, Error> {
        let Ok(claims) = self.verify_token(req.token.trim(), ACCESS).await else {
            return Ok(pb::IntrospectTokenResponse::default());
        };
        match self.live_owner(&claims).await? {
            Some(user) => Ok(pb::IntrospectTokenResponse {
                active: true,
                user_id: user.id,
                username: user.username,
                is_staff: user.is_staff,
                exp: claims.exp,
                jti: claims.jti,
            }),
            None => Ok(pb::IntrospectTokenResponse::default()),
        }
    }

    /// The account of a verified access token, when the token is still
    /// good for it: the account is active and the token was issued after
    /// the account last revoked its sessions (logout everywhere, a password
    /// change or reset).
    pub(super) async fn live_owner(&self, claims: &Claims) -> Result<Option<User>, Error> {
        let Some(user) = self.store.user_by_id(claims.user_id).await? else {
            return Ok(None);
        };
        // A revocation ends every token issued up to its second, including
        // any issued within it: `iat` has whole seconds only, and a token
        // wrongly refused costs a login, one wrongly kept a breach. The one
        // exception is the access token a password change issued in that
        // second, whose `jti` it kept.
        let live = match user.sessions_revoked_at {
            _ if !user.is_active => false,
            None => true,
            Some(at) if claims.iat > at => true,
            Some(at) if claims.iat == at => {
                self.store.kept_access_jti(user.id).await?.as_deref() == Some(claims.jti.as_str())
            }
            Some(_) => false,
        };
        Ok(live.then_some(user))
    }
}

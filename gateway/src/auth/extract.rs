//! The extractors that put a verified access token in front of a handler:
//! [`AuthUser`], [`AdminUser`] and [`AdminSession`].

use std::sync::Arc;

use axum::{
    extract::{FromRef, FromRequestParts},
    http::{HeaderMap, header, request::Parts},
};
use common::config::Secret;

use super::token::{Claims, TokenVerifier};
use crate::{context::RequestContext, error::ApiError};

/// A request with a valid access token (`Authorization: Bearer <token>`).
#[derive(Clone, Debug)]
pub struct AuthUser(pub Claims);

impl<S> FromRequestParts<S> for AuthUser
where
    S: Send + Sync,
    Arc<TokenVerifier>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let ctx = RequestContext::from_request_parts(parts, state)
            .await
            .unwrap_or_else(|never| match never {});
        let token = bearer_token(&parts.headers)?;
        let verifier = Arc::<TokenVerifier>::from_ref(state);
        let claims = verifier.verify(token, &ctx).await?;
        tracing::Span::current().record("user_id", claims.user_id);
        Ok(Self(claims))
    }
}

/// The token of `Authorization: Bearer <token>`, not yet verified:
/// `NotAuthenticated` when there is no bearer token at all (no header, or
/// another scheme), `BadAuthorizationHeader` when the bearer header is not
/// two words (simplejwt's `bad_authorization_header`), `TokenNotValid` when
/// it is not text.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::NotAuthenticated);
    };
    let value = value.to_str().map_err(|_| ApiError::TokenNotValid)?;
    let mut words = value.split_ascii_whitespace();
    // Another scheme (Basic, ...) is not an attempt at a bearer token:
    // simplejwt answered "not provided" for it too.
    if !words
        .next()
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("bearer"))
    {
        return Err(ApiError::NotAuthenticated);
    }
    match (words.next(), words.next()) {
        (Some(token), None) => Ok(token),
        _ => Err(ApiError::BadAuthorizationHeader),
    }
}

/// A request from an administrator (`is_staff`); others get 403.
#[derive(Clone, Debug)]
pub struct AdminUser(pub Claims);

impl<S> FromRequestParts<S> for AdminUser
where
    S: Send + Sync,
    Arc<TokenVerifier>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let AuthUser(claims) = AuthUser::from_request_parts(parts, state).await?;
        if !claims.is_staff {
            tracing::info!(user_id = claims.user_id, "non-admin refused");
            return Err(ApiError::PermissionDenied);
        }
        Ok(Self(claims))
    }
}

/// An administrator's request together with the verified token itself,
/// for work that outlives the request and must ask auth-service again
/// whether the token still holds (the live tail): local verification
/// cannot see a demotion, a disabled account or a logout everywhere.
#[derive(Clone, Debug)]
pub struct AdminSession {
    /// The token's claims, `is_staff` checked.
    pub claims: Claims,
    /// The access token as sent.
    pub token: Secret,
}

impl<S> FromRequestParts<S> for AdminSession
where
    S: Send + Sync,
    Arc<TokenVerifier>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let AdminUser(claims) = AdminUser::from_request_parts(parts, state).await?;
        // The same header the claims were just verified from.
        let token = Secret::new(bearer_token(&parts.headers)?);
        Ok(Self { claims, token })
    }
}

//! [`UserAction`]: what every handler of `/api/admin/users/{id}/…` starts
//! from — the administrator acting (verified as for any admin request), the
//! account acted on (the path's `{id}`), and the call of auth-service that
//! carries both.

use axum::{
    extract::{FromRequestParts, Path, rejection::PathRejection},
    http::request::Parts,
};
use tonic::metadata::MetadataValue;

use crate::{
    auth::AdminSession,
    context::RequestContext,
    error::{ApiError, FieldErrors},
    grpc::AdminClient,
    state::AppState,
};

/// An administrator's action on one account.
pub struct UserAction {
    /// The account's id: a positive integer.
    pub user_id: i64,
    session: AdminSession,
    ctx: RequestContext,
    admin: AdminClient,
}

impl FromRequestParts<AppState> for UserAction {
    type Rejection = ApiError;

    /// The session first: without one, the id is not judged (401/403
    /// before 400, as for every admin path).
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let session = AdminSession::from_request_parts(parts, state).await?;
        let ctx = RequestContext::from_request_parts(parts, state)
            .await
            .unwrap_or_else(|never| match never {});
        let path = Path::<String>::from_request_parts(parts, state).await;
        Ok(Self {
            user_id: user_id(path)?,
            session,
            ctx,
            admin: state.admin.clone(),
        })
    }
}

impl UserAction {
    /// auth-service's administration client.
    pub fn admin(&self) -> AdminClient {
        self.admin.clone()
    }

    /// `message` as a call of auth-service for this administrator: the
    /// request context as every call carries it, and the access token.
    pub fn request<T>(&self, message: T) -> Result<tonic::Request<T>, ApiError> {
        for_admin(&self.ctx, &self.session, message)
    }
}

/// `message` as a call of auth-service for the administrator of `session`.
pub(super) fn for_admin<T>(
    ctx: &RequestContext,
    session: &AdminSession,
    message: T,
) -> Result<tonic::Request<T>, ApiError> {
    let mut request = ctx.grpc_request(message);
    // A token that verified is base64url and dots, so this only fails on a bug.
    let token =
        MetadataValue::try_from(session.token.expose()).map_err(|_| ApiError::TokenNotValid)?;
    request
        .metadata_mut()
        .insert(common::metadata::ACCESS_TOKEN, token);
    Ok(request)
}

/// The `{id}` of the path: a positive integer, else 400 naming `id`.
fn user_id(path: Result<Path<String>, PathRejection>) -> Result<i64, ApiError> {
    let invalid = |message: &str| {
        let mut errors = FieldErrors::default();
        errors.add("id", message);
        ApiError::Validation(errors)
    };
    let Ok(Path(raw)) = path else {
        return Err(invalid("A valid integer is required."));
    };
    match raw.trim().parse::<i64>() {
        Ok(id) if id >= 1 => Ok(id),
        Ok(_) => Err(invalid("Ensure this value is greater than or equal to 1.")),
        Err(_) => Err(invalid("A valid integer is required.")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_positive_integers_named_id() {
        let path = |raw: &str| Ok(Path(raw.to_owned()));
        assert_eq!(user_id(path("42")).unwrap(), 42);
        for bad in [
            "0",
            "-1",
            "abc",
            "1.5",
            "",
            "99999999999999999999",
            "4\u{0}2",
        ] {
            let Err(ApiError::Validation(errors)) = user_id(path(bad)) else {
                panic!("{bad:?} accepted");
            };
            assert_eq!(errors.fields().collect::<Vec<_>>(), ["id"], "{bad:?}");
        }
    }
}

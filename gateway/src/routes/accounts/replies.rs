//! The response bodies of the account routes, in the old service's
//! shapes, and the error set of the one route that refuses with its own
//! body.

use std::collections::BTreeMap;

use axum::{Json, http::StatusCode, response::IntoResponse};
use proto::auth::v1::TokenPair;
use serde::Serialize;
use utoipa::{
    IntoResponses, ToSchema,
    openapi::{RefOr, Response},
};

use crate::{openapi, state::AppState};

/// The reply carrying a pair auth-service just issued, in body shape `T`:
/// never cached, and its signing key noted so a key the gateway has not
/// fetched yet is fetched before the token comes back.
pub fn issued<T>(state: &AppState, pair: TokenPair) -> impl IntoResponse + use<T>
where
    T: Serialize + From<TokenPair>,
{
    state.verifier.keys().note_issued(&pair.access);
    (crate::headers::token_response(), Json(T::from(pair)))
}

/// `{"refresh", "access"}` (login) and `{"access", "refresh"}` (refresh):
/// simplejwt's field orders, kept.
#[derive(Serialize, ToSchema)]
pub struct LoginTokens {
    /// Refresh token (JWT), for `login/refresh/` and `logout/`.
    pub refresh: String,
    /// Access token (JWT), for `Authorization: Bearer`.
    pub access: String,
}

impl From<TokenPair> for LoginTokens {
    fn from(pair: TokenPair) -> Self {
        Self {
            refresh: pair.refresh,
            access: pair.access,
        }
    }
}

/// A refresh's answer: a rotated pair, or (refresh tokens not rotating)
/// the access token alone, as simplejwt answers by default.
#[derive(Serialize, ToSchema)]
pub struct RefreshedTokens {
    /// New access token (JWT).
    pub access: String,
    /// New refresh token (JWT); the presented one is now spent. Absent when
    /// the server runs with `JWT_ROTATE_REFRESH_TOKENS=false`: the presented
    /// refresh token stays valid until it expires or its session ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    pub refresh: Option<String>,
}

impl From<TokenPair> for RefreshedTokens {
    fn from(pair: TokenPair) -> Self {
        Self {
            access: pair.access,
            // auth.v1 says "keep yours" with an empty one.
            refresh: (!pair.refresh.is_empty()).then_some(pair.refresh),
        }
    }
}

/// `{"username", "email"}` of a new account.
#[derive(Serialize, ToSchema)]
pub struct Registered {
    /// The username as stored.
    pub username: String,
    /// The email as stored.
    pub email: String,
}

/// `{"status", "message"}`, the verification endpoints' old shape.
#[derive(Serialize, ToSchema)]
pub struct Outcome {
    /// `success` or `failed`.
    #[schema(value_type = String, pattern = "^(success|failed)$")]
    status: &'static str,
    /// What happened (`user-activated`, `password-reset`, `code-wrong`,
    /// `code-expired`, `too-many-attempts`); absent when there is nothing
    /// to add.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    message: Option<&'static str>,
}

impl Outcome {
    /// 200 `{"status": "success"}`, with `message` when given.
    pub fn success(message: Option<&'static str>) -> Json<Self> {
        Json(Self {
            status: "success",
            message,
        })
    }

    /// 400 `{"status": "failed", "message": message}`.
    pub fn failed(message: &'static str) -> (StatusCode, Json<Self>) {
        Self::failed_with(StatusCode::BAD_REQUEST, message)
    }

    /// `{"status": "failed", "message": message}` with `status` (a failed
    /// verification answers 200 under `VERIFY_FAILURE_STATUS=200`).
    pub fn failed_with(status: StatusCode, message: &'static str) -> (StatusCode, Json<Self>) {
        (
            status,
            Json(Self {
                status: "failed",
                message: Some(message),
            }),
        )
    }
}

/// `{"status": "success", "revoked_sessions": n}` of `logout/all/`.
#[derive(Serialize, ToSchema)]
pub struct LoggedOutEverywhere {
    /// Always `success`.
    #[schema(value_type = String)]
    pub status: &'static str,
    /// How many sessions were ended.
    pub revoked_sessions: u64,
}

/// [`openapi::BodyErrors`] for the code checks (verification and password
/// reset), whose refusals keep the old
/// `{"status": "failed", "message": ...}` 400.
pub struct VerifyErrors;

impl IntoResponses for VerifyErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        openapi::body_errors_or::<Outcome>()
    }
}

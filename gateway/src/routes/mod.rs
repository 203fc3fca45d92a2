//! The public HTTP contract: paths, methods and the fallbacks for
//! everything else.

pub mod accounts;
pub mod export;
pub mod logs;

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderValue, Method, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Serialize;

use crate::{AppState, context::RequestContext, error::ApiError};

/// Every public route. Paths are the old service's, trailing slashes and
/// spelling included.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/accounts/register/", post(accounts::register))
        .route(
            "/api/accounts/verification/code/",
            post(accounts::request_code),
        )
        .route(
            "/api/accounts/verification/code/verify/",
            post(accounts::verify_code),
        )
        .route("/api/accounts/login/", post(accounts::login))
        .route("/api/accounts/login/refresh/", post(accounts::refresh))
        .route("/api/accounts/logout/", post(accounts::logout))
        .route("/api/accounts/logout/all/", post(accounts::logout_all))
        .route(logs::PATH, get(logs::list))
        .route(export::STREAM_PATH, get(export::stream))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/healthz", get(health))
        .route("/readyz", get(crate::readiness::readyz))
        // Must come after the routes: it applies to those already added.
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
}

/// One public key as published (RFC 7517 / RFC 8037 names).
#[derive(Serialize)]
struct PublicJwk<'a> {
    kty: &'a str,
    crv: &'a str,
    x: &'a str,
    kid: &'a str,
    alg: &'a str,
    #[serde(rename = "use")]
    use_: &'a str,
}

/// `GET /.well-known/jwks.json`: auth-service's verification keys, from
/// the same cache the gateway verifies with, so third parties can check
/// our tokens without gRPC access.
async fn jwks(State(state): State<AppState>, ctx: RequestContext) -> Result<Response, ApiError> {
    let keys = state
        .verifier
        .keys()
        .published(&ctx)
        .await
        .map_err(|_| ApiError::Unavailable)?;
    let keys: Vec<PublicJwk<'_>> = keys
        .iter()
        .map(|k| PublicJwk {
            kty: &k.kty,
            crv: &k.crv,
            x: &k.x,
            kid: &k.kid,
            alg: &k.alg,
            use_: &k.r#use,
        })
        .collect();
    let mut response = Json(serde_json::json!({ "keys": keys })).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    Ok(response)
}

/// `GET /healthz`: the process is up. It deliberately does not probe the
/// backends, so an orchestrator does not restart healthy gateways while
/// auth-service is down.
async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed(method)
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

//! The public HTTP contract: paths, methods and the fallbacks for
//! everything else.

pub mod accounts;
pub mod admin;
pub mod logs;

use std::sync::LazyLock;

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::{HeaderValue, Method, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::{OpenApi as _, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use utoipa_swagger_ui::SwaggerUi;

use crate::{
    context::RequestContext,
    error::ApiError,
    openapi::{self, ApiDoc, Unavailable},
    state::AppState,
};

/// Every public route. Paths are the old service's, trailing slashes and
/// spelling included; each comes from its handler's `#[utoipa::path]`, so
/// it is in the OpenAPI document by construction.
fn documented() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(accounts::signup::register))
        .routes(routes!(accounts::signup::request_code))
        .routes(routes!(accounts::signup::verify_code))
        .routes(routes!(accounts::session::login))
        .routes(routes!(accounts::session::refresh))
        .routes(routes!(accounts::session::logout))
        .routes(routes!(accounts::session::logout_all))
        .routes(routes!(accounts::password::change))
        .routes(routes!(accounts::password::request_reset))
        .routes(routes!(accounts::password::confirm_reset))
        .routes(routes!(logs::list::list))
        .routes(routes!(logs::stream::stream))
        .routes(routes!(admin::users::list))
        .routes(routes!(
            admin::users::get,
            admin::users::update,
            admin::users::delete
        ))
        .routes(routes!(admin::users::unlock))
        .routes(routes!(admin::users::logout))
        .routes(routes!(admin::users::resend_verification))
        .routes(routes!(jwks))
        .routes(routes!(health))
        .routes(routes!(crate::readiness::readyz))
        .routes(routes!(openapi_json))
}

/// The OpenAPI document of every public route.
pub fn document() -> utoipa::openapi::OpenApi {
    documented().into_openapi()
}

/// The public routes, the interactive documentation, and JSON 404/405 for
/// everything else.
pub fn routes() -> Router<AppState> {
    let (router, _) = documented().split_for_parts();
    // No validator: Swagger UI otherwise sends the document's URL to
    // validator.swagger.io (a badge image) whenever the page is opened
    // under a host name other than localhost, leaking an internal address
    // to a third party. "none" is Swagger UI's documented off switch.
    let docs = SwaggerUi::new(openapi::DOCS_PATH)
        .config(utoipa_swagger_ui::Config::from(openapi::DOCUMENT_PATH).validator_url("none"));
    router
        .merge(docs)
        // Must come after the routes: it applies to those already added.
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
}

/// The document, serialised once on first use.
static DOCUMENT: LazyLock<Result<Bytes, String>> = LazyLock::new(|| {
    document()
        .to_json()
        .map(Bytes::from)
        .map_err(|e| e.to_string())
});

/// `GET /api/openapi.json`: this document.
#[utoipa::path(
    get,
    path = openapi::DOCUMENT_PATH,
    operation_id = "getOpenApiDocument",
    tag = "meta",
    summary = "This OpenAPI 3.1 document",
    responses((status = 200, description = "The document.", body = Object))
)]
async fn openapi_json() -> Result<Response, ApiError> {
    let document = DOCUMENT
        .as_ref()
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("OpenAPI document: {e}")))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        document.clone(),
    )
        .into_response())
}

/// One public key as published (RFC 7517 / RFC 8037 names).
#[derive(Serialize, ToSchema)]
struct PublicJwk<'a> {
    /// Key type: `OKP`.
    kty: &'a str,
    /// Curve: `Ed25519`.
    crv: &'a str,
    /// The public key, base64url without padding.
    x: &'a str,
    /// Key id, as in the tokens' `kid` header.
    kid: &'a str,
    /// Algorithm: `EdDSA`.
    alg: &'a str,
    /// Always `sig`.
    #[serde(rename = "use")]
    use_: &'a str,
}

/// A JWK set (RFC 7517 section 5).
#[derive(Serialize, ToSchema)]
struct JwkSet<'a> {
    /// Every key tokens may be signed with, current and recent.
    keys: Vec<PublicJwk<'a>>,
}

/// The `/healthz` body.
#[derive(Serialize, ToSchema)]
struct Health {
    /// Always `ok`.
    #[schema(value_type = String)]
    status: &'static str,
}

/// `GET /.well-known/jwks.json`: auth-service's verification keys, from
/// the same cache the gateway verifies with, so third parties can check
/// our tokens without gRPC access.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    operation_id = "getJwks",
    tag = "meta",
    summary = "Public keys that verify access tokens",
    responses(
        (status = 200, description = "The JWK set; cacheable for 5 minutes.", body = JwkSet,
            headers(("Cache-Control" = String, description = "`public, max-age=300`."))),
        Unavailable,
    )
)]
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
    let mut response = Json(JwkSet { keys }).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    Ok(response)
}

/// `GET /healthz`: the process is up. It deliberately does not probe the
/// backends, so an orchestrator does not restart healthy gateways while
/// auth-service is down.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "health",
    tag = "meta",
    summary = "Liveness: the process is up",
    responses((status = 200, description = "Up.", body = Health))
)]
async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed(method)
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

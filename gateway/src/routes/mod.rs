//! The public HTTP contract: paths, methods and the fallbacks for
//! everything else.

pub mod accounts;
pub mod admin;
pub mod logs;
pub mod params;

use std::{collections::HashSet, sync::LazyLock};

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::{HeaderValue, Method, StatusCode, Uri, header},
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
        .routes(routes!(logs::counts::counts))
        .routes(routes!(admin::users::list))
        .routes(routes!(
            admin::users::get,
            admin::users::update,
            admin::users::delete
        ))
        .routes(routes!(admin::users::unlock))
        .routes(routes!(admin::users::logout))
        .routes(routes!(admin::users::resend_verification))
        .routes(routes!(admin::events::list))
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

/// One public key as published (RFC 7517, with the members RFC 7518
/// section 6 and RFC 8037 define for its type). Binary members are
/// base64url without padding; those its type lacks are absent.
#[derive(Serialize, ToSchema)]
struct PublicJwk<'a> {
    /// Key type: `OKP` (Ed25519), `EC` (P-256) or `RSA`.
    kty: &'a str,
    /// Curve: `Ed25519` or `P-256`; absent for RSA.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    crv: Option<&'a str>,
    /// OKP: the public key; EC: the x coordinate.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    x: Option<&'a str>,
    /// EC: the y coordinate.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    y: Option<&'a str>,
    /// RSA: the modulus.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    n: Option<&'a str>,
    /// RSA: the public exponent.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    e: Option<&'a str>,
    /// Key id, as in the tokens' `kid` header.
    kid: &'a str,
    /// The one algorithm the key signs with: `EdDSA`, `ES256` or `RS256`.
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
        .map(|k| {
            fn present(member: &str) -> Option<&str> {
                Some(member).filter(|m| !m.is_empty())
            }
            PublicJwk {
                kty: &k.kty,
                crv: present(&k.crv),
                x: present(&k.x),
                y: present(&k.y),
                n: present(&k.n),
                e: present(&k.e),
                kid: &k.kid,
                alg: &k.alg,
                use_: &k.r#use,
            }
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

/// A JSON 404, except for a GET or HEAD to a documented path written
/// without its trailing slash: that gets a 301 to the slashed path, query
/// kept, as Django's `APPEND_SLASH` answered old clients. Only the paths of
/// the document qualify, so the `Location` is always one of ours (a path
/// such as `//evil.example` is no route and stays a 404).
async fn not_found(method: Method, uri: Uri) -> Response {
    if matches!(method, Method::GET | Method::HEAD)
        && let Some(location) = with_slash(&uri)
        && let Ok(location) = HeaderValue::from_str(&location)
    {
        return (
            StatusCode::MOVED_PERMANENTLY,
            [(header::LOCATION, location)],
        )
            .into_response();
    }
    ApiError::NotFound.into_response()
}

/// The documented paths that end in `/`, each without it.
static SLASHED: LazyLock<HashSet<String>> = LazyLock::new(|| {
    document()
        .paths
        .paths
        .into_keys()
        .filter_map(|path| path.strip_suffix('/').map(str::to_owned))
        .filter(|path| !path.is_empty())
        .collect()
});

/// `uri` with the trailing slash its documented path has, as a relative
/// reference (`/path/?query`); `None` when no documented path is `uri`'s
/// path plus a slash.
fn with_slash(uri: &Uri) -> Option<String> {
    let path = uri.path();
    if !SLASHED.contains(path) {
        return None;
    }
    Some(match uri.query() {
        Some(query) => format!("{path}/?{query}"),
        None => format!("{path}/"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_documented_path_without_its_slash_gets_it_back_with_its_query() {
        let uri: Uri = "/api/accounts/logs/login/attemps?limit=5&x=%2F"
            .parse()
            .unwrap();
        assert_eq!(
            with_slash(&uri).as_deref(),
            Some("/api/accounts/logs/login/attemps/?limit=5&x=%2F")
        );
        let uri: Uri = "/api/accounts/login".parse().unwrap();
        assert_eq!(with_slash(&uri).as_deref(), Some("/api/accounts/login/"));
    }

    #[test]
    fn nothing_else_is_redirected() {
        for path in [
            "/api/accounts/login/",
            "/api/accounts/nope",
            "//evil.example",
            "//evil.example/api/accounts/login",
            "/\\evil.example",
            "/healthz",
            "/api/accounts/LOGIN",
            "/api/accounts/login%2F",
            "/",
        ] {
            let Ok(uri) = path.parse::<Uri>() else {
                continue;
            };
            assert_eq!(with_slash(&uri), None, "{path}");
        }
    }
}

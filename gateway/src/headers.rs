//! Response headers that tell browsers and caches how to treat what we send.
//!
//! - Every response: `X-Content-Type-Options: nosniff`, so a browser never
//!   second-guesses our content types (a JSON error echoing client input
//!   must not be sniffed into HTML or script).
//! - HTML (the API docs): a Content-Security-Policy and frame protection.
//! - Tokens and the login log: `Cache-Control: no-store` (plus `Pragma:
//!   no-cache` on token responses, RFC 6749 section 5.1), set by their
//!   handlers with [`no_store`] and [`token_response`].

use axum::{
    http::{HeaderName, HeaderValue, header},
    response::Response,
};

/// The policy for our only HTML, the vendored Swagger UI (utoipa-swagger-ui
/// 9, Swagger UI 5.17). Its `index.html` loads every script and stylesheet
/// from files next to it, and its configuration comes from a file
/// (`swagger-initializer.js`), so scripts need nothing beyond `'self'`
/// (no `'unsafe-eval'` either: the bundle's only `Function(...)` calls are
/// polyfill fallbacks for `globalThis` and `bind`, unused in browsers that
/// have them).
/// Styles allow `'unsafe-inline'`: the bundle's React components and
/// syntax highlighter set inline styles, and a style cannot run code, so
/// this costs little. Its CSS draws icons as `data:` SVG images. It fetches
/// the document from this origin (`connect-src 'self'`). Nothing may frame
/// the page (`frame-ancestors 'none'`), submit forms elsewhere or change
/// the base URL.
pub const HTML_CSP: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
    object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// `Cache-Control: no-store`, for responses that hold personal data (the
/// login log and its exports) and must not be kept by any cache.
pub fn no_store() -> [(HeaderName, HeaderValue); 1] {
    [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))]
}

/// A JSON answer no cache keeps ([`no_store`]): personal data, as of now.
pub fn private_json<T: serde::Serialize>(body: T) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    (no_store(), axum::Json(body)).into_response()
}

/// The headers RFC 6749 section 5.1 requires on a response carrying tokens:
/// `Cache-Control: no-store` and, for HTTP/1.0 caches, `Pragma: no-cache`.
pub fn token_response() -> [(HeaderName, HeaderValue); 2] {
    [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::PRAGMA, HeaderValue::from_static("no-cache")),
    ]
}

/// Adds the headers every response carries, and the HTML ones to HTML.
/// Runs outermost, so 404s, 405s, panics and rejections get them too.
pub async fn add(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    let html = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .get(..9)
                .is_some_and(|t| t.eq_ignore_ascii_case("text/html"))
        });
    if html {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(HTML_CSP),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    response
}

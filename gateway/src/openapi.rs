//! The OpenAPI 3.1 description of the public API, generated from the code.
//!
//! Each handler carries a `#[utoipa::path]` attribute and the router is
//! built from those attributes (`utoipa_axum::routes!`), so a route cannot
//! exist without its description, nor the other way round. Response bodies
//! are described by the types the handlers really serialise. This module
//! adds what the attributes share: the document's header, the bearer
//! scheme, and the error responses (one set per kind of route, written once
//! here rather than on every handler). It depends on no route: routes use
//! it, and the router (`routes`) collects the paths.

use std::collections::BTreeMap;

use utoipa::{
    IntoResponses, Modify, OpenApi, PartialSchema, ToSchema,
    openapi::{
        self, ContentBuilder, HeaderBuilder, Ref, RefOr, ResponseBuilder,
        path::{Operation, PathItem},
        schema::{AnyOfBuilder, ObjectBuilder, Schema, Type},
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

use crate::error::{Detail, FieldErrors, TokenMessage};

/// Where the document is served.
pub const DOCUMENT_PATH: &str = "/api/openapi.json";
/// Where the interactive documentation (Swagger UI) is served.
pub const DOCS_PATH: &str = "/api/docs";
/// The security scheme's name in the document.
pub const BEARER: &str = "bearer";

/// The document's fixed parts; the paths are added by the router.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Auth gateway",
        description = "The public REST API: registration, email verification, login, \
                       token refresh and logout, the login-attempt log for administrators, \
                       and the public signing keys. Request bodies may be JSON, \
                       `application/x-www-form-urlencoded` or `multipart/form-data` \
                       (same field names). Errors keep Django REST framework's shapes: \
                       a field map for validation errors, `{\"detail\", \"code\"}` otherwise \
                       (and simplejwt's `messages` for a refused access token). As Django's \
                       `APPEND_SLASH` did, a GET or HEAD to a path below written without its \
                       trailing slash is answered `301 Moved Permanently` to the slashed path, \
                       query string kept."
    ),
    modifiers(&BearerScheme),
    components(schemas(FieldErrors, Detail, TokenMessage)),
    tags(
        (name = "accounts", description = "Accounts and sessions."),
        (name = "logs", description = "The login-attempt log (administrators only)."),
        (name = "admin", description = "User administration (administrators only): list and \
                                        search accounts, activate, deactivate, grant or revoke \
                                        administrator rights, unlock, log out, resend \
                                        verification, delete; and the admin events those \
                                        actions record."),
        (name = "meta", description = "Health, signing keys and this document."),
    )
)]
pub struct ApiDoc;

/// Adds the `bearer` scheme: access tokens are JWTs (EdDSA) issued by
/// `POST /api/accounts/login/`.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, doc: &mut openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An access token from `POST /api/accounts/login/`; the log \
                         and admin endpoints need one whose user is staff.",
                    ))
                    .build(),
            ),
        );
    }
}

/// Every operation of `doc`, with its path and method, in path order.
pub fn operations(doc: &openapi::OpenApi) -> Vec<(String, &'static str, &Operation)> {
    let mut out = Vec::new();
    for (path, item) in &doc.paths.paths {
        for (method, operation) in methods(item) {
            out.push((path.clone(), method, operation));
        }
    }
    out
}

fn methods(item: &PathItem) -> impl Iterator<Item = (&'static str, &Operation)> {
    [
        ("GET", &item.get),
        ("POST", &item.post),
        ("PUT", &item.put),
        ("PATCH", &item.patch),
        ("DELETE", &item.delete),
        ("HEAD", &item.head),
        ("OPTIONS", &item.options),
        ("TRACE", &item.trace),
    ]
    .into_iter()
    .filter_map(|(method, op)| op.as_ref().map(|op| (method, op)))
}

fn schema_ref<T: ToSchema>() -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(T::name()))
}

/// A JSON response with `schema`.
fn json(description: &str, schema: RefOr<Schema>) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new().schema(Some(schema)).build(),
    )
}

/// An `ErrorDetail` JSON response.
fn detail(description: &str) -> ResponseBuilder {
    json(description, schema_ref::<Detail<'static>>())
}

fn integer_header(description: &str) -> openapi::Header {
    HeaderBuilder::new()
        .schema(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0)),
        )
        .description(Some(description))
        .build()
}

fn string_header(description: &str) -> openapi::Header {
    HeaderBuilder::new()
        .schema(String::schema())
        .description(Some(description))
        .build()
}

/// 400 whose body is a field map or a detail, plus whatever `more` adds.
fn bad_request(description: &str, more: Option<RefOr<Schema>>) -> RefOr<openapi::Response> {
    let mut any = AnyOfBuilder::new()
        .item(schema_ref::<FieldErrors>())
        .item(schema_ref::<Detail<'static>>());
    if let Some(more) = more {
        any = any.item(more);
    }
    json(description, any.into()).build().into()
}

fn unauthorized() -> RefOr<openapi::Response> {
    detail(
        "Missing, malformed, expired or revoked credentials (`not_authenticated`, \
         `bad_authorization_header`, `token_not_valid` or `no_active_account`). A refused \
         access token also carries simplejwt's `messages`.",
    )
    .header(
        "WWW-Authenticate",
        string_header("Always `Bearer realm=\"api\"`."),
    )
    .build()
    .into()
}

fn unavailable() -> RefOr<openapi::Response> {
    detail("A backend is down or too slow (`service_unavailable`); retry shortly.")
        .header("Retry-After", integer_header("Seconds to wait (always 1)."))
        .build()
        .into()
}

/// What every route that reads a request body can answer besides its own
/// outcomes.
fn body_errors(more_400: Option<RefOr<Schema>>) -> BTreeMap<String, RefOr<openapi::Response>> {
    BTreeMap::from([
        (
            "400".to_owned(),
            bad_request(
                "Invalid fields (a field map) or an unreadable body (`detail`).",
                more_400,
            ),
        ),
        (
            "408".to_owned(),
            detail(
                "The body did not arrive within `GATEWAY_BODY_TIMEOUT` \
                 of the request head (`body_timeout`).",
            )
            .build()
            .into(),
        ),
        (
            "413".to_owned(),
            detail("The body is larger than 64 KiB.").build().into(),
        ),
        (
            "415".to_owned(),
            detail(
                "A Content-Type other than JSON, form-urlencoded or multipart, \
                 or a non-empty body without one.",
            )
            .build()
            .into(),
        ),
        ("503".to_owned(), unavailable()),
    ])
}

/// The errors of a route that reads a request body.
pub struct BodyErrors;

impl IntoResponses for BodyErrors {
    fn responses() -> BTreeMap<String, RefOr<openapi::Response>> {
        body_errors(None)
    }
}

/// [`BodyErrors`] for a route whose own refusals are also a 400, with
/// body `T` (e.g. the code check's old `{"status": "failed"}` shape). The
/// route declares that set next to `T`, so this module needs no route's
/// types.
pub fn body_errors_or<T: ToSchema>() -> BTreeMap<String, RefOr<openapi::Response>> {
    body_errors(Some(schema_ref::<T>()))
}

/// 401, for routes that take credentials.
pub struct Unauthorized;

impl IntoResponses for Unauthorized {
    fn responses() -> BTreeMap<String, RefOr<openapi::Response>> {
        BTreeMap::from([("401".to_owned(), unauthorized())])
    }
}

/// 429 from auth-service's rate limits and brute-force protection.
pub struct Throttled;

impl IntoResponses for Throttled {
    fn responses() -> BTreeMap<String, RefOr<openapi::Response>> {
        let response =
            detail("Too many requests from this client or for this account (`throttled`).")
                .header(
                    "Retry-After",
                    integer_header("Seconds to wait before retrying."),
                )
                .build();
        BTreeMap::from([("429".to_owned(), response.into())])
    }
}

/// The errors of the administrator-only log routes.
pub struct AdminErrors;

impl IntoResponses for AdminErrors {
    fn responses() -> BTreeMap<String, RefOr<openapi::Response>> {
        BTreeMap::from([
            (
                "400".to_owned(),
                bad_request(
                    "Invalid query parameters (a field map) or an unknown cursor (`detail`).",
                    None,
                ),
            ),
            ("401".to_owned(), unauthorized()),
            (
                "403".to_owned(),
                detail("The token is valid but its user is not staff (`permission_denied`).")
                    .build()
                    .into(),
            ),
            ("503".to_owned(), unavailable()),
        ])
    }
}

fn forbidden() -> RefOr<openapi::Response> {
    detail("The token is valid but its user is not staff, or no longer is (`permission_denied`).")
        .build()
        .into()
}

fn user_not_found() -> RefOr<openapi::Response> {
    detail("No account has this id (`not_found`).")
        .build()
        .into()
}

fn conflict() -> RefOr<openapi::Response> {
    detail(
        "The system's state refuses the change: it would leave no active administrator \
         (`last_admin`), or the account has not verified its email (`not_verified`), has \
         already (`already_verified`) or its registration expired (`registration_expired`).",
    )
    .build()
    .into()
}

/// The errors of a route on one account (`/api/admin/users/{id}/…`) that
/// changes nothing a rule guards.
pub struct UserErrors;

impl IntoResponses for UserErrors {
    fn responses() -> BTreeMap<String, RefOr<openapi::Response>> {
        BTreeMap::from([
            (
                "400".to_owned(),
                bad_request(
                    "An `id` that is not a positive integer (a field map).",
                    None,
                ),
            ),
            ("401".to_owned(), unauthorized()),
            ("403".to_owned(), forbidden()),
            ("404".to_owned(), user_not_found()),
            ("503".to_owned(), unavailable()),
        ])
    }
}

/// [`UserErrors`] and 409, for an account route whose change a rule may
/// refuse.
pub struct UserChangeErrors;

impl IntoResponses for UserChangeErrors {
    fn responses() -> BTreeMap<String, RefOr<openapi::Response>> {
        let mut responses = UserErrors::responses();
        responses.insert("409".to_owned(), conflict());
        responses
    }
}

/// [`UserChangeErrors`] and those of a route that reads a body.
pub struct UserUpdateErrors;

impl IntoResponses for UserUpdateErrors {
    fn responses() -> BTreeMap<String, RefOr<openapi::Response>> {
        let mut responses = body_errors(None);
        responses.extend([
            ("401".to_owned(), unauthorized()),
            ("403".to_owned(), forbidden()),
            ("404".to_owned(), user_not_found()),
            ("409".to_owned(), conflict()),
        ]);
        responses
    }
}

/// 503 alone, for routes whose only failure is a backend being down.
pub struct Unavailable;

impl IntoResponses for Unavailable {
    fn responses() -> BTreeMap<String, RefOr<openapi::Response>> {
        BTreeMap::from([("503".to_owned(), unavailable())])
    }
}

//! Every error the gateway answers with, and the one place where gRPC
//! statuses from the backends become HTTP responses.
//!
//! Response bodies keep the shapes of the Django REST framework + simplejwt
//! service this replaces (`{"detail": ..., "code": ...}` or a field map), so
//! existing clients keep working. Internal failures are logged here, once,
//! and never shown to the client.

use std::{borrow::Cow, fmt};

use axum::{
    Json,
    http::{HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Serialize, ser::SerializeMap};
use tonic::Code;
use tonic_types::StatusExt;

/// Largest request body accepted, in bytes.
pub const BODY_LIMIT: usize = 64 * 1024;
/// `Retry-After` when auth-service throttles without saying for how long.
const DEFAULT_THROTTLE_SECS: u64 = 60;
/// The challenge every 401 carries.
const WWW_AUTHENTICATE: HeaderValue = HeaderValue::from_static("Bearer realm=\"api\"");

/// Validation messages grouped by field, in the order they were found, so a
/// client sees `{"field": ["problem", ...]}` exactly as DRF produced it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldErrors(Vec<(String, Vec<String>)>);

impl FieldErrors {
    /// Adds `message` under `field`, after any earlier message for it.
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        let field = field.into();
        let message = message.into();
        match self.0.iter_mut().find(|(f, _)| *f == field) {
            Some((_, messages)) => messages.push(message),
            None => self.0.push((field, vec![message])),
        }
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The fields with problems, in order.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(f, _)| f.as_str())
    }

    /// The messages for `field`.
    pub fn messages(&self, field: &str) -> Option<&[String]> {
        self.0
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, m)| m.as_slice())
    }
}

/// `{"field": ["message", ...], ...}`: any field name, each with at least
/// one message. Written by hand because the map is serialised by hand.
impl utoipa::PartialSchema for FieldErrors {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
        let messages = ArrayBuilder::new()
            .items(ObjectBuilder::new().schema_type(Type::String))
            .min_items(Some(1));
        ObjectBuilder::new()
            .description(Some(
                "Validation messages by field name; `non_field_errors` for problems with the \
                 request as a whole.",
            ))
            .additional_properties(Some(messages))
            .min_properties(Some(1))
            .into()
    }
}

impl utoipa::ToSchema for FieldErrors {}

impl Serialize for FieldErrors {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (field, messages) in &self.0 {
            map.serialize_entry(field, messages)?;
        }
        map.end()
    }
}

/// The gRPC call that failed, which decides what `UNAUTHENTICATED` means
/// and names the call in logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rpc {
    /// `auth.v1.AuthService/Register`.
    Register,
    /// `auth.v1.AuthService/RequestVerificationCode`.
    RequestVerificationCode,
    /// `auth.v1.AuthService/VerifyCode`.
    VerifyCode,
    /// `auth.v1.AuthService/Login`.
    Login,
    /// `auth.v1.AuthService/Refresh`.
    Refresh,
    /// `auth.v1.AuthService/Logout`.
    Logout,
    /// `auth.v1.AuthService/LogoutAll`.
    LogoutAll,
    /// `auth.v1.AuthService/ChangePassword`.
    ChangePassword,
    /// `auth.v1.AuthService/RequestPasswordReset`.
    RequestPasswordReset,
    /// `auth.v1.AuthService/ResetPassword`.
    ResetPassword,
    /// `audit.v1.AuditService/ListAttempts`.
    ListAttempts,
    /// `audit.v1.AuditService/ListAdminEvents`.
    ListAdminEvents,
    /// `audit.v1.AuditService/CountAttempts`.
    CountAttempts,
    /// `auth.v1.AdminService/ListUsers`.
    ListUsers,
    /// `auth.v1.AdminService/GetUser`.
    GetUser,
    /// `auth.v1.AdminService/UpdateUser`.
    UpdateUser,
    /// `auth.v1.AdminService/UnlockUser`.
    UnlockUser,
    /// `auth.v1.AdminService/LogoutUser`.
    LogoutUser,
    /// `auth.v1.AdminService/ResendVerification`.
    ResendVerification,
    /// `auth.v1.AdminService/DeleteUser`.
    DeleteUser,
}

impl Rpc {
    /// A call of `auth.v1.AdminService`, made with the administrator's
    /// access token: its UNAUTHENTICATED is about that token, and its
    /// PERMISSION_DENIED, NOT_FOUND and FAILED_PRECONDITION are answers
    /// for the client.
    fn is_admin(self) -> bool {
        matches!(
            self,
            Self::ListUsers
                | Self::GetUser
                | Self::UpdateUser
                | Self::UnlockUser
                | Self::LogoutUser
                | Self::ResendVerification
                | Self::DeleteUser
        )
    }
}

impl fmt::Display for Rpc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Why a request failed, as the client will be told.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 with a field map.
    #[error("validation failed: {0:?}")]
    Validation(FieldErrors),
    /// 400 with a `detail` message.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 415: a body type we do not parse (the client's Content-Type).
    #[error("unsupported media type {0:?}")]
    UnsupportedMediaType(String),
    /// 413: body over [`BODY_LIMIT`].
    #[error("request body too large")]
    PayloadTooLarge,
    /// 408: the request body did not arrive within `GATEWAY_BODY_TIMEOUT`.
    #[error("request body timed out")]
    BodyTimeout,
    /// 401: no credentials on a protected path.
    #[error("not authenticated")]
    NotAuthenticated,
    /// 401: an `Authorization: Bearer` header that is not two words.
    #[error("malformed authorization header")]
    BadAuthorizationHeader,
    /// 401: an access token that is bad, expired or signed by an unknown
    /// key.
    #[error("access token not valid")]
    TokenNotValid,
    /// 401: a good token, but a refresh token where an access token belongs.
    #[error("access token of the wrong type")]
    AccessTokenWrongType,
    /// 401: login refused (whatever the reason, one answer).
    #[error("no active account")]
    NoActiveAccount,
    /// 401: refresh token refused.
    #[error("refresh token not valid")]
    RefreshTokenNotValid,
    /// 401: a good token, but an access token where a refresh token belongs.
    #[error("refresh token of the wrong type")]
    RefreshTokenWrongType,
    /// 403: authenticated but not an administrator.
    #[error("permission denied")]
    PermissionDenied,
    /// 404: no such path.
    #[error("not found")]
    NotFound,
    /// 404: the path is right but names nothing (no user with that id);
    /// the message says what, with the code `not_found`.
    #[error("not found: {0}")]
    Missing(String),
    /// 409: the request is well formed but the state of the system refuses
    /// it (the last administrator, an unverified account, ...).
    #[error("conflict ({code}): {detail}")]
    Conflict {
        /// For a person.
        detail: String,
        /// Which rule, in snake case (`last_admin`).
        code: String,
    },
    /// 405: the path exists, the method does not.
    #[error("method {0} not allowed")]
    MethodNotAllowed(Method),
    /// 429: a backend throttled the client.
    #[error("throttled for {retry_after}s")]
    Throttled {
        /// Seconds the client should wait.
        retry_after: u64,
    },
    /// 503: a backend is down or too slow.
    #[error("service unavailable")]
    Unavailable,
    /// 500: a bug or a backend answer we cannot explain; the cause is logged
    /// and never sent.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status_code(&self) -> StatusCode {
        match self {
            Self::Validation(_) | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::NotAuthenticated
            | Self::BadAuthorizationHeader
            | Self::TokenNotValid
            | Self::AccessTokenWrongType
            | Self::NoActiveAccount
            | Self::RefreshTokenNotValid
            | Self::RefreshTokenWrongType => StatusCode::UNAUTHORIZED,
            Self::PermissionDenied => StatusCode::FORBIDDEN,
            Self::NotFound | Self::Missing(_) => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Translates a failed gRPC call. This is the only place that knows
    /// what each backend status means to an HTTP client.
    pub fn from_grpc(rpc: Rpc, status: tonic::Status) -> Self {
        match status.code() {
            Code::InvalidArgument | Code::AlreadyExists => match status.get_details_bad_request() {
                Some(details) if !details.field_violations.is_empty() => {
                    let mut errors = FieldErrors::default();
                    for v in details.field_violations {
                        let field = if v.field.is_empty() {
                            "non_field_errors".to_owned()
                        } else {
                            v.field
                        };
                        errors.add(field, v.description);
                    }
                    Self::Validation(errors)
                }
                _ => Self::BadRequest(status.message().to_owned()),
            },
            Code::Unauthenticated if rpc == Rpc::Login => Self::NoActiveAccount,
            Code::Unauthenticated if matches!(rpc, Rpc::Refresh | Rpc::Logout | Rpc::LogoutAll) => {
                if wrong_token_type(&status) {
                    Self::RefreshTokenWrongType
                } else {
                    Self::RefreshTokenNotValid
                }
            }
            // The bearer access token (a wrong current password is a field
            // error).
            Code::Unauthenticated if rpc == Rpc::ChangePassword || rpc.is_admin() => {
                if wrong_token_type(&status) {
                    Self::AccessTokenWrongType
                } else {
                    Self::TokenNotValid
                }
            }
            Code::PermissionDenied if rpc.is_admin() => Self::PermissionDenied,
            Code::NotFound if rpc.is_admin() => Self::Missing(status.message().to_owned()),
            Code::FailedPrecondition if rpc.is_admin() => Self::Conflict {
                code: status
                    .get_details_precondition_failure()
                    .and_then(|p| p.violations.into_iter().next())
                    .map_or_else(|| "conflict".to_owned(), |v| v.r#type.to_ascii_lowercase()),
                detail: status.message().to_owned(),
            },
            Code::ResourceExhausted => Self::Throttled {
                retry_after: common::metadata::get(status.metadata(), "retry-after")
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(DEFAULT_THROTTLE_SECS),
            },
            Code::Unavailable | Code::DeadlineExceeded => {
                tracing::warn!(%rpc, code = ?status.code(), message = status.message(), "backend unavailable");
                Self::Unavailable
            }
            // A status with a source was made on our side of the wire from a
            // transport failure (timeout, broken connection, h2 error), not
            // sent by the backend: the backend is unreachable, not wrong.
            Code::Cancelled | Code::Unknown | Code::Internal
                if std::error::Error::source(&status).is_some() =>
            {
                tracing::warn!(%rpc, code = ?status.code(), message = status.message(), "transport failure");
                Self::Unavailable
            }
            code => Self::Internal(anyhow::anyhow!(
                "{rpc} failed with {code:?}: {}",
                status.message()
            )),
        }
    }

    /// The JSON body. Built from structs rather than `serde_json::Value` so
    /// keys keep their order (`detail` before `code`, fields as found).
    fn body(&self) -> ErrorBody<'_> {
        let detail = |detail: &'static str, code: &'static str| {
            ErrorBody::Detail(Detail {
                detail: Cow::Borrowed(detail),
                code: Some(code),
                messages: None,
            })
        };
        let plain = |detail: String| {
            ErrorBody::Detail(Detail {
                detail: Cow::Owned(detail),
                code: None,
                messages: None,
            })
        };
        // simplejwt's answer to a bearer token no token class accepts.
        let no_token_class = |message: &'static str| {
            ErrorBody::Detail(Detail {
                detail: Cow::Borrowed(simplejwt::NO_TOKEN_CLASS),
                code: Some("token_not_valid"),
                messages: Some(vec![TokenMessage {
                    token_class: "AccessToken",
                    token_type: "access",
                    message,
                }]),
            })
        };
        match self {
            Self::Validation(errors) => ErrorBody::Fields(errors),
            Self::BadRequest(message) => plain(message.clone()),
            Self::UnsupportedMediaType(media_type) => plain(format!(
                "Unsupported media type \"{media_type}\" in request."
            )),
            Self::PayloadTooLarge => plain(format!(
                "Request body too large (limit {BODY_LIMIT} bytes)."
            )),
            Self::BodyTimeout => {
                detail("The request body was not received in time.", "body_timeout")
            }
            Self::NotAuthenticated => detail(
                "Authentication credentials were not provided.",
                "not_authenticated",
            ),
            Self::BadAuthorizationHeader => detail(
                "Authorization header must contain two space-delimited values",
                "bad_authorization_header",
            ),
            Self::TokenNotValid => no_token_class(simplejwt::INVALID_OR_EXPIRED),
            Self::AccessTokenWrongType => no_token_class(simplejwt::WRONG_TYPE),
            Self::NoActiveAccount => detail(
                "No active account found with the given credentials",
                "no_active_account",
            ),
            Self::RefreshTokenNotValid => detail(simplejwt::INVALID_OR_EXPIRED, "token_not_valid"),
            Self::RefreshTokenWrongType => detail(simplejwt::WRONG_TYPE, "token_not_valid"),
            Self::PermissionDenied => detail(
                "You do not have permission to perform this action.",
                "permission_denied",
            ),
            Self::NotFound => plain("Not found.".to_owned()),
            Self::Missing(message) => ErrorBody::Detail(Detail {
                detail: Cow::Borrowed(message),
                code: Some("not_found"),
                messages: None,
            }),
            Self::Conflict { detail, code } => ErrorBody::Detail(Detail {
                detail: Cow::Borrowed(detail),
                code: Some(code),
                messages: None,
            }),
            Self::MethodNotAllowed(method) => plain(format!("Method \"{method}\" not allowed.")),
            Self::Throttled { .. } => detail("Request was throttled.", "throttled"),
            Self::Unavailable => detail(
                "Service temporarily unavailable, try again later.",
                "service_unavailable",
            ),
            Self::Internal(_) => detail("Internal server error.", "internal"),
        }
    }
}

/// Whether auth-service refused a token for being of the other type (its
/// `ErrorInfo` says so).
fn wrong_token_type(status: &tonic::Status) -> bool {
    status.get_details_error_info().is_some_and(|info| {
        info.reason == proto::auth::v1::TOKEN_WRONG_TYPE
            && info.domain == proto::auth::v1::ERROR_DOMAIN
    })
}

/// simplejwt's texts (as of the 5.x releases the old service ran): old
/// clients compare them.
mod simplejwt {
    /// `JWTAuthentication.get_validated_token`, when no token class
    /// accepts the bearer token.
    pub(super) const NO_TOKEN_CLASS: &str = "Given token not valid for any token type";
    /// `Token.__init__`, for a token that does not decode: a bad signature,
    /// an unknown key, an expired `exp` (PyJWT checks it first), garbage.
    pub(super) const INVALID_OR_EXPIRED: &str = "Token is invalid or expired";
    /// `Token.verify_token_type`.
    pub(super) const WRONG_TYPE: &str = "Token has wrong type";
}

/// The two body shapes DRF used for errors.
#[derive(Serialize)]
#[serde(untagged)]
enum ErrorBody<'a> {
    Fields(&'a FieldErrors),
    Detail(Detail<'a>),
}

/// `{"detail": ..., "code": ...}`: every error that is not about fields.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ErrorDetail)]
pub(crate) struct Detail<'a> {
    /// A human-readable message.
    #[schema(value_type = String)]
    detail: Cow<'a, str>,
    /// A stable machine-readable code (`token_not_valid`, `throttled`, ...);
    /// absent on errors DRF gave none.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    code: Option<&'a str>,
    /// simplejwt's account of why each token class refused a bearer
    /// token; present on `token_not_valid` for an access token only (its
    /// refresh endpoint never sent one).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    messages: Option<Vec<TokenMessage>>,
}

/// One entry of `messages`, as simplejwt writes it.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct TokenMessage {
    /// The token class that refused the token: `AccessToken`.
    #[schema(value_type = String)]
    token_class: &'static str,
    /// Its type: `access`.
    #[schema(value_type = String)]
    token_type: &'static str,
    /// Why: `Token is invalid or expired` or `Token has wrong type`.
    #[schema(value_type = String)]
    message: &'static str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(cause) = &self {
            tracing::error!(error = format!("{cause:#}"), "internal error");
        }
        let mut response = (self.status_code(), Json(self.body())).into_response();
        let headers = response.headers_mut();
        match &self {
            _ if self.status_code() == StatusCode::UNAUTHORIZED => {
                headers.insert(header::WWW_AUTHENTICATE, WWW_AUTHENTICATE);
            }
            Self::Throttled { retry_after } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            Self::Unavailable => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use axum::body::to_bytes;
    use serde_json::json;
    use tonic::{Status, metadata::MetadataMap};
    use tonic_types::{ErrorDetails, StatusExt};

    use super::*;

    async fn render(error: ApiError) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let response = error.into_response();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, headers, serde_json::from_slice(&bytes).unwrap())
    }

    fn bad_request(code: Code, violations: &[(&str, &str)]) -> Status {
        let mut details = ErrorDetails::new();
        for (field, description) in violations {
            details.add_bad_request_violation(*field, *description);
        }
        Status::with_error_details(code, "validation failed", details)
    }

    #[tokio::test]
    async fn field_violations_become_a_field_map_grouped_in_order() {
        let status = bad_request(
            Code::InvalidArgument,
            &[
                ("username", "Enter a valid username."),
                ("email", "Enter a valid email address."),
                ("username", "Too long."),
            ],
        );
        let response = ApiError::from_grpc(Rpc::Register, status).into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let bytes = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        // Field order is the backend's, not alphabetical.
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"username":["Enter a valid username.","Too long."],"email":["Enter a valid email address."]}"#
        );
    }

    #[tokio::test]
    async fn already_exists_with_details_is_a_400_naming_the_field() {
        let status = bad_request(
            Code::AlreadyExists,
            &[("email", "user with this email already exists.")],
        );
        let (code, _, body) = render(ApiError::from_grpc(Rpc::Register, status)).await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert_eq!(
            body,
            json!({"email": ["user with this email already exists."]})
        );
    }

    #[tokio::test]
    async fn a_violation_without_a_field_goes_under_non_field_errors() {
        let status = bad_request(Code::InvalidArgument, &[("", "Passwords do not match.")]);
        let (_, _, body) = render(ApiError::from_grpc(Rpc::Register, status)).await;
        assert_eq!(
            body,
            json!({"non_field_errors": ["Passwords do not match."]})
        );
    }

    #[tokio::test]
    async fn invalid_argument_without_details_uses_the_message() {
        let status = Status::invalid_argument("cursor is not valid");
        let (code, _, body) = render(ApiError::from_grpc(Rpc::ListAttempts, status)).await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert_eq!(body, json!({"detail": "cursor is not valid"}));
    }

    #[tokio::test]
    async fn login_unauthenticated_is_no_active_account() {
        let status = Status::unauthenticated("bad credentials");
        let (code, headers, body) = render(ApiError::from_grpc(Rpc::Login, status)).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED);
        assert_eq!(
            body,
            json!({"detail": "No active account found with the given credentials", "code": "no_active_account"})
        );
        assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer realm=\"api\"");
    }

    #[tokio::test]
    async fn access_token_errors_carry_simplejwts_messages() {
        let (code, headers, body) = render(ApiError::TokenNotValid).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED);
        assert!(headers.contains_key(header::WWW_AUTHENTICATE));
        let response = ApiError::TokenNotValid.into_response();
        let bytes = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        // simplejwt's key order, byte for byte.
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"detail":"Given token not valid for any token type","code":"token_not_valid","messages":[{"token_class":"AccessToken","token_type":"access","message":"Token is invalid or expired"}]}"#
        );
        assert_eq!(
            body["messages"][0]["message"],
            "Token is invalid or expired"
        );
        let (_, _, body) = render(ApiError::AccessTokenWrongType).await;
        assert_eq!(
            body,
            json!({"detail": "Given token not valid for any token type", "code": "token_not_valid",
                   "messages": [{"token_class": "AccessToken", "token_type": "access",
                                 "message": "Token has wrong type"}]})
        );
        let (code, _, body) = render(ApiError::BadAuthorizationHeader).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED);
        assert_eq!(
            body,
            json!({"detail": "Authorization header must contain two space-delimited values",
                   "code": "bad_authorization_header"})
        );
    }

    #[tokio::test]
    async fn a_token_of_the_wrong_type_is_told_apart_by_its_error_info() {
        let wrong_type = || {
            Status::with_error_details(
                Code::Unauthenticated,
                "Token has wrong type",
                ErrorDetails::with_error_info(
                    proto::auth::v1::TOKEN_WRONG_TYPE,
                    proto::auth::v1::ERROR_DOMAIN,
                    std::collections::HashMap::new(),
                ),
            )
        };
        let (_, _, body) = render(ApiError::from_grpc(Rpc::Refresh, wrong_type())).await;
        assert_eq!(
            body,
            json!({"detail": "Token has wrong type", "code": "token_not_valid"})
        );
        let (_, _, body) = render(ApiError::from_grpc(Rpc::ChangePassword, wrong_type())).await;
        assert_eq!(body["messages"][0]["message"], "Token has wrong type");
        // The message alone decides nothing.
        let status = Status::unauthenticated("Token has wrong type");
        let (_, _, body) = render(ApiError::from_grpc(Rpc::Refresh, status)).await;
        assert_eq!(body["detail"], "Token is invalid or expired");
    }

    #[tokio::test]
    async fn refresh_unauthenticated_is_token_not_valid() {
        let status = Status::unauthenticated("reused");
        let (code, headers, body) = render(ApiError::from_grpc(Rpc::Refresh, status)).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED);
        assert_eq!(
            body,
            json!({"detail": "Token is invalid or expired", "code": "token_not_valid"})
        );
        assert!(headers.contains_key(header::WWW_AUTHENTICATE));
    }

    #[tokio::test]
    async fn unauthenticated_elsewhere_is_an_internal_error() {
        // E.g. a wrong INTERNAL_TOKEN: our misconfiguration, not the client's.
        let status = Status::unauthenticated("missing or wrong internal token");
        let (code, _, body) = render(ApiError::from_grpc(Rpc::ListAttempts, status)).await;
        assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            body,
            json!({"detail": "Internal server error.", "code": "internal"})
        );
    }

    #[tokio::test]
    async fn resource_exhausted_is_429_with_the_backends_retry_after() {
        let mut md = MetadataMap::new();
        md.insert("retry-after", "17".parse().unwrap());
        let status = Status::with_metadata(Code::ResourceExhausted, "slow down", md);
        let (code, headers, body) = render(ApiError::from_grpc(Rpc::Login, status)).await;
        assert_eq!(code, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(headers[header::RETRY_AFTER], "17");
        assert_eq!(
            body,
            json!({"detail": "Request was throttled.", "code": "throttled"})
        );
    }

    #[tokio::test]
    async fn resource_exhausted_without_a_usable_retry_after_waits_60s() {
        let status = Status::resource_exhausted("slow down");
        let (_, headers, _) = render(ApiError::from_grpc(Rpc::Login, status)).await;
        assert_eq!(headers[header::RETRY_AFTER], "60");

        let mut md = MetadataMap::new();
        md.insert("retry-after", "soon".parse().unwrap());
        let status = Status::with_metadata(Code::ResourceExhausted, "slow down", md);
        let (_, headers, _) = render(ApiError::from_grpc(Rpc::Login, status)).await;
        assert_eq!(headers[header::RETRY_AFTER], "60");
    }

    #[tokio::test]
    async fn unavailable_and_deadline_exceeded_are_503_retry_after_1() {
        for status in [
            Status::unavailable("connection refused"),
            Status::deadline_exceeded("too slow"),
        ] {
            let (code, headers, body) = render(ApiError::from_grpc(Rpc::Register, status)).await;
            assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(headers[header::RETRY_AFTER], "1");
            assert_eq!(
                body,
                json!({"detail": "Service temporarily unavailable, try again later.", "code": "service_unavailable"})
            );
        }
    }

    #[tokio::test]
    async fn a_local_transport_failure_is_503() {
        // What tonic makes of a client-side timeout: Cancelled with a source.
        let status = Status::from_error(Box::new(tonic::TimeoutExpired(())));
        assert_eq!(status.code(), Code::Cancelled);
        let (code, _, _) = render(ApiError::from_grpc(Rpc::Login, status)).await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn admin_refusals_become_401_403_404_and_409_with_codes() {
        let (code, headers, body) = render(ApiError::from_grpc(
            Rpc::GetUser,
            Status::unauthenticated("token"),
        ))
        .await;
        assert_eq!(code, StatusCode::UNAUTHORIZED);
        assert!(headers.contains_key(header::WWW_AUTHENTICATE));
        assert_eq!(body["code"], "token_not_valid");

        let (code, _, body) = render(ApiError::from_grpc(
            Rpc::UpdateUser,
            Status::permission_denied("not an admin"),
        ))
        .await;
        assert_eq!(code, StatusCode::FORBIDDEN);
        assert_eq!(body["code"], "permission_denied");

        let (code, _, body) = render(ApiError::from_grpc(
            Rpc::DeleteUser,
            Status::not_found("No user with id 9."),
        ))
        .await;
        assert_eq!(code, StatusCode::NOT_FOUND);
        assert_eq!(
            body,
            json!({"detail": "No user with id 9.", "code": "not_found"})
        );

        let mut details = ErrorDetails::new();
        details.add_precondition_failure_violation("LAST_ADMIN", "user:1", "root is the last");
        let status =
            Status::with_error_details(Code::FailedPrecondition, "root is the last", details);
        let (code, _, body) = render(ApiError::from_grpc(Rpc::UpdateUser, status)).await;
        assert_eq!(code, StatusCode::CONFLICT);
        assert_eq!(
            body,
            json!({"detail": "root is the last", "code": "last_admin"})
        );
        // Without a detail the code is generic.
        let (code, _, body) = render(ApiError::from_grpc(
            Rpc::DeleteUser,
            Status::failed_precondition("no"),
        ))
        .await;
        assert_eq!(code, StatusCode::CONFLICT);
        assert_eq!(body["code"], "conflict");
    }

    #[tokio::test]
    async fn other_codes_are_500_without_leaking_the_message() {
        for status in [
            Status::internal("database exploded at /var/lib/x"),
            Status::unknown("???"),
            Status::failed_precondition("odd"),
            Status::permission_denied("nope"),
            Status::not_found("where"),
        ] {
            let (code, _, body) = render(ApiError::from_grpc(Rpc::Register, status)).await;
            assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(
                body,
                json!({"detail": "Internal server error.", "code": "internal"})
            );
        }
    }

    #[tokio::test]
    async fn gateway_errors_keep_the_old_shapes() {
        let (code, _, body) = render(ApiError::UnsupportedMediaType("text/plain".into())).await;
        assert_eq!(code, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(
            body,
            json!({"detail": "Unsupported media type \"text/plain\" in request."})
        );

        let (code, _, body) = render(ApiError::PayloadTooLarge).await;
        assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            body,
            json!({"detail": "Request body too large (limit 65536 bytes)."})
        );

        let (code, headers, body) = render(ApiError::NotAuthenticated).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED);
        assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer realm=\"api\"");
        assert_eq!(
            body,
            json!({"detail": "Authentication credentials were not provided.", "code": "not_authenticated"})
        );

        let (code, headers, body) = render(ApiError::PermissionDenied).await;
        assert_eq!(code, StatusCode::FORBIDDEN);
        assert!(!headers.contains_key(header::WWW_AUTHENTICATE));
        assert_eq!(body["code"], "permission_denied");

        let (code, _, body) = render(ApiError::MethodNotAllowed(Method::GET)).await;
        assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body, json!({"detail": "Method \"GET\" not allowed."}));

        let (code, _, body) = render(ApiError::NotFound).await;
        assert_eq!(code, StatusCode::NOT_FOUND);
        assert_eq!(body, json!({"detail": "Not found."}));
    }
}

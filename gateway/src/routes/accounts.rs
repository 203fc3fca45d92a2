//! Registration, email verification, login and token refresh: each reads
//! the body with [`Fields`], calls auth-service once and answers in the old
//! service's shape.

use axum::http::{HeaderMap, header};
use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use proto::auth::v1::{
    LoginRequest, LogoutAllRequest, LogoutRequest, RefreshRequest, RegisterRequest,
    RequestVerificationCodeRequest, VerifyCodeRequest, VerifyOutcome,
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    AppState,
    body::{BodyError, Fields},
    context::RequestContext,
    error::{ApiError, Rpc},
    grpc::call,
    openapi::{BodyErrors, Throttled, Unauthorized, VerifyErrors},
};

/// The one body encoding the document lists. Every operation here also
/// reads form-urlencoded and multipart bodies with the same fields (the
/// old clients send forms), but a document listing one schema under three
/// content types makes generated clients unusable: openapi-python-client
/// 0.29 emits code that fails to import (`Unset` undefined, its issue
/// #1451) and, since the three branches test the same class, would send
/// multipart. So the document names JSON and says the rest in words.
const JSON: &str = "application/json";

/// `{"refresh", "access"}` (login) and `{"access", "refresh"}` (refresh):
/// simplejwt's field orders, kept.
#[derive(Serialize, ToSchema)]
struct LoginTokens {
    /// Refresh token (JWT), for `login/refresh/` and `logout/`.
    refresh: String,
    /// Access token (JWT), for `Authorization: Bearer`.
    access: String,
}

/// A rotated pair; the presented refresh token is spent.
#[derive(Serialize, ToSchema)]
struct RefreshedTokens {
    /// New access token (JWT).
    access: String,
    /// New refresh token (JWT); the old one is now spent.
    refresh: String,
}

/// `{"username", "email"}` of a new account.
#[derive(Serialize, ToSchema)]
struct Registered {
    /// The username as stored.
    username: String,
    /// The email as stored.
    email: String,
}

/// `{"status", "message"}`, the verification endpoints' old shape.
#[derive(Serialize, ToSchema)]
pub(crate) struct Outcome {
    /// `success` or `failed`.
    #[schema(value_type = String, pattern = "^(success|failed)$")]
    status: &'static str,
    /// What happened (`user-activated`, `code-wrong`, `code-expired`,
    /// `too-many-attempts`); absent when there is nothing to add.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    message: Option<&'static str>,
}

/// `{"status": "success", "revoked_sessions": n}` of `logout/all/`.
#[derive(Serialize, ToSchema)]
struct LoggedOutEverywhere {
    /// Always `success`.
    #[schema(value_type = String)]
    status: &'static str,
    /// How many sessions were ended.
    revoked_sessions: u64,
}

// The request bodies below describe what the handlers read with
// [`Fields`] for the OpenAPI document; the handlers read fields one by one
// (collecting every problem, DRF style), so these types are never built.

/// `POST /api/accounts/register/`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct RegisterForm {
    /// 1-150 letters, digits and `@.+-_`; unique ignoring case.
    #[schema(min_length = 1, max_length = 150, pattern = r"^[\w.@+-]+$")]
    username: String,
    /// Where the verification code is sent; unique ignoring case.
    #[schema(format = Email, max_length = 254)]
    email: String,
    /// 8 characters to 1024 bytes, not common, not all digits, not like the
    /// username or email.
    #[schema(format = Password, min_length = 8, max_length = 1024)]
    password: String,
    /// When given, must equal `password`.
    #[schema(format = Password, max_length = 1024)]
    password2: Option<String>,
}

/// `POST /api/accounts/verification/code/`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct CodeRequestForm {
    /// The account's email.
    #[schema(format = Email, max_length = 254)]
    email: String,
}

/// `POST /api/accounts/verification/code/verify/`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct VerifyForm {
    /// The account's email.
    #[schema(format = Email, max_length = 254)]
    email: String,
    /// The emailed code: 6 digits (a JSON number is accepted too).
    #[schema(pattern = "^[0-9]{6}$")]
    code: String,
}

/// `POST /api/accounts/login/`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct LoginForm {
    /// Username or email.
    #[schema(min_length = 1)]
    username: String,
    /// The account's password.
    #[schema(format = Password, min_length = 1)]
    password: String,
}

/// `login/refresh/`, `logout/` and (without a bearer token) `logout/all/`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct RefreshForm {
    /// A refresh token from `login/` or `login/refresh/`.
    refresh: String,
}

impl Outcome {
    fn success(message: Option<&'static str>) -> Json<Self> {
        Json(Self {
            status: "success",
            message,
        })
    }

    fn failed(message: &'static str) -> (StatusCode, Json<Self>) {
        (
            StatusCode::BAD_REQUEST,
            Json(Self {
                status: "failed",
                message: Some(message),
            }),
        )
    }
}

/// `POST /api/accounts/register/`: creates an inactive account.
#[utoipa::path(
    post,
    path = "/api/accounts/register/",
    operation_id = "register",
    tag = "accounts",
    summary = "Create an inactive account",
    request_body(
        content = RegisterForm,
        content_type = JSON,
        description = "JSON; the same fields as `application/x-www-form-urlencoded` or \
                       `multipart/form-data` work too."
    ),
    responses(
        (status = 201, description = "Created; a verification code can now be requested.", body = Registered),
        BodyErrors,
        Throttled,
    )
)]
pub async fn register(
    State(state): State<AppState>,
    ctx: RequestContext,
    fields: Fields,
) -> Result<impl IntoResponse, ApiError> {
    let mut form = fields.reader();
    let username = form.required("username");
    let email = form.required("email");
    let password = form.required_password("password");
    let password2 = form.optional("password2");
    form.finish()?;

    let request = RegisterRequest {
        username,
        email,
        password,
        password2,
    };
    let created = call(
        Rpc::Register,
        state.auth.clone().register(ctx.grpc_request(request)),
    )
    .await?;
    tracing::info!(username = %created.username, "account registered");
    Ok((
        StatusCode::CREATED,
        Json(Registered {
            username: created.username,
            email: created.email,
        }),
    ))
}

/// `POST /api/accounts/verification/code/`: emails a code. The answer is
/// the same whether or not the address has an account.
#[utoipa::path(
    post,
    path = "/api/accounts/verification/code/",
    operation_id = "requestVerificationCode",
    tag = "accounts",
    summary = "Email a verification code",
    request_body(
        content = CodeRequestForm,
        content_type = JSON,
        description = "JSON; the same fields as `application/x-www-form-urlencoded` or \
                       `multipart/form-data` work too."
    ),
    responses(
        (status = 200, description = "Sent if the address has an inactive account; the same answer otherwise.", body = Outcome),
        BodyErrors,
        Throttled,
    )
)]
pub async fn request_code(
    State(state): State<AppState>,
    ctx: RequestContext,
    fields: Fields,
) -> Result<impl IntoResponse, ApiError> {
    let mut form = fields.reader();
    let email = form.required("email");
    form.finish()?;

    call(
        Rpc::RequestVerificationCode,
        state
            .auth
            .clone()
            .request_verification_code(ctx.grpc_request(RequestVerificationCodeRequest { email })),
    )
    .await?;
    Ok(Outcome::success(None))
}

/// `POST /api/accounts/verification/code/verify/`: activates the account
/// when the code matches. Failures keep the old 400 `{"status": "failed"}`
/// shape.
#[utoipa::path(
    post,
    path = "/api/accounts/verification/code/verify/",
    operation_id = "verifyCode",
    tag = "accounts",
    summary = "Activate an account with its emailed code",
    request_body(
        content = VerifyForm,
        content_type = JSON,
        description = "JSON; the same fields as `application/x-www-form-urlencoded` or \
                       `multipart/form-data` work too."
    ),
    responses(
        (status = 200, description = "Activated (`user-activated`).", body = Outcome),
        VerifyErrors,
        Throttled,
    )
)]
pub async fn verify_code(
    State(state): State<AppState>,
    ctx: RequestContext,
    fields: Fields,
) -> Result<impl IntoResponse, ApiError> {
    let mut form = fields.reader();
    let email = form.required("email");
    let code = form.required("code");
    form.finish()?;

    let reply = call(
        Rpc::VerifyCode,
        state
            .auth
            .clone()
            .verify_code(ctx.grpc_request(VerifyCodeRequest { email, code })),
    )
    .await?;
    Ok(match VerifyOutcome::try_from(reply.outcome) {
        Ok(VerifyOutcome::Activated) => (StatusCode::OK, Outcome::success(Some("user-activated"))),
        Ok(VerifyOutcome::CodeWrong) => Outcome::failed("code-wrong"),
        Ok(VerifyOutcome::CodeExpired) => Outcome::failed("code-expired"),
        Ok(VerifyOutcome::TooManyAttempts) => Outcome::failed("too-many-attempts"),
        Ok(VerifyOutcome::Unspecified) | Err(_) => {
            return Err(ApiError::Internal(anyhow::anyhow!(
                "VerifyCode answered an unknown outcome {}",
                reply.outcome
            )));
        }
    })
}

/// `POST /api/accounts/login/`: exchanges credentials for a token pair.
///
/// Every attempt must reach auth-service, which records it in the audit
/// log, including attempts whose body we cannot read or whose fields are
/// missing: those are sent with `malformed_fields` naming the problem, and
/// the client still gets the gateway's own 4xx.
#[utoipa::path(
    post,
    path = "/api/accounts/login/",
    operation_id = "login",
    tag = "accounts",
    summary = "Exchange credentials for a token pair",
    request_body(
        content = LoginForm,
        content_type = JSON,
        description = "JSON; the same fields as `application/x-www-form-urlencoded` or \
                       `multipart/form-data` work too."
    ),
    responses(
        (status = 200, description = "Signed in.", body = LoginTokens),
        BodyErrors,
        Unauthorized,
        Throttled,
    )
)]
pub async fn login(
    State(state): State<AppState>,
    ctx: RequestContext,
    body: Result<Fields, BodyError>,
) -> Result<impl IntoResponse, ApiError> {
    let fields = match body {
        Ok(fields) => fields,
        Err(e) => {
            record_malformed_login(&state, &ctx, String::new(), vec!["body".to_owned()]).await;
            return Err(e.into());
        }
    };
    let mut form = fields.reader();
    let username = form.required("username");
    let password = form.required_password("password");
    let problems = form.problem_fields();
    if let Err(error) = form.finish() {
        // The password is not sent: it will not be checked, so it need
        // not cross the wire.
        record_malformed_login(&state, &ctx, username, problems).await;
        return Err(error);
    }

    let request = LoginRequest {
        username,
        password,
        malformed_fields: Vec::new(),
    };
    let pair = call(
        Rpc::Login,
        state.auth.clone().login(ctx.grpc_request(request)),
    )
    .await?;
    state.verifier.keys().note_issued(&pair.access);
    Ok((
        crate::headers::token_response(),
        Json(LoginTokens {
            refresh: pair.refresh,
            access: pair.access,
        }),
    ))
}

/// Reports a login attempt we refuse ourselves. auth-service answers it
/// with an error (it never issues tokens for one); a failure to record is
/// logged and does not change the client's answer.
async fn record_malformed_login(
    state: &AppState,
    ctx: &RequestContext,
    username: String,
    malformed_fields: Vec<String>,
) {
    let request = LoginRequest {
        username,
        password: String::new(),
        malformed_fields,
    };
    match state.auth.clone().login(ctx.grpc_request(request)).await {
        Ok(_) => tracing::error!("auth-service issued tokens for a malformed login; discarded"),
        Err(status) => match status.code() {
            tonic::Code::Unauthenticated
            | tonic::Code::InvalidArgument
            | tonic::Code::ResourceExhausted => {
                tracing::info!("malformed login attempt recorded");
            }
            code => tracing::warn!(
                ?code,
                message = status.message(),
                "malformed login attempt may not have been recorded"
            ),
        },
    }
}

/// `POST /api/accounts/login/refresh/`: rotates a refresh token.
#[utoipa::path(
    post,
    path = "/api/accounts/login/refresh/",
    operation_id = "refreshTokens",
    tag = "accounts",
    summary = "Rotate a refresh token",
    request_body(
        content = RefreshForm,
        content_type = JSON,
        description = "JSON; the same fields as `application/x-www-form-urlencoded` or \
                       `multipart/form-data` work too."
    ),
    responses(
        (status = 200, description = "Rotated.", body = RefreshedTokens),
        BodyErrors,
        Unauthorized,
        Throttled,
    )
)]
pub async fn refresh(
    State(state): State<AppState>,
    ctx: RequestContext,
    fields: Fields,
) -> Result<impl IntoResponse, ApiError> {
    let mut form = fields.reader();
    let refresh = form.required("refresh");
    form.finish()?;

    let pair = call(
        Rpc::Refresh,
        state
            .auth
            .clone()
            .refresh(ctx.grpc_request(RefreshRequest { refresh })),
    )
    .await?;
    state.verifier.keys().note_issued(&pair.access);
    Ok((
        crate::headers::token_response(),
        Json(RefreshedTokens {
            access: pair.access,
            refresh: pair.refresh,
        }),
    ))
}

/// `POST /api/accounts/logout/`: ends the session of the presented refresh
/// token (its whole rotation family). 200 `{"status": "success"}`; a
/// revoked, used or otherwise invalid token gets 401 `token_not_valid`.
#[utoipa::path(
    post,
    path = "/api/accounts/logout/",
    operation_id = "logout",
    tag = "accounts",
    summary = "End the session of a refresh token",
    request_body(
        content = RefreshForm,
        content_type = JSON,
        description = "JSON; the same fields as `application/x-www-form-urlencoded` or \
                       `multipart/form-data` work too."
    ),
    responses(
        (status = 200, description = "Signed out.", body = Outcome),
        BodyErrors,
        Unauthorized,
    )
)]
pub async fn logout(
    State(state): State<AppState>,
    ctx: RequestContext,
    fields: Fields,
) -> Result<impl IntoResponse, ApiError> {
    let mut form = fields.reader();
    let refresh = form.required("refresh");
    form.finish()?;

    call(
        Rpc::Logout,
        state
            .auth
            .clone()
            .logout(ctx.grpc_request(LogoutRequest { refresh })),
    )
    .await?;
    Ok(Outcome::success(None))
}

/// `POST /api/accounts/logout/all/`: ends every session of the user.
///
/// The user is identified by `Authorization: Bearer <access>` when that
/// header is present (the body is then ignored), else by a live `refresh`
/// token in the body: a client that lost its access token can still sign
/// out everywhere. Access tokens already issued expire on their own
/// (`JWT_ACCESS_TTL`). 200 `{"status": "success", "revoked_sessions": n}`.
#[utoipa::path(
    post,
    path = "/api/accounts/logout/all/",
    operation_id = "logoutAll",
    tag = "accounts",
    summary = "End every session of the user",
    description = "The user is the bearer token's when `Authorization: Bearer` is sent (the body \
                   is then ignored), else the owner of the `refresh` token in the body.",
    request_body(
        content = RefreshForm,
        content_type = JSON,
        description = "JSON; the same fields as `application/x-www-form-urlencoded` or \
                       `multipart/form-data` work too."
    ),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Every session ended.", body = LoggedOutEverywhere),
        BodyErrors,
        Unauthorized,
    )
)]
pub async fn logout_all(
    State(state): State<AppState>,
    ctx: RequestContext,
    headers: HeaderMap,
    body: Result<Fields, BodyError>,
) -> Result<impl IntoResponse, ApiError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned());
    let request = match bearer {
        Some(access) if !access.is_empty() => LogoutAllRequest {
            refresh: String::new(),
            access,
        },
        Some(_) => return Err(ApiError::TokenNotValid),
        None => {
            let fields = body?;
            let mut form = fields.reader();
            let refresh = form.required("refresh");
            form.finish()?;
            LogoutAllRequest {
                refresh,
                access: String::new(),
            }
        }
    };
    let reply = call(
        Rpc::LogoutAll,
        state.auth.clone().logout_all(ctx.grpc_request(request)),
    )
    .await?;
    Ok(Json(LoggedOutEverywhere {
        status: "success",
        revoked_sessions: reply.revoked_sessions,
    }))
}

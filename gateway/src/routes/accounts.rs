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

use crate::{
    AppState,
    body::{BodyError, Fields},
    context::RequestContext,
    error::{ApiError, Rpc},
    grpc::call,
};

/// `{"refresh", "access"}` (login) and `{"access", "refresh"}` (refresh):
/// simplejwt's field orders, kept.
#[derive(Serialize)]
struct LoginTokens {
    refresh: String,
    access: String,
}

#[derive(Serialize)]
struct RefreshedTokens {
    access: String,
    refresh: String,
}

/// `{"username", "email"}` of a new account.
#[derive(Serialize)]
struct Registered {
    username: String,
    email: String,
}

/// `{"status", "message"}`, the verification endpoints' old shape.
#[derive(Serialize)]
struct Outcome {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'static str>,
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
    Ok(Json(LoginTokens {
        refresh: pair.refresh,
        access: pair.access,
    }))
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
    Ok(Json(RefreshedTokens {
        access: pair.access,
        refresh: pair.refresh,
    }))
}

/// `POST /api/accounts/logout/`: ends the session of the presented refresh
/// token (its whole rotation family). 200 `{"status": "success"}`; a
/// revoked, used or otherwise invalid token gets 401 `token_not_valid`.
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
    Ok(Json(serde_json::json!({
        "status": "success",
        "revoked_sessions": reply.revoked_sessions,
    })))
}

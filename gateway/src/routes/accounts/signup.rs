//! Registration and email verification: each reads its documented body
//! type, calls auth-service once and answers in the old service's shape.

use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use proto::auth::v1::{
    RegisterRequest, RequestVerificationCodeRequest, VerifyCodeRequest, VerifyOutcome,
};

use super::{
    forms::{ALSO_FORMS, CodeRequestForm, JSON, RegisterForm, VerifyForm},
    replies::{Outcome, Registered, VerifyErrors},
};
use crate::{
    body::Fields,
    context::RequestContext,
    error::{ApiError, Rpc},
    grpc::call,
    openapi::{BodyErrors, Throttled},
    state::AppState,
};

/// `POST /api/accounts/register/`: creates an inactive account.
#[utoipa::path(
    post,
    path = "/api/accounts/register/",
    operation_id = "register",
    tag = "accounts",
    summary = "Create an inactive account",
    request_body(content = RegisterForm, content_type = JSON, description = ALSO_FORMS),
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
    let RegisterForm {
        username,
        email,
        password,
        password2,
    } = fields.parse()?;
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
    request_body(content = CodeRequestForm, content_type = JSON, description = ALSO_FORMS),
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
    let CodeRequestForm { email } = fields.parse()?;

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
/// when the code matches. Failures keep the old `{"status": "failed"}`
/// shape, with a 400, or the old service's 200 under
/// `VERIFY_FAILURE_STATUS=200`.
#[utoipa::path(
    post,
    path = "/api/accounts/verification/code/verify/",
    operation_id = "verifyCode",
    tag = "accounts",
    summary = "Activate an account with its emailed code",
    request_body(content = VerifyForm, content_type = JSON, description = ALSO_FORMS),
    responses(
        (status = 200, description = "Activated (`{\"status\": \"success\", \"message\": \"user-activated\"}`). \
            A server run with `VERIFY_FAILURE_STATUS=200` (the old service's behaviour) also answers \
            a failed check with 200: `{\"status\": \"failed\", \"message\": \"code-wrong\"}` \
            (or `code-expired`, `too-many-attempts`); read `status`.", body = Outcome),
        VerifyErrors,
        Throttled,
    )
)]
pub async fn verify_code(
    State(state): State<AppState>,
    ctx: RequestContext,
    fields: Fields,
) -> Result<impl IntoResponse, ApiError> {
    let VerifyForm {
        email,
        code,
        password,
        new_password,
    } = fields.parse()?;

    let reply = call(
        Rpc::VerifyCode,
        state
            .auth
            .clone()
            .verify_code(ctx.grpc_request(VerifyCodeRequest {
                email,
                code,
                password,
                new_password,
            })),
    )
    .await?;
    let failed = |message| Outcome::failed_with(state.shapes.verify_failure.status_code(), message);
    Ok(match VerifyOutcome::try_from(reply.outcome) {
        Ok(VerifyOutcome::Activated) => (StatusCode::OK, Outcome::success(Some("user-activated"))),
        Ok(VerifyOutcome::CodeWrong) => failed("code-wrong"),
        Ok(VerifyOutcome::CodeExpired) => failed("code-expired"),
        Ok(VerifyOutcome::TooManyAttempts) => failed("too-many-attempts"),
        Ok(VerifyOutcome::Unspecified) | Err(_) => {
            return Err(ApiError::Internal(anyhow::anyhow!(
                "VerifyCode answered an unknown outcome {}",
                reply.outcome
            )));
        }
    })
}

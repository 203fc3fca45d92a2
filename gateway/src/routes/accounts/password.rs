//! Passwords after sign-up: a change by the signed-in user and a reset by
//! an emailed code. Each reads its documented body type, calls
//! auth-service once and answers in the shapes of the routes beside it
//! (a token pair as login's; the reset's outcomes as the verification
//! code check's).

use axum::{extract::State, http::HeaderMap, http::StatusCode, response::IntoResponse};
use proto::auth::v1::{
    ChangePasswordRequest, RequestPasswordResetRequest, ResetOutcome, ResetPasswordRequest,
};

use super::{
    forms::{ALSO_FORMS, JSON, PasswordChangeForm, ResetConfirmForm, ResetRequestForm},
    replies::{LoginTokens, Outcome, VerifyErrors, issued},
};
use crate::{
    body::Fields,
    context::RequestContext,
    error::{ApiError, Rpc},
    grpc::call,
    openapi::{BodyErrors, Throttled, Unauthorized},
    state::AppState,
};

/// `POST /api/accounts/password/change/`: sets a new password for the
/// bearer token's user, who proves it with the current one.
///
/// Every session of the user ends (refresh tokens revoked, earlier access
/// tokens no longer introspect as active); the answer is a fresh pair, so
/// the caller's own session continues. A wrong current password is a 400
/// naming `old_password` and counts toward the account's login lockout.
#[utoipa::path(
    post,
    path = "/api/accounts/password/change/",
    operation_id = "changePassword",
    tag = "accounts",
    summary = "Change the password (signed in, with the current one)",
    description = "Ends every session of the user and answers with a fresh token pair. A wrong \
                   `old_password` is a 400 naming it and counts toward the account's login \
                   lockout, as a failed login does.",
    request_body(content = PasswordChangeForm, content_type = JSON, description = ALSO_FORMS),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Changed; the old sessions are over, this pair is the new one.", body = LoginTokens),
        BodyErrors,
        Unauthorized,
        Throttled,
    )
)]
pub async fn change(
    State(state): State<AppState>,
    ctx: RequestContext,
    headers: HeaderMap,
    fields: Fields,
) -> Result<impl IntoResponse, ApiError> {
    // auth-service verifies the token itself: it must also know the token
    // was issued after the user's sessions were last revoked.
    let access = crate::auth::bearer_token(&headers)?.to_owned();
    let PasswordChangeForm {
        old_password,
        new_password,
        new_password2,
    } = fields.parse()?;
    let request = ChangePasswordRequest {
        access,
        old_password,
        new_password,
        new_password2,
    };
    let pair = call(
        Rpc::ChangePassword,
        state
            .auth
            .clone()
            .change_password(ctx.grpc_request(request)),
    )
    .await?;
    tracing::info!("password changed");
    Ok(issued::<LoginTokens>(&state, pair))
}

/// `POST /api/accounts/password/reset/`: emails a reset code to a
/// verified, active account. The answer is the same whatever the address.
#[utoipa::path(
    post,
    path = "/api/accounts/password/reset/",
    operation_id = "requestPasswordReset",
    tag = "accounts",
    summary = "Email a password reset code",
    request_body(content = ResetRequestForm, content_type = JSON, description = ALSO_FORMS),
    responses(
        (status = 200, description = "Sent if the address has a verified, active account; the same answer otherwise.", body = Outcome),
        BodyErrors,
        Throttled,
    )
)]
pub async fn request_reset(
    State(state): State<AppState>,
    ctx: RequestContext,
    fields: Fields,
) -> Result<impl IntoResponse, ApiError> {
    let ResetRequestForm { email } = fields.parse()?;
    call(
        Rpc::RequestPasswordReset,
        state
            .auth
            .clone()
            .request_password_reset(ctx.grpc_request(RequestPasswordResetRequest { email })),
    )
    .await?;
    Ok(Outcome::success(None))
}

/// `POST /api/accounts/password/reset/confirm/`: sets a new password with
/// the emailed code and ends every session. Code failures answer as the
/// verification code check's do: 400 `{"status": "failed", "message": ...}`.
#[utoipa::path(
    post,
    path = "/api/accounts/password/reset/confirm/",
    operation_id = "confirmPasswordReset",
    tag = "accounts",
    summary = "Set a new password with an emailed reset code",
    request_body(content = ResetConfirmForm, content_type = JSON, description = ALSO_FORMS),
    responses(
        (status = 200, description = "Reset (`password-reset`); every session has ended.", body = Outcome),
        VerifyErrors,
        Throttled,
    )
)]
pub async fn confirm_reset(
    State(state): State<AppState>,
    ctx: RequestContext,
    fields: Fields,
) -> Result<impl IntoResponse, ApiError> {
    let ResetConfirmForm {
        email,
        code,
        new_password,
        new_password2,
    } = fields.parse()?;
    let request = ResetPasswordRequest {
        email,
        code,
        new_password,
        new_password2,
    };
    let reply = call(
        Rpc::ResetPassword,
        state.auth.clone().reset_password(ctx.grpc_request(request)),
    )
    .await?;
    Ok(match ResetOutcome::try_from(reply.outcome) {
        Ok(ResetOutcome::PasswordReset) => {
            (StatusCode::OK, Outcome::success(Some("password-reset")))
        }
        Ok(ResetOutcome::CodeWrong) => Outcome::failed("code-wrong"),
        Ok(ResetOutcome::CodeExpired) => Outcome::failed("code-expired"),
        Ok(ResetOutcome::TooManyAttempts) => Outcome::failed("too-many-attempts"),
        Ok(ResetOutcome::Unspecified) | Err(_) => {
            return Err(ApiError::Internal(anyhow::anyhow!(
                "ResetPassword answered an unknown outcome {}",
                reply.outcome
            )));
        }
    })
}

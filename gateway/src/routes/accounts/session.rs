//! Sessions: login, token refresh and logout. Each reads its documented
//! body type, calls auth-service once and answers in the old service's
//! shape (simplejwt's for tokens).

use axum::{Json, extract::State, http::HeaderMap, response::IntoResponse};
use proto::auth::v1::{LoginRequest, LogoutAllRequest, LogoutRequest, RefreshRequest};

use super::{
    forms::{ALSO_FORMS, JSON, LoginForm, RefreshForm},
    replies::{LoggedOutEverywhere, LoginTokens, Outcome, RefreshedTokens, issued},
};
use crate::{
    body::{BodyError, Fields, Invalid},
    context::RequestContext,
    error::{ApiError, Rpc},
    grpc::call,
    openapi::{BodyErrors, Throttled, Unauthorized},
    state::AppState,
};

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
    request_body(content = LoginForm, content_type = JSON, description = ALSO_FORMS),
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
    let LoginForm { username, password } = match fields.parse::<LoginForm>() {
        Ok(form) => form,
        Err(Invalid { partial, errors }) => {
            // The password is not sent: it will not be checked, so it need
            // not cross the wire.
            let problems = errors.fields().map(str::to_owned).collect();
            record_malformed_login(&state, &ctx, partial.username, problems).await;
            return Err(ApiError::Validation(errors));
        }
    };

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
    Ok(issued::<LoginTokens>(&state, pair))
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

/// `POST /api/accounts/login/refresh/`: rotates a refresh token, or (with
/// `JWT_ROTATE_REFRESH_TOKENS=false` in auth-service) answers a new access
/// token alone, as simplejwt does by default.
#[utoipa::path(
    post,
    path = "/api/accounts/login/refresh/",
    operation_id = "refreshTokens",
    tag = "accounts",
    summary = "Rotate a refresh token",
    request_body(content = RefreshForm, content_type = JSON, description = ALSO_FORMS),
    responses(
        (status = 200, description = "Rotated: `{\"access\", \"refresh\"}`, the presented token is spent. \
            A server run with `JWT_ROTATE_REFRESH_TOKENS=false` answers `{\"access\"}` only; the \
            presented refresh token then stays valid until it expires or its session ends.",
            body = RefreshedTokens),
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
    let RefreshForm { refresh } = fields.parse()?;

    let pair = call(
        Rpc::Refresh,
        state
            .auth
            .clone()
            .refresh(ctx.grpc_request(RefreshRequest { refresh })),
    )
    .await?;
    Ok(issued::<RefreshedTokens>(&state, pair))
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
    request_body(content = RefreshForm, content_type = JSON, description = ALSO_FORMS),
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
    let RefreshForm { refresh } = fields.parse()?;

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
    request_body(content = RefreshForm, content_type = JSON, description = ALSO_FORMS),
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
    // The body is read only when there is no bearer token at all.
    let request = match crate::auth::bearer_token(&headers) {
        Ok(access) => LogoutAllRequest {
            refresh: String::new(),
            access: access.to_owned(),
        },
        Err(ApiError::NotAuthenticated) => {
            let RefreshForm { refresh } = body?.parse()?;
            LogoutAllRequest {
                refresh,
                access: String::new(),
            }
        }
        Err(malformed) => return Err(malformed),
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

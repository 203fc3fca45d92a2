//! `/api/admin/users/…`: list and search accounts, one account in detail,
//! and the actions on it. Each handler verifies the bearer token locally
//! (an access token whose claim says staff, else 401/403 at once) and
//! makes one `auth.v1.AdminService` call carrying that token, which
//! auth-service checks again against the database.

use axum::{
    extract::{RawQuery, State},
    response::Response,
};
use proto::auth::v1::{
    DeleteUserRequest, GetUserRequest, LogoutUserRequest, ResendVerificationRequest,
    UnlockUserRequest, UpdateUserRequest,
};
use serde::Serialize;

use super::{
    forms::UserUpdateForm,
    item::{DeleteReply, LogoutReply, UnlockReply, UserDetailItem, UserItem, VerificationReply},
    query::UsersQuery,
    target::{UserAction, for_admin},
};
use crate::{
    auth::AdminSession,
    body::Fields,
    context::RequestContext,
    error::{ApiError, Rpc},
    grpc::call,
    headers::private_json,
    openapi::{AdminErrors, UserChangeErrors, UserErrors, UserUpdateErrors},
    routes::params::next_link,
    routes::{
        accounts::forms::{ALSO_FORMS, JSON},
        logs::item::rfc3339,
    },
    state::AppState,
};

/// The listing's path, for building `next` links.
pub const LIST_PATH: &str = "/api/admin/users/";

/// One page of accounts.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UsersPage {
    /// The accounts, newest first.
    pub results: Vec<UserItem>,
    /// Link to the next page; `null` on the last. Absolute when the server
    /// has `GATEWAY_PUBLIC_URL`, else a path.
    #[schema(format = "uri-reference")]
    pub next: Option<String>,
}

/// `GET /api/admin/users/`.
#[utoipa::path(
    get,
    path = LIST_PATH,
    operation_id = "listUsers",
    tag = "admin",
    summary = "List and search accounts, newest first",
    description = "One page at a time; follow `next` for the rest. Empty parameters count as \
                   absent; unknown ones are ignored.",
    params(
        ("q" = Option<String>, Query, max_length = 254, description = "Part of the username or email, any case (and width: `ＡＬＩ` finds `alice`)."),
        ("is_active" = Option<bool>, Query, description = "Only accounts that may log in, or only the others."),
        ("is_staff" = Option<bool>, Query, description = "Only administrators, or only the others."),
        ("verified" = Option<bool>, Query, description = "Only verified, or only unverified, accounts."),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Page size (default 50)."),
        ("cursor" = Option<String>, Query, description = "Position from a previous page's `next`."),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of accounts.", body = UsersPage),
        AdminErrors,
    )
)]
pub async fn list(
    State(state): State<AppState>,
    session: AdminSession,
    ctx: RequestContext,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let query = UsersQuery::parse(query.as_deref()).map_err(ApiError::Validation)?;
    let reply = call(
        Rpc::ListUsers,
        state
            .admin
            .clone()
            .list_users(for_admin(&ctx, &session, query.to_request())?),
    )
    .await?;
    let next = next_link(
        state.public_url.as_ref(),
        LIST_PATH,
        &reply.next_cursor,
        |cursor| query.next_query(cursor),
    );
    Ok(private_json(UsersPage {
        results: reply.users.into_iter().map(UserItem::from).collect(),
        next,
    }))
}

/// `GET /api/admin/users/{id}/`.
#[utoipa::path(
    get,
    path = "/api/admin/users/{id}/",
    operation_id = "getUser",
    tag = "admin",
    summary = "One account, with its lock and sessions",
    params(("id" = i64, Path, minimum = 1, description = "The account's id.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The account now.", body = UserDetailItem),
        UserErrors,
    )
)]
pub async fn get(action: UserAction) -> Result<Response, ApiError> {
    let reply = call(
        Rpc::GetUser,
        action.admin().get_user(action.request(GetUserRequest {
            user_id: action.user_id,
        })?),
    )
    .await?;
    Ok(detail_response(reply.user.unwrap_or_default()))
}

/// `PATCH /api/admin/users/{id}/`.
#[utoipa::path(
    patch,
    path = "/api/admin/users/{id}/",
    operation_id = "updateUser",
    tag = "admin",
    summary = "Activate, deactivate, grant or revoke administrator rights",
    description = "Send `is_active` and/or `is_staff`. Deactivating ends every session of the \
                   account at once. A change that would leave no active administrator \
                   (deactivating or demoting the last one, yourself included) is a 409 \
                   `last_admin`; activating an account that has not verified its email is a \
                   409 `not_verified`.",
    params(("id" = i64, Path, minimum = 1, description = "The account's id.")),
    request_body(content = UserUpdateForm, content_type = JSON, description = ALSO_FORMS),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The account after the change.", body = UserDetailItem),
        UserUpdateErrors,
    )
)]
pub async fn update(action: UserAction, fields: Fields) -> Result<Response, ApiError> {
    let UserUpdateForm {
        is_active,
        is_staff,
    } = fields.parse()?;
    let request = UpdateUserRequest {
        user_id: action.user_id,
        is_active,
        is_staff,
    };
    let reply = call(
        Rpc::UpdateUser,
        action.admin().update_user(action.request(request)?),
    )
    .await?;
    Ok(detail_response(reply.user.unwrap_or_default()))
}

/// `DELETE /api/admin/users/{id}/`.
#[utoipa::path(
    delete,
    path = "/api/admin/users/{id}/",
    operation_id = "deleteUser",
    tag = "admin",
    summary = "Delete an account (its login attempts stay in the log)",
    description = "Deletes the account with its sessions and codes. Its login attempts stay \
                   in the log, which refers to accounts by id without a foreign key; the reply \
                   says so. Deleting the last active administrator is a 409 `last_admin`.",
    params(("id" = i64, Path, minimum = 1, description = "The account's id.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Deleted.", body = DeleteReply),
        UserChangeErrors,
    )
)]
pub async fn delete(action: UserAction) -> Result<Response, ApiError> {
    let reply = call(
        Rpc::DeleteUser,
        action
            .admin()
            .delete_user(action.request(DeleteUserRequest {
                user_id: action.user_id,
            })?),
    )
    .await?;
    Ok(private_json(DeleteReply {
        deleted: UserItem::from(reply.user.unwrap_or_default()),
        login_attempts_kept: reply.login_attempts_kept,
        detail: reply.note,
    }))
}

/// `POST /api/admin/users/{id}/unlock/`.
#[utoipa::path(
    post,
    path = "/api/admin/users/{id}/unlock/",
    operation_id = "unlockUser",
    tag = "admin",
    summary = "Lift the account's brute-force lock and delays",
    params(("id" = i64, Path, minimum = 1, description = "The account's id.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Unlocked.", body = UnlockReply),
        UserErrors,
    )
)]
pub async fn unlock(action: UserAction) -> Result<Response, ApiError> {
    let reply = call(
        Rpc::UnlockUser,
        action
            .admin()
            .unlock_user(action.request(UnlockUserRequest {
                user_id: action.user_id,
            })?),
    )
    .await?;
    Ok(private_json(UnlockReply {
        user: UserDetailItem::from(reply.user.unwrap_or_default()),
        cleared_counters: reply.cleared_counters,
    }))
}

/// `POST /api/admin/users/{id}/logout/`.
#[utoipa::path(
    post,
    path = "/api/admin/users/{id}/logout/",
    operation_id = "logoutUser",
    tag = "admin",
    summary = "End every session of the account",
    description = "Revokes every refresh token; access tokens issued so far no longer \
                   introspect as active (as after a password change). The account stays \
                   active and may log in again.",
    params(("id" = i64, Path, minimum = 1, description = "The account's id.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Logged out everywhere.", body = LogoutReply),
        UserErrors,
    )
)]
pub async fn logout(action: UserAction) -> Result<Response, ApiError> {
    let reply = call(
        Rpc::LogoutUser,
        action
            .admin()
            .logout_user(action.request(LogoutUserRequest {
                user_id: action.user_id,
            })?),
    )
    .await?;
    Ok(private_json(LogoutReply {
        user: UserDetailItem::from(reply.user.unwrap_or_default()),
        revoked_sessions: reply.revoked_sessions,
    }))
}

/// `POST /api/admin/users/{id}/verification/`.
#[utoipa::path(
    post,
    path = "/api/admin/users/{id}/verification/",
    operation_id = "resendVerification",
    tag = "admin",
    summary = "Email a fresh verification code to an unverified account",
    description = "Under the code rules: ten minutes, five tries, one a minute per account \
                   (429 sooner). A verified account is a 409 `already_verified`, a \
                   registration past `AUTH_UNVERIFIED_TTL` a 409 `registration_expired`. \
                   Answers once the mail server took the message (503 when it did not).",
    params(("id" = i64, Path, minimum = 1, description = "The account's id.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Mailed.", body = VerificationReply),
        UserChangeErrors,
        crate::openapi::Throttled,
    )
)]
pub async fn resend_verification(action: UserAction) -> Result<Response, ApiError> {
    let reply = call(
        Rpc::ResendVerification,
        action
            .admin()
            .resend_verification(action.request(ResendVerificationRequest {
                user_id: action.user_id,
            })?),
    )
    .await?;
    Ok(private_json(VerificationReply {
        user: UserDetailItem::from(reply.user.unwrap_or_default()),
        code_expires_at: reply.code_expires_at.and_then(rfc3339),
    }))
}

fn detail_response(user: proto::auth::v1::UserDetail) -> Response {
    private_json(UserDetailItem::from(user))
}

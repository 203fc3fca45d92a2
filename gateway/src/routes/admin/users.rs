//! `/api/admin/users/…`: list and search accounts, one account in detail,
//! and the actions on it. Each handler verifies the bearer token locally
//! (an access token whose claim says staff, else 401/403 at once) and
//! makes one `auth.v1.AdminService` call carrying that token, which
//! auth-service checks again against the database.

use axum::{
    Json,
    extract::{Path, RawQuery, State, rejection::PathRejection},
    response::{IntoResponse, Response},
};
use proto::auth::v1::{
    DeleteUserRequest, GetUserRequest, LogoutUserRequest, ResendVerificationRequest,
    UnlockUserRequest, UpdateUserRequest,
};
use serde::Serialize;
use tonic::metadata::MetadataValue;

use super::{
    forms::UserUpdateForm,
    item::{DeleteReply, LogoutReply, UnlockReply, UserDetailItem, UserItem, VerificationReply},
    query::UsersQuery,
};
use crate::{
    auth::AdminSession,
    body::Fields,
    context::RequestContext,
    error::{ApiError, FieldErrors, Rpc},
    grpc::call,
    openapi::{AdminErrors, UserChangeErrors, UserErrors, UserUpdateErrors},
    routes::params::next_url,
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

/// `message` as a call of auth-service for the administrator of `session`:
/// the request context as every call carries it, and the access token.
fn for_admin<T>(
    ctx: &RequestContext,
    session: &AdminSession,
    message: T,
) -> Result<tonic::Request<T>, ApiError> {
    let mut request = ctx.grpc_request(message);
    // A token that verified is base64url and dots, so this only fails on a bug.
    let token =
        MetadataValue::try_from(session.token.expose()).map_err(|_| ApiError::TokenNotValid)?;
    request
        .metadata_mut()
        .insert(common::metadata::ACCESS_TOKEN, token);
    Ok(request)
}

/// The `{id}` of the path: a positive integer, else 400 naming `id`.
fn user_id(path: Result<Path<String>, PathRejection>) -> Result<i64, ApiError> {
    let invalid = |message: &str| {
        let mut errors = FieldErrors::default();
        errors.add("id", message);
        ApiError::Validation(errors)
    };
    let Ok(Path(raw)) = path else {
        return Err(invalid("A valid integer is required."));
    };
    match raw.trim().parse::<i64>() {
        Ok(id) if id >= 1 => Ok(id),
        Ok(_) => Err(invalid("Ensure this value is greater than or equal to 1.")),
        Err(_) => Err(invalid("A valid integer is required.")),
    }
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
    let next = (!reply.next_cursor.is_empty()).then(|| {
        next_url(
            state.public_url.as_ref(),
            LIST_PATH,
            &query.next_query(&reply.next_cursor),
        )
    });
    Ok((
        crate::headers::no_store(),
        Json(UsersPage {
            results: reply.users.into_iter().map(UserItem::from).collect(),
            next,
        }),
    )
        .into_response())
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
pub async fn get(
    State(state): State<AppState>,
    session: AdminSession,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let user_id = user_id(path)?;
    let reply = call(
        Rpc::GetUser,
        state
            .admin
            .clone()
            .get_user(for_admin(&ctx, &session, GetUserRequest { user_id })?),
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
pub async fn update(
    State(state): State<AppState>,
    session: AdminSession,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
    fields: Fields,
) -> Result<Response, ApiError> {
    let user_id = user_id(path)?;
    let UserUpdateForm {
        is_active,
        is_staff,
    } = fields.parse()?;
    let request = UpdateUserRequest {
        user_id,
        is_active,
        is_staff,
    };
    let reply = call(
        Rpc::UpdateUser,
        state
            .admin
            .clone()
            .update_user(for_admin(&ctx, &session, request)?),
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
pub async fn delete(
    State(state): State<AppState>,
    session: AdminSession,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let user_id = user_id(path)?;
    let reply = call(
        Rpc::DeleteUser,
        state
            .admin
            .clone()
            .delete_user(for_admin(&ctx, &session, DeleteUserRequest { user_id })?),
    )
    .await?;
    Ok((
        crate::headers::no_store(),
        Json(DeleteReply {
            deleted: UserItem::from(reply.user.unwrap_or_default()),
            login_attempts_kept: reply.login_attempts_kept,
            detail: reply.note,
        }),
    )
        .into_response())
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
pub async fn unlock(
    State(state): State<AppState>,
    session: AdminSession,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let user_id = user_id(path)?;
    let reply = call(
        Rpc::UnlockUser,
        state
            .admin
            .clone()
            .unlock_user(for_admin(&ctx, &session, UnlockUserRequest { user_id })?),
    )
    .await?;
    Ok(json(UnlockReply {
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
pub async fn logout(
    State(state): State<AppState>,
    session: AdminSession,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let user_id = user_id(path)?;
    let reply = call(
        Rpc::LogoutUser,
        state
            .admin
            .clone()
            .logout_user(for_admin(&ctx, &session, LogoutUserRequest { user_id })?),
    )
    .await?;
    Ok(json(LogoutReply {
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
pub async fn resend_verification(
    State(state): State<AppState>,
    session: AdminSession,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let user_id = user_id(path)?;
    let reply = call(
        Rpc::ResendVerification,
        state.admin.clone().resend_verification(for_admin(
            &ctx,
            &session,
            ResendVerificationRequest { user_id },
        )?),
    )
    .await?;
    Ok(json(VerificationReply {
        user: UserDetailItem::from(reply.user.unwrap_or_default()),
        code_expires_at: reply.code_expires_at.and_then(rfc3339),
    }))
}

fn detail_response(user: proto::auth::v1::UserDetail) -> Response {
    json(UserDetailItem::from(user))
}

/// A JSON answer no cache keeps: it describes one account now.
fn json<T: Serialize>(body: T) -> Response {
    (crate::headers::no_store(), Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PublicUrl;

    #[test]
    fn ids_are_positive_integers_named_id() {
        let path = |raw: &str| Ok(Path(raw.to_owned()));
        assert_eq!(user_id(path("42")).unwrap(), 42);
        for bad in [
            "0",
            "-1",
            "abc",
            "1.5",
            "",
            "99999999999999999999",
            "4\u{0}2",
        ] {
            let Err(ApiError::Validation(errors)) = user_id(path(bad)) else {
                panic!("{bad:?} accepted");
            };
            assert_eq!(errors.fields().collect::<Vec<_>>(), ["id"], "{bad:?}");
        }
    }

    #[test]
    fn next_links_are_relative_unless_a_public_url_is_configured() {
        assert_eq!(
            next_url(None, LIST_PATH, "cursor=c"),
            "/api/admin/users/?cursor=c"
        );
        let base = PublicUrl::parse("https://api.example.com/").unwrap();
        assert_eq!(
            next_url(Some(&base), LIST_PATH, "cursor=c"),
            "https://api.example.com/api/admin/users/?cursor=c"
        );
    }
}

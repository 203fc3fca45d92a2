//! `auth.v1.AdminService`: authenticates the administrator behind each
//! call ([`AuthApi::admin_actor`]), reads the clock once, and hands the
//! request to the use cases of [`crate::users`]. No rules live here.

use proto::auth::v1::{self as pb, admin_service_server::AdminService};
use tonic::{Request, Response, Status};

use super::AuthApi;
use crate::{
    context::ClientContext,
    error::Error,
    store::{AccountDetail, AccountView, AuthStore},
    tokens::ACCESS,
    users::{self, Actor, FlagChange, ListRequest, UserQuery},
};

impl<S: AuthStore> AuthApi<S> {
    /// The administrator an access token names, acting from `client`:
    /// the token must verify and be live as [`Self::introspect`] judges it
    /// ([`Error::InvalidToken`] otherwise), and its account must be an
    /// administrator now ([`Error::PermissionDenied`] otherwise), whatever
    /// the token's own `is_staff` claim says.
    pub async fn admin_actor(&self, token: &str, client: ClientContext) -> Result<Actor, Error> {
        let token = token.trim();
        if token.is_empty() {
            return Err(Error::InvalidToken);
        }
        let claims = self.verify_token(token, ACCESS).await?;
        let user = self.live_owner(&claims).await?.ok_or(Error::InvalidToken)?;
        if !user.is_staff {
            tracing::info!(user_id = user.id, "administration refused: not an admin");
            return Err(Error::PermissionDenied);
        }
        Ok(Actor::admin(user.id, user.username, client))
    }

    /// The administrator behind a call (see [`Self::admin_actor`]).
    async fn caller<T>(&self, req: &Request<T>) -> Result<Actor, Error> {
        let md = req.metadata();
        let token = common::metadata::get(md, common::metadata::ACCESS_TOKEN).unwrap_or("");
        let actor = self
            .admin_actor(token, ClientContext::from_metadata(md))
            .await?;
        tracing::Span::current().record("request_id", actor.client().request_id.as_str());
        Ok(actor)
    }
}

#[tonic::async_trait]
impl<S: AuthStore> AdminService for AuthApi<S> {
    #[tracing::instrument(skip_all, fields(request_id))]
    async fn list_users(
        &self,
        req: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let actor = self.caller(&req).await?;
        let r = req.into_inner();
        let query = UserQuery::parse(&ListRequest {
            q: &r.q,
            is_active: r.is_active,
            is_staff: r.is_staff,
            verified: r.verified,
            limit: r.limit,
            cursor: &r.cursor,
        })
        .map_err(Error::Invalid)?;
        let page = self.users.list(&actor, &query).await?;
        Ok(Response::new(pb::ListUsersResponse {
            users: page.accounts.iter().map(account).collect(),
            next_cursor: page.next_cursor.unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all, fields(request_id))]
    async fn get_user(
        &self,
        req: Request<pb::GetUserRequest>,
    ) -> Result<Response<pb::GetUserResponse>, Status> {
        self.caller(&req).await?;
        let id = user_id(req.get_ref().user_id)?;
        let detail = self.users.detail(id, now()).await?;
        Ok(Response::new(pb::GetUserResponse {
            user: Some(user_detail(&detail)),
        }))
    }

    #[tracing::instrument(skip_all, fields(request_id))]
    async fn update_user(
        &self,
        req: Request<pb::UpdateUserRequest>,
    ) -> Result<Response<pb::UpdateUserResponse>, Status> {
        let actor = self.caller(&req).await?;
        let r = req.into_inner();
        let flags = FlagChange {
            is_active: r.is_active,
            is_staff: r.is_staff,
        };
        let done = self
            .users
            .update(&actor, user_id(r.user_id)?, flags, now())
            .await?;
        Ok(Response::new(pb::UpdateUserResponse {
            user: Some(user_detail(&done.account)),
            revoked_sessions: count(done.count),
        }))
    }

    #[tracing::instrument(skip_all, fields(request_id))]
    async fn unlock_user(
        &self,
        req: Request<pb::UnlockUserRequest>,
    ) -> Result<Response<pb::UnlockUserResponse>, Status> {
        let actor = self.caller(&req).await?;
        let id = user_id(req.get_ref().user_id)?;
        let done = self.users.unlock(&actor, id, now()).await?;
        Ok(Response::new(pb::UnlockUserResponse {
            user: Some(user_detail(&done.account)),
            cleared_counters: count(done.count),
        }))
    }

    #[tracing::instrument(skip_all, fields(request_id))]
    async fn logout_user(
        &self,
        req: Request<pb::LogoutUserRequest>,
    ) -> Result<Response<pb::LogoutUserResponse>, Status> {
        let actor = self.caller(&req).await?;
        let id = user_id(req.get_ref().user_id)?;
        let done = self.users.log_out(&actor, id, now()).await?;
        Ok(Response::new(pb::LogoutUserResponse {
            user: Some(user_detail(&done.account)),
            revoked_sessions: count(done.count),
        }))
    }

    #[tracing::instrument(skip_all, fields(request_id))]
    async fn resend_verification(
        &self,
        req: Request<pb::ResendVerificationRequest>,
    ) -> Result<Response<pb::ResendVerificationResponse>, Status> {
        let actor = self.caller(&req).await?;
        let id = user_id(req.get_ref().user_id)?;
        let (detail, expires_at) = self.users.resend_verification(&actor, id, now()).await?;
        Ok(Response::new(pb::ResendVerificationResponse {
            user: Some(user_detail(&detail)),
            code_expires_at: Some(timestamp(expires_at)),
        }))
    }

    #[tracing::instrument(skip_all, fields(request_id))]
    async fn delete_user(
        &self,
        req: Request<pb::DeleteUserRequest>,
    ) -> Result<Response<pb::DeleteUserResponse>, Status> {
        let actor = self.caller(&req).await?;
        let id = user_id(req.get_ref().user_id)?;
        let before = self.users.delete(&actor, id, now()).await?;
        Ok(Response::new(pb::DeleteUserResponse {
            user: Some(account(&before)),
            login_attempts_kept: true,
            note: users::ATTEMPTS_KEPT.to_owned(),
        }))
    }
}

/// The request's account id, or INVALID_ARGUMENT naming `user_id`.
fn user_id(raw: i64) -> Result<i64, Error> {
    users::query::user_id("user_id", raw).map_err(|e| Error::Invalid(vec![e]))
}

fn account(a: &AccountView) -> pb::UserAccount {
    pb::UserAccount {
        id: a.id,
        username: a.username.clone(),
        email: a.email.clone(),
        is_active: a.is_active,
        is_staff: a.is_staff,
        verified: a.verified_at.is_some(),
        date_joined: Some(timestamp(a.created_at)),
        verified_at: a.verified_at.map(timestamp),
        last_login: a.last_login_at.map(timestamp),
    }
}

fn user_detail(d: &AccountDetail) -> pb::UserDetail {
    pb::UserDetail {
        user: Some(account(&d.account)),
        locked_until: d.locked_until.map(timestamp),
        delayed_clients: count(d.delayed_clients),
        active_sessions: count(d.active_sessions),
    }
}

fn timestamp(seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds, nanos: 0 }
}

/// A count as the messages carry it (saturating; never negative).
fn count<N: TryInto<u32>>(n: N) -> u32 {
    n.try_into().unwrap_or(u32::MAX)
}

/// The request's instant, read once at the edge (unix seconds).
fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

//! The tonic adapter: reads the request's client context and the clock,
//! calls the use case, and converts its result. No rules live here.

use proto::auth::v1::{self as pb, auth_service_server::AuthService};
use tonic::{Request, Response, Status};

use super::AuthApi;
use crate::{context::ClientContext, store::AuthStore};

#[tonic::async_trait]
impl<S: AuthStore> AuthService for AuthApi<S> {
    #[tracing::instrument(skip_all)]
    async fn register(
        &self,
        req: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let ctx = ClientContext::from_metadata(req.metadata());
        Ok(Response::new(
            self.register_account(&ctx, req.into_inner(), now()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn request_verification_code(
        &self,
        req: Request<pb::RequestVerificationCodeRequest>,
    ) -> Result<Response<pb::RequestVerificationCodeResponse>, Status> {
        let ctx = ClientContext::from_metadata(req.metadata());
        self.send_verification_code(&ctx, req.into_inner(), now())
            .await?;
        Ok(Response::new(pb::RequestVerificationCodeResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn verify_code(
        &self,
        req: Request<pb::VerifyCodeRequest>,
    ) -> Result<Response<pb::VerifyCodeResponse>, Status> {
        let ctx = ClientContext::from_metadata(req.metadata());
        let outcome = self.verify_email(&ctx, req.into_inner(), now()).await?;
        Ok(Response::new(pb::VerifyCodeResponse {
            outcome: outcome.into(),
        }))
    }

    #[tracing::instrument(skip_all, fields(request_id))]
    async fn login(
        &self,
        req: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::TokenPair>, Status> {
        let ctx = ClientContext::from_metadata(req.metadata());
        tracing::Span::current().record("request_id", ctx.request_id.as_str());
        Ok(Response::new(
            self.log_in(&ctx, req.into_inner(), time::OffsetDateTime::now_utc())
                .await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn refresh(
        &self,
        req: Request<pb::RefreshRequest>,
    ) -> Result<Response<pb::TokenPair>, Status> {
        Ok(Response::new(
            self.refresh_session(req.into_inner(), now()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn logout(
        &self,
        req: Request<pb::LogoutRequest>,
    ) -> Result<Response<pb::LogoutResponse>, Status> {
        self.log_out(req.into_inner(), now()).await?;
        Ok(Response::new(pb::LogoutResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn logout_all(
        &self,
        req: Request<pb::LogoutAllRequest>,
    ) -> Result<Response<pb::LogoutAllResponse>, Status> {
        Ok(Response::new(
            self.log_out_everywhere(req.into_inner(), now()).await?,
        ))
    }

    #[tracing::instrument(skip_all, fields(request_id))]
    async fn change_password(
        &self,
        req: Request<pb::ChangePasswordRequest>,
    ) -> Result<Response<pb::TokenPair>, Status> {
        let ctx = ClientContext::from_metadata(req.metadata());
        tracing::Span::current().record("request_id", ctx.request_id.as_str());
        Ok(Response::new(
            self.change_own_password(&ctx, req.into_inner(), time::OffsetDateTime::now_utc())
                .await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn request_password_reset(
        &self,
        req: Request<pb::RequestPasswordResetRequest>,
    ) -> Result<Response<pb::RequestPasswordResetResponse>, Status> {
        let ctx = ClientContext::from_metadata(req.metadata());
        self.send_reset_code(&ctx, req.into_inner(), now()).await?;
        Ok(Response::new(pb::RequestPasswordResetResponse {}))
    }

    #[tracing::instrument(skip_all, fields(request_id))]
    async fn reset_password(
        &self,
        req: Request<pb::ResetPasswordRequest>,
    ) -> Result<Response<pb::ResetPasswordResponse>, Status> {
        let ctx = ClientContext::from_metadata(req.metadata());
        tracing::Span::current().record("request_id", ctx.request_id.as_str());
        let outcome = self
            .reset_with_code(&ctx, req.into_inner(), time::OffsetDateTime::now_utc())
            .await?;
        Ok(Response::new(pb::ResetPasswordResponse {
            outcome: outcome.into(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn introspect_token(
        &self,
        req: Request<pb::IntrospectTokenRequest>,
    ) -> Result<Response<pb::IntrospectTokenResponse>, Status> {
        Ok(Response::new(self.introspect(req.into_inner()).await?))
    }

    async fn get_jwks(
        &self,
        _req: Request<pb::GetJwksRequest>,
    ) -> Result<Response<pb::GetJwksResponse>, Status> {
        // Fresh from the database: the gateway asks when it meets a kid it
        // does not know, which is exactly when a key was just rotated in.
        if let Err(e) = self.tokens.reload(&self.store).await {
            tracing::warn!(error = %e, "signing keys not reloaded; serving the loaded ones");
        }
        let now = now();
        let keys = self.tokens.jwks(now).iter().map(jwk).collect();
        Ok(Response::new(pb::GetJwksResponse {
            keys,
            signing_kid: self.tokens.signing_kid(now),
        }))
    }
}

/// A published key in `auth.v1` form: the members of its key type set, the
/// others empty.
fn jwk(key: &crate::tokens::PublicJwk) -> pb::Jwk {
    use crate::tokens::PublicParams;
    let mut jwk = pb::Jwk {
        kty: key.params.kty().into(),
        crv: key.params.crv().unwrap_or_default().into(),
        kid: key.kid.clone(),
        alg: key.alg.name().into(),
        r#use: "sig".into(),
        ..pb::Jwk::default()
    };
    match &key.params {
        PublicParams::Okp { x } => jwk.x.clone_from(x),
        PublicParams::Ec { x, y } => {
            jwk.x.clone_from(x);
            jwk.y.clone_from(y);
        }
        PublicParams::Rsa { n, e } => {
            jwk.n.clone_from(n);
            jwk.e.clone_from(e);
        }
    }
    jwk
}

/// The request's instant, read once at the edge (unix seconds).
fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

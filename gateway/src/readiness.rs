//! `GET /readyz`: can the whole system serve logins right now?
//!
//! Both gRPC services are asked over their standard health service for
//! their named entry, which each service keeps in step with its database
//! (see `common::health`). Health calls need no internal token, so this
//! also works before credentials are rolled out.

use std::time::Duration;

use axum::{
    Json,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use utoipa::ToSchema;

/// A backend that has not answered within this is "unreachable".
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Health clients on the gateway's existing backend channels.
#[derive(Clone)]
pub struct Readiness {
    auth: HealthClient<Channel>,
    audit: HealthClient<Channel>,
}

impl Readiness {
    /// Checks over `auth` and `audit`, the channels the API calls use, so
    /// "ready" means those very connections work.
    pub fn new(auth: Channel, audit: Channel) -> Self {
        Self {
            auth: HealthClient::new(auth),
            audit: HealthClient::new(audit),
        }
    }
}

/// What one backend answered.
#[derive(Serialize, ToSchema, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// The service and its database answer.
    Serving,
    /// The service answers but is draining or its database does not.
    NotServing,
    /// No answer (down, unreachable, or slower than the timeout).
    Unreachable,
}

/// The `/readyz` body.
#[derive(Serialize, ToSchema)]
pub struct Readyz {
    /// `ready` or `not_ready`.
    #[schema(example = "ready")]
    status: &'static str,
    /// auth-service and its database.
    auth: Check,
    /// audit-service and its database.
    audit: Check,
}

async fn check(mut client: HealthClient<Channel>, service: &str) -> Check {
    let request = HealthCheckRequest {
        service: service.to_owned(),
    };
    match tokio::time::timeout(CHECK_TIMEOUT, client.check(request)).await {
        Ok(Ok(reply)) if reply.get_ref().status() == ServingStatus::Serving => Check::Serving,
        Ok(Ok(_)) => Check::NotServing,
        Ok(Err(status)) if status.code() == tonic::Code::NotFound => Check::NotServing,
        Ok(Err(_)) | Err(_) => Check::Unreachable,
    }
}

/// `GET /readyz`: 200 when auth-service and audit-service both answer and
/// report their databases answering, 503 (with each one's state) otherwise.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "ready",
    tag = "meta",
    summary = "Readiness: both gRPC services and their databases answer",
    responses(
        (status = 200, description = "Ready.", body = Readyz),
        (status = 503, description = "A backend or its database does not answer.", body = Readyz),
    )
)]
pub async fn readyz(State(ready): State<Readiness>) -> Response {
    let (auth, audit) = tokio::join!(
        check(
            ready.auth.clone(),
            proto::auth::v1::auth_service_server::SERVICE_NAME
        ),
        check(
            ready.audit.clone(),
            proto::audit::v1::audit_service_server::SERVICE_NAME
        ),
    );
    let all = auth == Check::Serving && audit == Check::Serving;
    let (code, status) = if all {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
    };
    let mut response = (
        code,
        Json(Readyz {
            status,
            auth,
            audit,
        }),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

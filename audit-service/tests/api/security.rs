//! The internal token gate, and what stays outside it.

use common::config::Secret;
use proto::audit::v1::ListAttemptsRequest;
use tokio_stream::StreamExt as _;
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::{v1, v1alpha};

use crate::helpers::{TestApp, TestDb, batch, failure};

const TOKEN: &str = "s3cret-internal-token";

async fn spawn(db: TestDb) -> TestApp {
    TestApp::spawn_with(db, |c| c.internal_token = Some(Secret::new(TOKEN))).await
}

async fn calls_without_the_right_token_are_unauthenticated(db: TestDb) {
    let app = spawn(db).await;

    for token in [
        None,
        Some("wrong"),
        Some("s3cret-internal-token-but-longer"),
    ] {
        let mut client = app.client_with_token(token).await;
        let listed = client
            .list_attempts(ListAttemptsRequest::default())
            .await
            .unwrap_err();
        let ingest = client
            .ingest(tokio_stream::iter(vec![batch(1, vec![failure("", "", 0)])]))
            .await
            .unwrap_err();

        assert_eq!(listed.code(), Code::Unauthenticated, "token {token:?}");
        assert_eq!(ingest.code(), Code::Unauthenticated, "token {token:?}");
    }
    // Nothing got in.
    assert!(
        app.list_all(ListAttemptsRequest::default())
            .await
            .is_empty()
    );
}

async fn calls_with_the_token_are_served(db: TestDb) {
    let app = spawn(db).await;

    // `client()` presents the configured token.
    app.ingest_ok(vec![failure("10.0.0.1", "a@x.io", 0)]).await;

    assert_eq!(app.list_all(ListAttemptsRequest::default()).await.len(), 1);
}

async fn health_answers_serving_without_a_token(db: TestDb) {
    let app = spawn(db).await;
    let mut health = HealthClient::new(app.channel().await);

    for service in ["", "audit.v1.AuditService"] {
        let reply = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .unwrap()
            .into_inner();

        assert_eq!(
            reply.status(),
            ServingStatus::Serving,
            "service {service:?}"
        );
    }
}

async fn reflection_lists_the_services_without_a_token(db: TestDb) {
    let app = spawn(db).await;

    let mut v1_client =
        v1::server_reflection_client::ServerReflectionClient::new(app.channel().await);
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut replies = v1_client
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.next().await.unwrap().unwrap();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        reply.message_response
    else {
        panic!("unexpected reply {reply:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();

    let mut alpha_client =
        v1alpha::server_reflection_client::ServerReflectionClient::new(app.channel().await);
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let alpha = alpha_client
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner()
        .next()
        .await
        .unwrap();

    for expected in ["audit.v1.AuditService", "grpc.health.v1.Health"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    assert!(alpha.is_ok(), "{alpha:?}");
}

on_every_backend!(
    calls_without_the_right_token_are_unauthenticated,
    calls_with_the_token_are_served,
    health_answers_serving_without_a_token,
    reflection_lists_the_services_without_a_token,
);

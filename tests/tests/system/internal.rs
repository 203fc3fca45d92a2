//! Internal gRPC from outside the gateway: refused without the shared
//! secret, and over TLS with client certificates when required.

use proto::{
    audit::v1::{ListAttemptsRequest, audit_service_client::AuditServiceClient},
    auth::v1::{GetJwksRequest, auth_service_client::AuthServiceClient},
};
use serde_json::json;
use system_tests::{Backend, TestSystem};

on_every_backend!(
    internal_grpc_requires_the_internal_token,
    internal_grpc_can_require_tls_with_client_certificates,
);

const LOGIN: &str = "/api/accounts/login/";
const LOGS: &str = "/api/accounts/logs/login/attemps/";

async fn internal_grpc_requires_the_internal_token(backend: Backend) {
    let token = "internal-secret-123";
    let Some(sys) = TestSystem::start_with(backend, |auth, gw| {
        auth.internal_token = Some(common::config::Secret::new(token));
        gw.internal_token = Some(common::config::Secret::new(token));
    })
    .await
    else {
        return;
    };
    // The gateway presents it, so the public API works.
    sys.active_user("jane", "jane@example.com", "jane-pass-12")
        .await;

    let channel = tonic::transport::Endpoint::from_shared(sys.auth_url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let call = |auth: Option<String>| {
        let mut client = AuthServiceClient::new(channel.clone());
        async move {
            let mut req = tonic::Request::new(GetJwksRequest {});
            if let Some(v) = auth {
                req.metadata_mut()
                    .insert("authorization", v.parse().unwrap());
            }
            client.get_jwks(req).await
        }
    };
    let missing = call(None).await.unwrap_err();
    assert_eq!(missing.code(), tonic::Code::Unauthenticated);
    let wrong = call(Some("Bearer internal-secret-124".into()))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
    assert!(call(Some(format!("Bearer {token}"))).await.is_ok());

    // Health checks stay open for orchestrators.
    let health = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    sys.shutdown().await;
}

/// A throw-away CA, a server certificate for 127.0.0.1 and a client
/// certificate, made with the `openssl` command line.
fn make_certificates(dir: &std::path::Path) {
    let script = r#"
set -e
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout ca.key -out ca.crt -days 2 -subj /CN=test-ca 2>/dev/null
for who in server client; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout $who.key -out $who.csr -subj /CN=$who 2>/dev/null
done
printf 'basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' > server.ext
printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n' > client.ext
for who in server client; do
  openssl x509 -req -in $who.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
    -out $who.crt -days 2 -extfile $who.ext 2>/dev/null
done
"#;
    let status = std::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success(), "openssl failed");
}

/// Mutual TLS on every internal hop: gateway → auth-service, gateway →
/// audit-service and auth-service's outbox forwarder → audit-service.
async fn internal_grpc_can_require_tls_with_client_certificates(backend: Backend) {
    let certs = tempfile::tempdir().unwrap();
    make_certificates(certs.path());
    let path = |name: &str| certs.path().join(name);
    let server_tls = common::tls::ServerTls {
        cert: path("server.crt"),
        key: path("server.key"),
        client_ca: Some(path("ca.crt")),
    };
    let client_tls = common::tls::ClientTls {
        ca: Some(path("ca.crt")),
        identity: Some((path("client.crt"), path("client.key"))),
    };
    let Some(sys) = TestSystem::start_with_audit(
        backend,
        |audit| audit.tls = Some(server_tls.clone()),
        |auth, gw| {
            auth.tls = Some(server_tls.clone());
            auth.internal_tls = client_tls.clone();
            gw.internal_tls = client_tls.clone();
        },
    )
    .await
    else {
        return;
    };
    assert!(sys.auth_url.starts_with("https://"));
    assert!(sys.auth_config.audit_grpc_url.starts_with("https://"));
    // The gateway speaks mutual TLS to auth-service: the whole flow works.
    sys.active_user("pia", "pia@example.com", "pia-pass-123")
        .await;
    sys.login("pia", "pia-pass-123").await;
    let (status, _) = sys
        .post_json(
            LOGIN,
            json!({"username": "pia", "password": "wrong-pass-123"}),
        )
        .await;
    assert_eq!(status, 401);
    // The forwarder delivers both attempts over mutual TLS to audit-service.
    let attempts = sys.wait_for_attempts(2).await;
    let pia = |successful: bool| {
        attempts.iter().any(|r| {
            r.attempt
                .as_ref()
                .is_some_and(|a| a.identifier == "pia" && a.successful == successful)
        })
    };
    assert!(pia(true) && pia(false), "{attempts:?}");
    // The gateway reads the log from audit-service over mutual TLS too.
    let admin = sys.admin_token().await;
    let (status, logs) = sys.get(LOGS, Some(&admin)).await;
    assert_eq!(status, 200, "{logs}");
    assert!(!logs["results"].as_array().unwrap().is_empty(), "{logs}");

    let addr = sys.auth_url.trim_start_matches("https://").to_owned();
    let jwks = |endpoint: tonic::transport::Endpoint| async move {
        let channel = endpoint.connect().await?;
        AuthServiceClient::new(channel)
            .get_jwks(GetJwksRequest {})
            .await
            .map_err(anyhow::Error::from)?;
        anyhow::Ok(())
    };
    let ca = tonic::transport::Certificate::from_pem(std::fs::read(path("ca.crt")).unwrap());
    // Plain text is refused.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap();
    assert!(jwks(plain).await.is_err());
    // TLS without a client certificate is refused.
    let anonymous = tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tonic::transport::ClientTlsConfig::new().ca_certificate(ca.clone()))
        .unwrap();
    assert!(jwks(anonymous).await.is_err());
    // With one it is accepted.
    let identity = tonic::transport::Identity::from_pem(
        std::fs::read(path("client.crt")).unwrap(),
        std::fs::read(path("client.key")).unwrap(),
    );
    let mutual = tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(ca.clone())
                .identity(identity),
        )
        .unwrap();
    jwks(mutual).await.unwrap();

    // audit-service refuses plain text and clients without a certificate.
    let audit_addr = sys.audit_url().trim_start_matches("https://").to_owned();
    let list = |endpoint: tonic::transport::Endpoint| async move {
        let channel = endpoint.connect().await?;
        AuditServiceClient::new(channel)
            .list_attempts(ListAttemptsRequest {
                limit: 1,
                ..Default::default()
            })
            .await
            .map_err(anyhow::Error::from)?;
        anyhow::Ok(())
    };
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{audit_addr}")).unwrap();
    assert!(list(plain).await.is_err());
    let anonymous = tonic::transport::Endpoint::from_shared(format!("https://{audit_addr}"))
        .unwrap()
        .tls_config(tonic::transport::ClientTlsConfig::new().ca_certificate(ca.clone()))
        .unwrap();
    assert!(list(anonymous).await.is_err());
    sys.shutdown().await;
}

//! Test support: the real gateway on a free port, in front of fake
//! auth-service and audit-service gRPC servers that record every call (with
//! its metadata) and answer whatever the test tells them to.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::{
    SigningKey,
    pkcs8::{EncodePrivateKey, spki::der::pem::LineEnding},
};
use gateway::{Application, Config};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use proto::{
    audit::v1::{
        CountAttemptsRequest, CountAttemptsResponse, IngestAck, IngestBatch,
        ListAdminEventsRequest, ListAdminEventsResponse, ListAttemptsRequest, ListAttemptsResponse,
        audit_service_server::{AuditService, AuditServiceServer},
    },
    auth::v1::{
        ChangePasswordRequest, GetJwksRequest, GetJwksResponse, IntrospectTokenRequest,
        IntrospectTokenResponse, Jwk, LoginRequest, RefreshRequest, RegisterRequest,
        RegisterResponse, RequestPasswordResetRequest, RequestPasswordResetResponse,
        RequestVerificationCodeRequest, RequestVerificationCodeResponse, ResetOutcome,
        ResetPasswordRequest, ResetPasswordResponse, TokenPair, VerifyCodeRequest,
        VerifyCodeResponse, VerifyOutcome,
        auth_service_server::{AuthService, AuthServiceServer},
    },
};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status, metadata::MetadataMap};

type Reply<Req, Resp> = Arc<dyn Fn(&Req) -> Result<Resp, Status> + Send + Sync>;

/// One fake RPC: records calls, answers with a replaceable closure.
pub struct Rpc<Req, Resp> {
    calls: Mutex<Vec<(Req, MetadataMap)>>,
    reply: Mutex<Reply<Req, Resp>>,
}

impl<Req: Clone, Resp> Rpc<Req, Resp> {
    fn new(reply: impl Fn(&Req) -> Result<Resp, Status> + Send + Sync + 'static) -> Self {
        Self {
            calls: Mutex::new(Vec::new()),
            reply: Mutex::new(Arc::new(reply)),
        }
    }

    /// Answers future calls with `reply`.
    pub fn reply_with(&self, reply: impl Fn(&Req) -> Result<Resp, Status> + Send + Sync + 'static) {
        *self.reply.lock().unwrap() = Arc::new(reply);
    }

    /// Every call so far: the message and its metadata.
    pub fn calls(&self) -> Vec<(Req, MetadataMap)> {
        self.calls.lock().unwrap().clone()
    }

    /// The only call so far (fails the test otherwise).
    pub fn only_call(&self) -> (Req, MetadataMap) {
        let calls = self.calls();
        assert_eq!(calls.len(), 1, "expected exactly one call");
        calls.into_iter().next().unwrap()
    }

    fn handle(&self, request: Request<Req>) -> Result<Response<Resp>, Status> {
        let (metadata, _, message) = request.into_parts();
        self.calls.lock().unwrap().push((message.clone(), metadata));
        let reply = self.reply.lock().unwrap().clone();
        reply(&message).map(Response::new)
    }
}

/// A fake auth-service. By default: registration echoes, codes activate,
/// login succeeds only for password `right-password`, refresh rotates,
/// password changes issue a pair, resets succeed, and the JWK set holds
/// the test key.
pub struct FakeAuth {
    pub register: Rpc<RegisterRequest, RegisterResponse>,
    pub request_code: Rpc<RequestVerificationCodeRequest, RequestVerificationCodeResponse>,
    pub verify: Rpc<VerifyCodeRequest, VerifyCodeResponse>,
    pub login: Rpc<LoginRequest, TokenPair>,
    pub refresh: Rpc<RefreshRequest, TokenPair>,
    pub change_password: Rpc<ChangePasswordRequest, TokenPair>,
    pub request_reset: Rpc<RequestPasswordResetRequest, RequestPasswordResetResponse>,
    pub reset: Rpc<ResetPasswordRequest, ResetPasswordResponse>,
    pub jwks: Rpc<GetJwksRequest, GetJwksResponse>,
}

impl FakeAuth {
    fn new(jwk: Jwk) -> Self {
        Self {
            register: Rpc::new(|r: &RegisterRequest| {
                Ok(RegisterResponse {
                    username: r.username.clone(),
                    email: r.email.clone(),
                })
            }),
            request_code: Rpc::new(|_| Ok(RequestVerificationCodeResponse {})),
            verify: Rpc::new(|_| {
                Ok(VerifyCodeResponse {
                    outcome: VerifyOutcome::Activated.into(),
                })
            }),
            login: Rpc::new(|r: &LoginRequest| {
                if r.malformed_fields.is_empty() && r.password == "right-password" {
                    Ok(TokenPair {
                        access: "the-access".into(),
                        refresh: "the-refresh".into(),
                    })
                } else {
                    Err(Status::unauthenticated("no active account"))
                }
            }),
            refresh: Rpc::new(|_| {
                Ok(TokenPair {
                    access: "new-access".into(),
                    refresh: "new-refresh".into(),
                })
            }),
            change_password: Rpc::new(|_| {
                Ok(TokenPair {
                    access: "changed-access".into(),
                    refresh: "changed-refresh".into(),
                })
            }),
            request_reset: Rpc::new(|_| Ok(RequestPasswordResetResponse {})),
            reset: Rpc::new(|_| {
                Ok(ResetPasswordResponse {
                    outcome: ResetOutcome::PasswordReset.into(),
                })
            }),
            jwks: Rpc::new(move |_| {
                Ok(GetJwksResponse {
                    signing_kid: jwk.kid.clone(),
                    keys: vec![jwk.clone()],
                })
            }),
        }
    }
}

#[tonic::async_trait]
impl AuthService for FakeAuth {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        self.register.handle(request)
    }

    async fn request_verification_code(
        &self,
        request: Request<RequestVerificationCodeRequest>,
    ) -> Result<Response<RequestVerificationCodeResponse>, Status> {
        self.request_code.handle(request)
    }

    async fn verify_code(
        &self,
        request: Request<VerifyCodeRequest>,
    ) -> Result<Response<VerifyCodeResponse>, Status> {
        self.verify.handle(request)
    }

    async fn login(&self, request: Request<LoginRequest>) -> Result<Response<TokenPair>, Status> {
        self.login.handle(request)
    }

    async fn refresh(
        &self,
        request: Request<RefreshRequest>,
    ) -> Result<Response<TokenPair>, Status> {
        self.refresh.handle(request)
    }

    async fn introspect_token(
        &self,
        _: Request<IntrospectTokenRequest>,
    ) -> Result<Response<IntrospectTokenResponse>, Status> {
        Err(Status::unimplemented("the gateway verifies locally"))
    }

    async fn logout(
        &self,
        _: Request<proto::auth::v1::LogoutRequest>,
    ) -> Result<Response<proto::auth::v1::LogoutResponse>, Status> {
        Err(Status::unimplemented("covered by the system tests"))
    }

    async fn logout_all(
        &self,
        _: Request<proto::auth::v1::LogoutAllRequest>,
    ) -> Result<Response<proto::auth::v1::LogoutAllResponse>, Status> {
        Err(Status::unimplemented("covered by the system tests"))
    }

    async fn change_password(
        &self,
        request: Request<ChangePasswordRequest>,
    ) -> Result<Response<TokenPair>, Status> {
        self.change_password.handle(request)
    }

    async fn request_password_reset(
        &self,
        request: Request<RequestPasswordResetRequest>,
    ) -> Result<Response<RequestPasswordResetResponse>, Status> {
        self.request_reset.handle(request)
    }

    async fn reset_password(
        &self,
        request: Request<ResetPasswordRequest>,
    ) -> Result<Response<ResetPasswordResponse>, Status> {
        self.reset.handle(request)
    }

    async fn get_jwks(
        &self,
        request: Request<GetJwksRequest>,
    ) -> Result<Response<GetJwksResponse>, Status> {
        self.jwks.handle(request)
    }
}

/// A fake audit-service: `ListAttempts` and `ListAdminEvents` answer an
/// empty last page by default, `CountAttempts` no buckets.
pub struct FakeAudit {
    pub list: Rpc<ListAttemptsRequest, ListAttemptsResponse>,
    pub events: Rpc<ListAdminEventsRequest, ListAdminEventsResponse>,
    pub count: Rpc<CountAttemptsRequest, CountAttemptsResponse>,
}

#[tonic::async_trait]
impl AuditService for FakeAudit {
    type IngestStream =
        std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<IngestAck, Status>> + Send>>;

    async fn ingest(
        &self,
        _: Request<tonic::Streaming<IngestBatch>>,
    ) -> Result<Response<Self::IngestStream>, Status> {
        Err(Status::unimplemented("not used by the gateway"))
    }

    async fn list_attempts(
        &self,
        request: Request<ListAttemptsRequest>,
    ) -> Result<Response<ListAttemptsResponse>, Status> {
        self.list.handle(request)
    }

    async fn list_admin_events(
        &self,
        request: Request<ListAdminEventsRequest>,
    ) -> Result<Response<ListAdminEventsResponse>, Status> {
        self.events.handle(request)
    }

    async fn count_attempts(
        &self,
        request: Request<CountAttemptsRequest>,
    ) -> Result<Response<CountAttemptsResponse>, Status> {
        self.count.handle(request)
    }

    type TailStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<proto::audit::v1::TailEvent, Status>> + Send>,
    >;

    async fn tail(
        &self,
        _: Request<proto::audit::v1::TailRequest>,
    ) -> Result<Response<Self::TailStream>, Status> {
        // An empty tail: the stream's contents are tested end to end; the
        // gateway's tests only look at the response around it.
        Ok(Response::new(Box::pin(tokio_stream::empty())))
    }
}

/// An Ed25519 signing key with its published JWK.
pub struct TestKey {
    pub kid: String,
    pub jwk: Jwk,
    /// The raw public key (for the HS256 key-confusion attack).
    pub public: [u8; 32],
    encoding: EncodingKey,
}

impl TestKey {
    /// A fresh random key called `kid`.
    pub fn generate(kid: &str) -> Self {
        let signing = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
        let pem = signing.to_pkcs8_pem(LineEnding::LF).unwrap();
        let encoding = EncodingKey::from_ed_pem(pem.as_bytes()).unwrap();
        let public = signing.verifying_key().to_bytes();
        let jwk = Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: URL_SAFE_NO_PAD.encode(public),
            kid: kid.into(),
            alg: "EdDSA".into(),
            r#use: "sig".into(),
            ..Jwk::default()
        };
        Self {
            kid: kid.into(),
            jwk,
            public,
            encoding,
        }
    }

    /// `claims` signed with this key, `kid` in the header.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }

    /// The private key, for tokens built by hand.
    pub fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }

    /// A valid access token for user 7 (admin or not).
    pub fn access_token(&self, is_staff: bool) -> String {
        self.sign(&claims("access", is_staff))
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Claims as auth-service issues them, valid for five minutes.
pub fn claims(token_type: &str, is_staff: bool) -> Value {
    json!({
        "token_type": token_type,
        "exp": now() + 300,
        "iat": now(),
        "jti": uuid::Uuid::new_v4().to_string(),
        "user_id": 7,
        "iss": "auth-service",
        "is_staff": is_staff,
        "username": "admin",
    })
}

/// A running gateway and its fake backends.
pub struct TestApp {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub auth: Arc<FakeAuth>,
    pub audit: Arc<FakeAudit>,
    pub key: TestKey,
}

/// Serves `server` on a free loopback port; returns its URL.
async fn serve_grpc(router: tonic::transport::server::Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(router.serve_with_incoming(TcpListenerStream::new(listener)));
    url
}

/// A gateway with default settings in front of fresh fakes.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// A gateway whose configuration `configure` may adjust (the backend URLs
/// are already set to the fakes).
pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    let key = TestKey::generate("test-key-1");
    let auth = Arc::new(FakeAuth::new(key.jwk.clone()));
    let audit = Arc::new(FakeAudit {
        list: Rpc::new(|_| Ok(ListAttemptsResponse::default())),
        events: Rpc::new(|_| Ok(ListAdminEventsResponse::default())),
        count: Rpc::new(|_| Ok(CountAttemptsResponse::default())),
    });
    let auth_url = serve_grpc(
        tonic::transport::Server::builder().add_service(AuthServiceServer::from_arc(auth.clone())),
    )
    .await;
    let audit_url = serve_grpc(
        tonic::transport::Server::builder()
            .add_service(AuditServiceServer::from_arc(audit.clone())),
    )
    .await;

    let mut config = Config::for_tests(auth_url, audit_url);
    configure(&mut config);
    let app = Application::build(config).await.unwrap();
    let addr = app.local_addr();
    tokio::spawn(app.run_until(std::future::pending()));

    TestApp {
        addr,
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
        auth,
        audit,
        key,
    }
}

/// A URL nothing listens on (a port we bound and released).
pub async fn dead_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// POSTs `body` with the given Content-Type (none when `None`).
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let mut request = self.http.post(self.url(path)).body(body);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        request.send().await.unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    /// GETs `path` with `Authorization: Bearer <token>`.
    pub async fn get_authorized(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }
}

/// The status, headers and JSON body of a response.
pub async fn parts(response: reqwest::Response) -> (u16, reqwest::header::HeaderMap, Value) {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("response is not JSON ({e}): {text:?}"));
    (status, headers, body)
}

/// A metadata value as text.
pub fn md<'a>(metadata: &'a MetadataMap, key: &str) -> Option<&'a str> {
    metadata.get(key).map(|v| v.to_str().unwrap())
}

/// A multipart/form-data body with text fields, and its Content-Type.
pub fn multipart(fields: &[(&str, &str)]) -> (String, Vec<u8>) {
    let boundary = "----gatewaytestboundary";
    let mut body = String::new();
    for (name, value) in fields {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    (
        format!("multipart/form-data; boundary={boundary}"),
        body.into_bytes(),
    )
}

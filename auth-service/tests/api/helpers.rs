//! Two ways into auth-service: [`TestApp`], the real binary's application
//! served on loopback and called over gRPC, and [`Rules`], the use cases
//! over a real store, called at whatever instant a test names.

use std::sync::Arc;

use auth_service::{
    Config,
    api::AuthApi,
    context::ClientContext,
    error::Error,
    hasher::PasswordHasher,
    mail::Mailer,
    store::{AuthStore, NewUser, OutboxKind, PgStore, SqliteStore},
    throttle::{BruteForcePolicy, RateLimits},
    tokens::{TokenPolicy, TokenService},
    users::Actor,
};
use proto::auth::v1::{
    ChangePasswordRequest, LoginRequest, RequestPasswordResetRequest, ResetOutcome,
    ResetPasswordRequest, TokenPair, auth_service_client::AuthServiceClient,
};
use tokio::sync::{Notify, oneshot};
use tonic::transport::Channel;

/// An instant far from the wall clock, so nothing here can pass by
/// accident of timing: every rule about time is exercised by naming times.
pub const T0: i64 = 1_900_000_000;

/// The use cases over a real store, with a clock the test holds.
pub struct Rules<S: AuthStore> {
    /// The API under test.
    pub api: AuthApi<S>,
    /// Its store, for what a test sets up directly.
    pub store: S,
    hasher: PasswordHasher,
    /// Where its mail is written (one `.eml` file per message).
    mail_dir: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Rules<SqliteStore> {
    /// On a fresh SQLite file.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("auth.db").display());
        let store = SqliteStore::connect(&url).await.unwrap();
        Self::over(store, dir).await
    }
}

impl Rules<PgStore> {
    /// On a fresh PostgreSQL database; `None` when `TEST_POSTGRES_URL` is
    /// unset (CI sets it, and then an unreachable server fails the test).
    pub async fn postgres() -> Option<Self> {
        let server = common::testing::server_url("TEST_POSTGRES_URL")?;
        let url = common::testing::fresh_postgres(&server).await;
        let store = PgStore::connect(&url).await.unwrap();
        Some(Self::over(store, tempfile::tempdir().unwrap()).await)
    }
}

impl<S: AuthStore> Rules<S> {
    async fn over(store: S, dir: tempfile::TempDir) -> Self {
        let policy = TokenPolicy {
            issuer: "auth-service".into(),
            access_ttl: std::time::Duration::from_secs(300),
            refresh_ttl: std::time::Duration::from_secs(86_400),
            key_reload_interval: std::time::Duration::from_secs(60),
            algorithm: auth_service::tokens::KeyAlgorithm::EdDsa,
            publish_delay: std::time::Duration::from_secs(600),
        };
        let tokens = TokenService::load(&store, &policy, T0).await.unwrap();
        let hasher = PasswordHasher::new(2).unwrap();
        let mail_dir = dir.path().join("mail");
        let mailer = Mailer::new(None, mail_dir.clone()).unwrap();
        let api = AuthApi::new(
            store.clone(),
            hasher.clone(),
            Arc::new(tokens),
            mailer,
            "Accounts <no-reply@example.com>".parse().unwrap(),
            Arc::new(Notify::new()),
        );
        Self {
            api,
            store,
            hasher,
            mail_dir,
            _dir: dir,
        }
    }

    /// The same, with these brute-force thresholds.
    pub fn with_policy(self, policy: BruteForcePolicy) -> Self {
        Self {
            api: self.api.with_limits(policy, Default::default()),
            ..self
        }
    }

    /// The same, with these thresholds and limits.
    pub fn with_limits(self, policy: BruteForcePolicy, limits: RateLimits) -> Self {
        Self {
            api: self.api.with_limits(policy, limits),
            ..self
        }
    }

    /// An account as registration leaves it: not verified, so inactive.
    pub async fn unverified_user(&self, username: &str, password: &str) -> i64 {
        let hash = self.hasher.hash(password.to_owned()).await.unwrap();
        let email = format!("{username}@example.com");
        self.store
            .create_user(NewUser {
                username,
                username_lower: &username.to_lowercase(),
                email: &email,
                email_lower: &email,
                password_hash: &hash,
                is_active: false,
                is_staff: false,
                now: T0,
            })
            .await
            .unwrap()
            .id
    }

    /// Where its mail is written.
    pub fn mail_dir(&self) -> &std::path::Path {
        &self.mail_dir
    }

    /// The messages mailed to `address` so far, oldest first. Mail is sent
    /// in the background, so this waits (up to 5 s) for `expected` of them.
    pub async fn mail_to(&self, address: &str, expected: usize) -> Vec<String> {
        let suffix = format!("_{address}.eml");
        for _ in 0..100 {
            let mut names: Vec<_> = std::fs::read_dir(&self.mail_dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.to_string_lossy().ends_with(&suffix))
                .collect();
            names.sort();
            let mail: Vec<String> = names
                .iter()
                .map(|p| std::fs::read_to_string(p).unwrap())
                .collect();
            // A file is created before its message is written into it.
            if mail.len() >= expected && mail.iter().all(|m| !m.is_empty()) {
                return mail;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("fewer than {expected} messages to {address}");
    }

    /// The attempts waiting in the outbox, oldest first.
    pub async fn outbox(&self) -> Vec<proto::audit::v1::Attempt> {
        use prost::Message as _;
        self.store
            .outbox_oldest(10_000, i64::MAX)
            .await
            .unwrap()
            .iter()
            .filter(|row| row.kind == OutboxKind::Attempt)
            .map(|row| proto::audit::v1::Attempt::decode(row.payload.as_slice()).unwrap())
            .collect()
    }

    /// The admin events waiting in the outbox, oldest first.
    pub async fn admin_events(&self) -> Vec<proto::audit::v1::AdminEvent> {
        use prost::Message as _;
        self.store
            .outbox_oldest(10_000, i64::MAX)
            .await
            .unwrap()
            .iter()
            .filter(|row| row.kind == OutboxKind::AdminEvent)
            .map(|row| proto::audit::v1::AdminEvent::decode(row.payload.as_slice()).unwrap())
            .collect()
    }

    /// A verified account.
    pub async fn active_user(&self, username: &str, password: &str) -> i64 {
        let hash = self.hasher.hash(password.to_owned()).await.unwrap();
        let email = format!("{username}@example.com");
        self.store
            .create_user(NewUser {
                username,
                username_lower: &username.to_lowercase(),
                email: &email,
                email_lower: &email,
                password_hash: &hash,
                is_active: true,
                is_staff: false,
                now: T0,
            })
            .await
            .unwrap()
            .id
    }

    /// A verified administrator (`is_staff`).
    pub async fn admin_user(&self, username: &str, password: &str) -> i64 {
        let hash = self.hasher.hash(password.to_owned()).await.unwrap();
        let email = format!("{username}@example.com");
        self.store
            .create_user(NewUser {
                username,
                username_lower: &username.to_lowercase(),
                email: &email,
                email_lower: &email,
                password_hash: &hash,
                is_active: true,
                is_staff: true,
                now: T0,
            })
            .await
            .unwrap()
            .id
    }

    /// The administrator `username` as an actor of user administration:
    /// logged in at `at` from a documentation address, its token
    /// authenticated as `auth.v1.AdminService` does.
    pub async fn actor(&self, username: &str, password: &str, at: i64) -> Actor {
        let pair = self
            .login("198.51.100.7", username, password, at)
            .await
            .unwrap();
        self.api
            .admin_actor(&pair.access, ctx("198.51.100.7"))
            .await
            .unwrap()
    }

    /// A login from client address `ip` at unix second `at`.
    pub async fn login(
        &self,
        ip: &str,
        username: &str,
        password: &str,
        at: i64,
    ) -> Result<TokenPair, Error> {
        let ctx = ClientContext {
            ip: ip.to_owned(),
            user_agent: None,
            request_id: "test".to_owned(),
        };
        let req = LoginRequest {
            username: username.to_owned(),
            password: password.to_owned(),
            ..Default::default()
        };
        let at = time::OffsetDateTime::from_unix_timestamp(at).unwrap();
        self.api.log_in(&ctx, req, at).await
    }

    /// A password change from `ip` at unix second `at`.
    pub async fn change(
        &self,
        ip: &str,
        access: &str,
        old: &str,
        new: &str,
        at: i64,
    ) -> Result<TokenPair, Error> {
        let req = ChangePasswordRequest {
            access: access.to_owned(),
            old_password: old.to_owned(),
            new_password: new.to_owned(),
            new_password2: None,
        };
        let at = time::OffsetDateTime::from_unix_timestamp(at).unwrap();
        self.api.change_own_password(&ctx(ip), req, at).await
    }

    /// A password reset request from `ip` at unix second `at`.
    pub async fn request_reset(&self, ip: &str, email: &str, at: i64) -> Result<(), Error> {
        let req = RequestPasswordResetRequest {
            email: email.to_owned(),
        };
        self.api.send_reset_code(&ctx(ip), req, at).await
    }

    /// A password reset with `code` from `ip` at unix second `at`.
    pub async fn reset(
        &self,
        ip: &str,
        email: &str,
        code: &str,
        new: &str,
        at: i64,
    ) -> Result<ResetOutcome, Error> {
        let req = ResetPasswordRequest {
            email: email.to_owned(),
            code: code.to_owned(),
            new_password: new.to_owned(),
            new_password2: None,
        };
        let at = time::OffsetDateTime::from_unix_timestamp(at).unwrap();
        self.api.reset_with_code(&ctx(ip), req, at).await
    }
}

/// The client context of a call from `ip`.
pub fn ctx(ip: &str) -> ClientContext {
    ClientContext {
        ip: ip.to_owned(),
        user_agent: None,
        request_id: "test".to_owned(),
    }
}

/// The 6-digit code in a mailed message.
pub fn code_in(mail: &str) -> String {
    let at = mail.find("code is: ").expect("a code in the mail") + "code is: ".len();
    mail[at..at + 6].to_owned()
}

/// How a login ended, for assertions.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Tokens issued.
    LoggedIn,
    /// The one answer every wrong credential gets.
    Refused,
    /// Throttled; seconds to wait.
    Wait(u64),
}

/// The [`Outcome`] of a login; panics on any other error.
pub fn outcome(result: Result<TokenPair, Error>) -> Outcome {
    match result {
        Ok(_) => Outcome::LoggedIn,
        Err(Error::BadCredentials) => Outcome::Refused,
        Err(Error::Throttled { retry_after }) => Outcome::Wait(retry_after),
        Err(other) => panic!("unexpected error: {other:?}"),
    }
}

/// auth-service as its binary runs it, on loopback, over a fresh SQLite
/// file; audit-service is not running (attempts wait in the outbox).
pub struct TestApp {
    /// A client of its gRPC API.
    pub client: AuthServiceClient<Channel>,
    /// The channel that client uses, for clients of its other services.
    pub channel: Channel,
    /// The configuration it was built with (for operator commands on its
    /// database).
    pub config: Config,
    stop: Option<oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl TestApp {
    /// Builds and serves it with `configure` applied to the test config.
    pub async fn spawn(configure: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("auth.db").display());
        // A port nothing listens on: the forwarder retries in the background.
        let mut config = Config::for_tests(&url, "http://127.0.0.1:9", dir.path().join("mail"));
        configure(&mut config);
        let app = auth_service::Application::build(config.clone())
            .await
            .unwrap();
        let addr = app.local_addr();
        let (stop, rx) = oneshot::channel::<()>();
        tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Self {
            client: AuthServiceClient::new(channel.clone()),
            channel,
            config,
            stop: Some(stop),
            _dir: dir,
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

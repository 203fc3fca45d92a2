//! Accounts created before names and passwords were normalised (issue #14):
//! the start-up data migration on a database migrated only up to 0008 and
//! seeded with rows as the old code wrote them (keys `to_lowercase()`,
//! hashes of the password as typed), then auth-service started on it as
//! its binary starts, and logins over real gRPC.

use argon2::PasswordHasher as _;
use base64::Engine as _;
use proto::auth::v1::{LoginRequest, auth_service_client::AuthServiceClient};
use tokio::sync::oneshot;
use tonic::{Code, Request};

/// The password `wide` registered, typed decomposed (as macOS input can).
const NFD_PASSWORD: &str = "cafe\u{301}-secret-42";
/// The same password typed composed.
const NFC_PASSWORD: &str = "caf\u{e9}-secret-42";

/// A legacy row: username, email, password (hashed raw, as before).
const LEGACY: [(&str, &str, &str); 6] = [
    ("admin", "admin@example.com", "admin-pass-1"),
    // Fullwidth: old key "ａｄｍｉｎ", new key "admin": collides with 1.
    ("ａｄｍｉｎ", "wide@example.com", NFD_PASSWORD),
    // Cyrillic а: a lookalike of 1's name.
    ("\u{430}dmin", "cyr@example.com", "cyr-pass-1"),
    ("carol", "carol@example.com", "carol-pass-1"),
    // A username that is another account's email (6's), created first.
    ("VIC@example.com", "mallory@example.com", "mallory-pass-1"),
    ("vic", "vic@example.com", "vic-pass-1"),
];

/// Runs migrations 0001-0008 on a fresh database of `backend` and inserts
/// [`LEGACY`] as the old code did; returns the URL.
pub(crate) async fn legacy_database(postgres: bool, dir: &std::path::Path) -> Option<String> {
    let url = if postgres {
        let server = common::testing::server_url("TEST_POSTGRES_URL")?;
        common::testing::fresh_postgres(&server).await
    } else {
        format!("sqlite://{}?mode=rwc", dir.join("auth.db").display())
    };
    let backend = if postgres { "postgres" } else { "sqlite" };
    let source = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    let migrator = sqlx::migrate::Migrator::new(source).await.unwrap();
    macro_rules! seed {
        ($pool:expr) => {{
            let pool = $pool;
            migrator.run_to(8, &pool).await.unwrap();
            for (i, (username, email, password)) in LEGACY.iter().enumerate() {
                let hash = argon2::Argon2::default()
                    .hash_password(password.as_bytes())
                    .unwrap()
                    .to_string();
                sqlx::query(
                    "INSERT INTO users (username, username_lower, email, email_lower, password_hash, is_active, is_staff, created_at)
                     VALUES ($1, $2, $3, $4, $5, TRUE, FALSE, $6)",
                )
                .bind(*username)
                .bind(username.to_lowercase())
                .bind(*email)
                .bind(email.to_lowercase())
                .bind(hash)
                .bind(1_700_000_000 + i as i64)
                .execute(&pool)
                .await
                .unwrap();
            }
            pool.close().await;
        }};
    }
    if postgres {
        seed!(sqlx::PgPool::connect(&url).await.unwrap());
    } else {
        seed!(sqlx::SqlitePool::connect(&url).await.unwrap());
    }
    Some(url.replace("?mode=rwc", ""))
}

/// auth-service started on `url`, and a client of it.
pub(crate) async fn serve(
    url: &str,
    dir: &std::path::Path,
) -> (
    AuthServiceClient<tonic::transport::Channel>,
    oneshot::Sender<()>,
) {
    let config = auth_service::Config::for_tests(url, "http://127.0.0.1:9", dir.join("mail"));
    let app = auth_service::Application::build(config).await.unwrap();
    let addr = app.local_addr();
    let (stop, rx) = oneshot::channel::<()>();
    tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    let client = AuthServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    (client, stop)
}

/// The `user_id` a login by `identifier` gets tokens for, or its status code.
pub(crate) async fn login_as(
    client: &mut AuthServiceClient<tonic::transport::Channel>,
    identifier: &str,
    password: &str,
) -> Result<i64, Code> {
    let mut req = Request::new(LoginRequest {
        username: identifier.to_owned(),
        password: password.to_owned(),
        ..Default::default()
    });
    req.metadata_mut()
        .insert("x-client-ip", "192.0.2.7".parse().unwrap());
    let pair = client.login(req).await.map_err(|s| s.code())?.into_inner();
    let payload = pair.access.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    Ok(claims["user_id"].as_i64().unwrap())
}

async fn legacy_accounts_migrate_and_collisions_are_reported(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = legacy_database(postgres, dir.path()).await else {
        return;
    };
    let (mut client, stop) = serve(&url, dir.path()).await;

    // Collisions are listed, the older account keeping the key, nothing
    // merged or dropped: 2 (fullwidth) and 3 (Cyrillic) collide with 1;
    // 5's username is 6's email, and 5 is older, so 6's email collides.
    let config = auth_service::Config::for_tests(&url, "http://127.0.0.1:9", dir.path().join("m"));
    let listed = auth_service::admin::name_collisions(&config).await.unwrap();
    let mut pairs: Vec<(i64, i64)> = listed.iter().map(|c| (c.user_id, c.holder_id)).collect();
    pairs.dedup();
    assert_eq!(pairs, [(2, 1), (3, 1), (6, 5)], "{listed:#?}");
    assert!(listed.iter().any(|c| c.user_id == 6 && c.kind == "email"));

    // A legacy hash is of the password as it was typed then (decomposed):
    // typed composed, before any rehash, it does not match.
    assert_eq!(
        login_as(&mut client, "wide@example.com", NFC_PASSWORD).await,
        Err(Code::Unauthenticated)
    );
    // Everyone still logs in by the name they always used.
    assert_eq!(login_as(&mut client, "admin", "admin-pass-1").await, Ok(1));
    assert_eq!(
        login_as(&mut client, "ａｄｍｉｎ", NFD_PASSWORD).await,
        Ok(2)
    );
    assert_eq!(
        login_as(&mut client, "\u{430}dmin", "cyr-pass-1").await,
        Ok(3)
    );
    assert_eq!(login_as(&mut client, "carol", "carol-pass-1").await, Ok(4));
    // An email is its account's first: the legacy username equal to it
    // no longer shadows it.
    assert_eq!(
        login_as(&mut client, "vic@example.com", "vic-pass-1").await,
        Ok(6)
    );
    assert_eq!(
        login_as(&mut client, "VIC@EXAMPLE.COM", "vic-pass-1").await,
        Ok(6)
    );
    assert_eq!(login_as(&mut client, "vic", "vic-pass-1").await, Ok(6));
    assert_eq!(
        login_as(&mut client, "mallory@example.com", "mallory-pass-1").await,
        Ok(5)
    );
    // Migrated keys are the new ones: fullwidth and upper case of a name
    // that did not collide find it.
    assert_eq!(
        login_as(&mut client, "ＣＡＲＯＬ", "carol-pass-1").await,
        Ok(4)
    );

    // The decomposed login above matched the legacy hash as typed and
    // rehashed it in NFKC: from then on either typing works.
    assert_eq!(
        login_as(&mut client, "wide@example.com", NFC_PASSWORD).await,
        Ok(2)
    );
    assert_eq!(
        login_as(&mut client, "wide@example.com", NFD_PASSWORD).await,
        Ok(2)
    );

    // A second start migrates nothing again and reports the same.
    let _ = stop.send(());
    let (mut client, stop) = serve(&url, dir.path()).await;
    let again = auth_service::admin::name_collisions(&config).await.unwrap();
    assert_eq!(again.len(), listed.len());
    assert_eq!(login_as(&mut client, "admin", "admin-pass-1").await, Ok(1));
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_accounts_migrate_and_collisions_are_reported_on_sqlite() {
    legacy_accounts_migrate_and_collisions_are_reported(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_accounts_migrate_and_collisions_are_reported_on_postgres() {
    legacy_accounts_migrate_and_collisions_are_reported(true).await;
}

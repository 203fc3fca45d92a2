//! Accounts imported from the Django service (issue #15): a row holding a
//! hash made by real Django's `make_password` (pbkdf2_sha256, its default)
//! logs in over real gRPC, and that first login replaces the hash with
//! argon2id of the NFKC form; a wrong password changes nothing.

use auth_service::{
    hasher::django::decoy_iterations,
    store::{AuthStore, PgStore, SqliteStore},
};
use tonic::Code;

use crate::identities::{legacy_database, login_as, serve};

/// Typed decomposed, as macOS input can: Django hashed these bytes.
const TYPED: &str = "cre\u{300}me-django-42";
/// The same password composed: not what Django hashed.
const COMPOSED: &str = "cr\u{e8}me-django-42";

/// `password` hashed by Django's default hasher, or `None` outside CI
/// when python3 with Django is missing (in CI that fails the test).
fn django_hash(password: &str) -> Option<String> {
    let script = "import sys\n\
        from django.conf import settings\n\
        settings.configure(PASSWORD_HASHERS=['django.contrib.auth.hashers.PBKDF2PasswordHasher'])\n\
        from django.contrib.auth.hashers import make_password\n\
        print(make_password(sys.argv[1]))";
    match std::process::Command::new("python3")
        .args(["-c", script, password])
        .output()
    {
        Ok(out) if out.status.success() => {
            Some(String::from_utf8(out.stdout).unwrap().trim().to_owned())
        }
        other => {
            assert!(
                !common::testing::in_ci(),
                "python3 with django is needed and CI=true (pip install django; .ci/run does): {other:?}"
            );
            eprintln!("note: python3 with django is missing; this test did not run");
            None
        }
    }
}

/// Runs `$body` with `$pool` connected to the database at `$url`.
macro_rules! on_pool {
    ($url:expr, $postgres:expr, |$pool:ident| $body:expr) => {
        if $postgres {
            let $pool = sqlx::PgPool::connect($url).await.unwrap();
            $body
        } else {
            let $pool = sqlx::SqlitePool::connect($url).await.unwrap();
            $body
        }
    };
}

async fn carol_row(url: &str, postgres: bool) -> (String, bool) {
    on_pool!(url, postgres, |pool| sqlx::query_as(
        "SELECT password_hash, password_nfkc FROM users WHERE username = 'carol'"
    )
    .fetch_one(&pool)
    .await
    .unwrap())
}

/// The login-time decoy the store's census of Django hashes asks for.
async fn decoy(url: &str, postgres: bool) -> Option<u32> {
    let census = if postgres {
        PgStore::connect(url)
            .await
            .unwrap()
            .django_hash_census()
            .await
    } else {
        SqliteStore::connect(url)
            .await
            .unwrap()
            .django_hash_census()
            .await
    };
    decoy_iterations(&census.unwrap())
}

async fn a_django_hash_logs_in_once_and_becomes_argon2id(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let Some(hash) = django_hash(TYPED) else {
        return;
    };
    assert!(hash.starts_with("pbkdf2_sha256$1000000$"), "{hash}");
    let Some(url) = legacy_database(postgres, dir.path()).await else {
        return;
    };
    // What the importer will do: carol (user 4) gets her Django hash.
    on_pool!(&url, postgres, |pool| {
        sqlx::query("UPDATE users SET password_hash = $1 WHERE username = 'carol'")
            .bind(&hash)
            .execute(&pool)
            .await
            .unwrap();
    });
    let (mut client, stop) = serve(&url, dir.path()).await;
    assert_eq!(carol_row(&url, postgres).await, (hash.clone(), false));
    // While it remains, every login pays a PBKDF2 run at its cost.
    assert_eq!(decoy(&url, postgres).await, Some(1_000_000));

    // Wrong passwords, including the composed form Django never saw,
    // fail and leave the Django hash in place.
    for wrong in ["carol-pass-1", COMPOSED, "cre\u{300}me-django-43", ""] {
        let code = if wrong.is_empty() {
            Code::InvalidArgument
        } else {
            Code::Unauthenticated
        };
        assert_eq!(login_as(&mut client, "carol", wrong).await, Err(code));
    }
    assert_eq!(carol_row(&url, postgres).await, (hash.clone(), false));

    // The first right login succeeds and stores argon2id of the NFKC form.
    assert_eq!(login_as(&mut client, "carol", TYPED).await, Ok(4));
    let (upgraded, nfkc) = carol_row(&url, postgres).await;
    assert!(
        upgraded.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{upgraded}"
    );
    assert!(nfkc);
    // No Django hash is left: logins cost one argon2id again.
    assert_eq!(decoy(&url, postgres).await, None);
    // Both typings now log in, with the same argon2id hash (no rehash).
    assert_eq!(login_as(&mut client, "carol", TYPED).await, Ok(4));
    assert_eq!(
        login_as(&mut client, "carol@example.com", COMPOSED).await,
        Ok(4)
    );
    assert_eq!(carol_row(&url, postgres).await, (upgraded, true));
    assert_eq!(
        login_as(&mut client, "carol", "carol-pass-1").await,
        Err(Code::Unauthenticated)
    );
    // Other accounts are untouched.
    assert_eq!(login_as(&mut client, "admin", "admin-pass-1").await, Ok(1));
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_django_hash_logs_in_once_and_becomes_argon2id_on_sqlite() {
    a_django_hash_logs_in_once_and_becomes_argon2id(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_django_hash_logs_in_once_and_becomes_argon2id_on_postgres() {
    a_django_hash_logs_in_once_and_becomes_argon2id(true).await;
}

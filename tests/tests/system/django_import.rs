//! Issue #15: `auth-service import-django`, the real binary, from a
//! database laid out as the Django service's (SQLite and PostgreSQL
//! flavours, hashes made by Django itself) into a running system (SQLite
//! and PostgreSQL; MariaDB as the log once): imported users log in through
//! the gateway with their old passwords (and are argon2id afterwards), the
//! imported log rows reach the admin listing through the outbox stream with
//! UTC times, mapped reasons, the original text and flag; a second run adds
//! nothing; a source with a value that cannot be mapped, hostile bytes
//! included, is refused naming it, and nothing is written.

use std::{process::Output, sync::Once, time::Duration};

use serde_json::Value;
use system_tests::{
    Backend, TestSystem,
    django::{Cell, DjangoDb, Flavour, at, django_hashes, text},
    processes::{build_binaries, command, output_within},
};

use crate::support::auth_count;

const LOGS: &str = "/api/accounts/logs/login/attemps/";

fn build() {
    static BUILT: Once = Once::new();
    BUILT.call_once(build_binaries);
}

/// Runs the real `auth-service` binary with `args` against `sys`'s auth
/// database.
fn auth_command(sys: &TestSystem, args: &[&str]) -> Output {
    build();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command("auth-service");
    cmd.current_dir(dir.path())
        .args(args)
        .env("AUTH_DATABASE_URL", sys.auth_config.database_url.expose())
        .env("RUST_LOG", "warn");
    output_within(&mut cmd, "", Duration::from_secs(120))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The passwords, and Django's hashes of them.
struct Passwords {
    hashes: Vec<String>,
}

const ALICE: &str = "alice-django-1";
const BOB: &str = "bob-django-2";
const CAROL: &str = "carol-django-3";
const DAVE: &str = "dave-django-4";
const ERIN: &str = "erin-django-5";
const HANK: &str = "hank-django-8";

impl Passwords {
    fn make() -> Option<Self> {
        let hashes = django_hashes(&[
            ("pbkdf2_sha256", ALICE),
            ("argon2", BOB),
            ("bcrypt_sha256", CAROL),
            ("scrypt", DAVE),
            ("pbkdf2_sha1", ERIN),
            ("pbkdf2_sha256", HANK),
        ])?;
        Some(Self { hashes })
    }

    fn of(&self, i: usize) -> Cell {
        text(&self.hashes[i])
    }
}

/// Local time `local` in Asia/Tehran with its offset that day (the
/// earlier reading for the repeated hour).
fn tehran(local: &str, offset: &str) -> Cell {
    at(local, offset)
}

/// An `accounts_user` row.
#[allow(clippy::too_many_arguments)]
fn user(
    id: i64,
    password: Cell,
    username: &str,
    email: &str,
    superuser: bool,
    staff: bool,
    active: bool,
    joined: Cell,
    activated: Cell,
) -> Vec<Cell> {
    vec![
        Cell::Int(id),
        password,
        Cell::Null,
        Cell::Int(superuser.into()),
        text(username),
        text(""),
        text(""),
        text(email),
        Cell::Int(staff.into()),
        Cell::Int(active.into()),
        joined,
        activated,
        Cell::Null,
        Cell::Int(0),
        Cell::Null,
    ]
}

/// An `accounts_loginlog` row.
#[allow(clippy::too_many_arguments)]
fn login(
    id: i64,
    email: &str,
    ip: &str,
    created: Cell,
    user_agent: Cell,
    reason: &str,
    successful: bool,
    suspicious: bool,
    user_id: Option<i64>,
) -> Vec<Cell> {
    vec![
        Cell::Int(id),
        text(email),
        text(ip),
        created,
        user_agent,
        text(reason),
        Cell::Int(successful.into()),
        Cell::Int(suspicious.into()),
        user_id.map_or(Cell::Null, Cell::Int),
    ]
}

/// Now minus an hour, as a Tehran local time (no DST since 2023: +03:30).
fn an_hour_ago_in_tehran() -> Cell {
    let now =
        time::OffsetDateTime::now_utc() - time::Duration::hours(1) + time::Duration::minutes(210);
    let local = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    at(&local, "+03:30")
}

/// The original's data: ten accounts covering every decision the importer
/// takes, and five log rows covering every reason, a repeated and a
/// skipped local hour, a row whose account is not imported and a 10 KB
/// User-Agent.
async fn fill(db: &DjangoDb, p: &Passwords) {
    let joined = || tehran("2020-02-01 09:00:00", "+03:30");
    for row in [
        // An administrator (staff and superuser).
        user(
            1,
            p.of(0),
            "alice",
            "alice@example.com",
            true,
            true,
            true,
            joined(),
            tehran("2020-02-01 09:05:00", "+03:30"),
        ),
        user(
            2,
            p.of(1),
            "bob",
            "bob@example.com",
            false,
            false,
            true,
            joined(),
            tehran("2020-02-02 10:00:00", "+03:30"),
        ),
        // Verified once, then made inactive: disabled.
        user(
            3,
            p.of(2),
            "carol",
            "carol@example.com",
            false,
            false,
            false,
            joined(),
            tehran("2020-02-03 10:00:00", "+03:30"),
        ),
        // Alice's email in other case: a collision, logs in by username.
        user(
            4,
            p.of(3),
            "dave",
            "ALICE@Example.com",
            false,
            false,
            true,
            joined(),
            Cell::Null,
        ),
        // Alice's username in other case: a collision, logs in by email.
        user(
            5,
            p.of(4),
            "Alice",
            "erin@example.com",
            false,
            false,
            true,
            joined(),
            Cell::Null,
        ),
        user(
            6,
            text("!unusable-since-2020"),
            "frank",
            "frank@example.com",
            false,
            false,
            true,
            joined(),
            Cell::Null,
        ),
        // Never verified, long ago: skipped.
        user(
            7,
            p.of(0),
            "gina",
            "gina@example.com",
            false,
            false,
            false,
            joined(),
            Cell::Null,
        ),
        // A superuser without is_staff: not an administrator here.
        user(
            8,
            p.of(5),
            "hank",
            "hank@example.com",
            true,
            false,
            true,
            joined(),
            Cell::Null,
        ),
        user(
            9,
            p.of(0),
            "ivan",
            "",
            false,
            false,
            true,
            joined(),
            Cell::Null,
        ),
        // Never verified, an hour ago: awaiting verification.
        user(
            10,
            p.of(0),
            "judy",
            "judy@example.com",
            false,
            false,
            false,
            an_hour_ago_in_tehran(),
            Cell::Null,
        ),
    ] {
        db.user(row).await;
    }
    for row in [
        // The repeated hour (summer time ended at midnight).
        login(
            1,
            "alice",
            "10.0.0.1",
            tehran("2021-09-21 23:30:00", "+04:30"),
            text("Mozilla/5.0"),
            "",
            true,
            false,
            Some(1),
        ),
        // The skipped hour (summer time began at midnight).
        login(
            2,
            "alice@example.com",
            "10.0.0.2",
            tehran("2021-03-22 00:30:00.250000", "+03:30"),
            text("curl/8"),
            "Wrong password",
            false,
            true,
            Some(1),
        ),
        login(
            3,
            "nobody@example.com",
            "2001:db8::1",
            tehran("2023-01-05 10:20:30", "+03:30"),
            text("python-requests/2.31"),
            "User Not Exists",
            false,
            false,
            None,
        ),
        login(
            4,
            "bob",
            "192.0.2.4",
            tehran("2022-06-01 12:00:00", "+04:30"),
            text("curl/8"),
            "User blocked for too many attempt",
            false,
            true,
            Some(2),
        ),
        // Gina is not imported: no user id.
        login(
            5,
            "gina",
            "192.0.2.5",
            tehran("2022-12-01 08:00:00", "+03:30"),
            text(&"U".repeat(10_240)),
            "Wrong password",
            false,
            false,
            Some(7),
        ),
    ] {
        db.login(row).await;
    }
}

/// Each imported row as the listing must show it: request id, UTC time,
/// reason, original text, suspicious, username.
/// `(request_id, created_at, reject_reason, original_reject_reason,
/// suspicious, username)` of one listed item.
type Listed = (
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static str,
    bool,
    Option<&'static str>,
);

const EXPECTED: [Listed; 5] = [
    (
        "django-loginlog-1",
        "2021-09-21T19:00:00Z",
        None,
        "",
        false,
        Some("alice"),
    ),
    (
        "django-loginlog-2",
        "2021-03-21T21:00:00.25Z",
        Some("bad_password"),
        "Wrong password",
        true,
        Some("alice"),
    ),
    (
        "django-loginlog-3",
        "2023-01-05T06:50:30Z",
        Some("unknown_user"),
        "User Not Exists",
        false,
        None,
    ),
    (
        "django-loginlog-4",
        "2022-06-01T07:30:00Z",
        Some("locked_out"),
        "User blocked for too many attempt",
        true,
        Some("bob"),
    ),
    (
        "django-loginlog-5",
        "2022-12-01T04:30:00Z",
        Some("bad_password"),
        "Wrong password",
        false,
        None,
    ),
];

/// Every item of the admin listing, page by page.
async fn listing(sys: &TestSystem, token: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut next = Some(format!("{LOGS}?limit=500"));
    while let Some(url) = next {
        let (status, body) = sys.get(&url, Some(token)).await;
        assert_eq!(status, 200, "{body}");
        items.extend(body["results"].as_array().unwrap().iter().cloned());
        next = body["next"].as_str().map(str::to_owned);
    }
    items
}

/// The stored password hash of `username`.
async fn hash_of(sys: &TestSystem, username: &str) -> String {
    let url = sys.auth_config.database_url.expose();
    let sql = "SELECT password_hash FROM users WHERE username = $1";
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query_scalar(sql)
            .bind(username)
            .fetch_one(&pool)
            .await
            .unwrap()
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query_scalar(sql)
            .bind(username)
            .fetch_one(&pool)
            .await
            .unwrap()
    }
}

async fn login_status(sys: &TestSystem, username: &str, password: &str) -> u16 {
    sys.post_json(
        "/api/accounts/login/",
        serde_json::json!({"username": username, "password": password}),
    )
    .await
    .0
}

/// The whole path, from `source` into a system on `target` (its log on
/// MariaDB when `mariadb`).
async fn import_and_use(target: Backend, source: Flavour, mariadb: bool) {
    let Some(passwords) = Passwords::make() else {
        return;
    };
    let mysql = if mariadb {
        let Some(server) = common::testing::server_url("TEST_MYSQL_URL") else {
            return;
        };
        Some(common::testing::fresh_mysql(&server).await)
    } else {
        None
    };
    let Some(sys) = TestSystem::start_with_audit(
        target,
        |audit| {
            if let Some(url) = mysql {
                audit.database_url = url;
            }
        },
        |_, _| {},
    )
    .await
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = DjangoDb::create(source, dir.path()).await else {
        return;
    };
    fill(&db, &passwords).await;

    let out = auth_command(&sys, &["import-django", &db.import_url()]);
    let report = stdout(&out);
    assert!(out.status.success(), "{report}{}", stderr(&out));
    assert!(
        report.contains("users: 10 read; 9 imported, 0 already there, 1 skipped"),
        "{report}"
    );
    assert!(report.contains("1 administrator, 1 disabled (verified, then made inactive), 1 awaiting verification, 1 with no usable password, 1 without an email"), "{report}");
    assert!(report.contains("1 superuser without is_staff"), "{report}");
    assert!(report.contains("name collisions: 2 accounts"), "{report}");
    assert!(
        report.contains("log rows: 5 read; 5 queued for audit-service, 0 already there"),
        "{report}"
    );
    assert!(report.contains("2 rows without a user id"), "{report}");
    assert!(
        report.contains("1 user agent cut to 512 characters"),
        "{report}"
    );
    if source == Flavour::Sqlite {
        // Naive local times: the two read by a rule are named.
        assert!(
            report.contains("times adjusted for daylight saving time: 2"),
            "{report}"
        );
        assert!(
            report
                .contains("accounts_loginlog id 1, created_at \"2021-09-21 23:30:00\": ambiguous"),
            "{report}"
        );
        assert!(
            report.contains(
                "accounts_loginlog id 2, created_at \"2021-03-22 00:30:00.250000\": nonexistent"
            ),
            "{report}"
        );
    } else {
        // Django's timestamptz columns hold instants: nothing to adjust.
        assert!(!report.contains("daylight saving"), "{report}");
    }
    let alice_hash = hash_of(&sys, "alice").await;
    assert!(alice_hash.starts_with("pbkdf2_sha256$"), "{alice_hash}");

    // The old passwords log in, each account by the names it kept.
    let alice = sys.login("alice", ALICE).await;
    assert!(hash_of(&sys, "alice").await.starts_with("$argon2id$"));
    if source == Flavour::Sqlite {
        sys.login("bob", BOB).await;
        assert!(hash_of(&sys, "bob").await.starts_with("$argon2id$"));
        sys.login("dave", DAVE).await;
        sys.login("erin@example.com", ERIN).await;
    }
    // The email is alice's (the older account kept it).
    sys.login("ALICE@example.com", ALICE).await;
    assert_eq!(login_status(&sys, "carol", CAROL).await, 401, "disabled");
    assert_eq!(login_status(&sys, "gina", ALICE).await, 401, "skipped");

    // The log rows arrive through the outbox stream.
    let token = alice["access"].as_str().unwrap();
    let mut imported = Vec::new();
    for _ in 0..200 {
        imported = listing(&sys, token)
            .await
            .into_iter()
            .filter(|i| {
                i["request_id"]
                    .as_str()
                    .unwrap()
                    .starts_with("django-loginlog-")
            })
            .collect();
        if imported.len() == EXPECTED.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    imported.sort_by_key(|i| i["request_id"].as_str().unwrap().to_owned());
    assert_eq!(imported.len(), EXPECTED.len(), "{imported:?}");
    let alice_id = auth_count(&sys, "SELECT id FROM users WHERE username = $1", "alice").await;
    for (item, (request_id, created, reason, original, suspicious, username)) in
        imported.iter().zip(EXPECTED)
    {
        assert_eq!(item["request_id"], request_id, "{item}");
        assert_eq!(item["created_at"], created, "{item}");
        assert_eq!(item["reject_reason"].as_str(), reason, "{item}");
        assert_eq!(item["original_reject_reason"], original, "{item}");
        assert_eq!(item["suspicious"], suspicious, "{item}");
        assert_eq!(item["username"].as_str(), username, "{item}");
    }
    assert_eq!(imported[0]["user"], alice_id);
    assert_eq!(imported[4]["user"], Value::Null, "gina is not here");
    assert_eq!(
        imported[4]["user_agent"].as_str().unwrap().len(),
        512,
        "cut as a live one is"
    );

    // A second run adds nothing and says so.
    let users = auth_count(&sys, "SELECT COUNT(*) FROM users WHERE username <> $1", "").await;
    let again = auth_command(&sys, &["import-django", &db.import_url()]);
    let report = stdout(&again);
    assert!(again.status.success(), "{report}{}", stderr(&again));
    assert!(report.contains("9 already there"), "{report}");
    assert!(
        report.contains("0 queued for audit-service, 5 already there"),
        "{report}"
    );
    assert!(report.contains("nothing new to import"), "{report}");
    assert_eq!(
        auth_count(&sys, "SELECT COUNT(*) FROM users WHERE username <> $1", "").await,
        users
    );
    // The outbox drains (the logins above may still be on their way: only
    // the imported rows were waited for), and the log holds each imported
    // row once.
    let mut pending = 0;
    for _ in 0..200 {
        pending = auth_count(
            &sys,
            "SELECT COUNT(*) FROM attempt_outbox WHERE event_id <> $1",
            "",
        )
        .await;
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(pending, 0, "the outbox did not drain");
    let logged = listing(&sys, token)
        .await
        .into_iter()
        .filter(|i| {
            i["request_id"]
                .as_str()
                .unwrap()
                .starts_with("django-loginlog-")
        })
        .count();
    assert_eq!(logged, EXPECTED.len());

    // The collisions are on record for the operator.
    let collisions = auth_command(&sys, &["name-collisions"]);
    let listed = stdout(&collisions);
    assert!(
        listed.contains("(dave <ALICE@Example.com>): its email collides"),
        "{listed}"
    );
    assert!(
        listed.contains("(Alice <erin@example.com>): its username collides"),
        "{listed}"
    );
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_sqlite_into_sqlite() {
    import_and_use(Backend::Sqlite, Flavour::Sqlite, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_postgres_into_postgres() {
    import_and_use(Backend::Postgres, Flavour::Postgres, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_postgres_into_sqlite_with_the_log_on_mariadb() {
    import_and_use(Backend::Sqlite, Flavour::Postgres, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_sqlite_into_postgres_with_the_log_on_mariadb() {
    import_and_use(Backend::Postgres, Flavour::Sqlite, true).await;
}

on_every_backend!(
    a_source_with_values_that_cannot_be_mapped_is_refused_whole_and_a_fixed_one_goes_on,
);

/// A hash in a Django format (it verifies nothing; nobody logs in here).
const SOME_HASH: &str = "pbkdf2_sha256$600000$c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGg=";

/// What the import wrote into `sys`'s auth database: accounts, mapped
/// Django ids, outbox rows and the log watermark.
async fn written(sys: &TestSystem) -> [i64; 4] {
    [
        auth_count(sys, "SELECT COUNT(*) FROM users WHERE username <> $1", "").await,
        auth_count(
            sys,
            "SELECT COUNT(*) FROM django_imported_users WHERE user_id IS NOT NULL OR $1 = ''",
            "",
        )
        .await,
        auth_count(
            sys,
            "SELECT COUNT(*) FROM attempt_outbox WHERE event_id <> $1",
            "",
        )
        .await,
        auth_count(
            sys,
            "SELECT last_id FROM django_import_progress WHERE name = $1",
            "accounts_loginlog",
        )
        .await,
    ]
}

/// Hostile and unmappable values in an SQLite source (NUL and invalid
/// UTF-8 in TEXT columns, an unknown hash format, an unknown reason, a
/// success with a reason, an IP that is none): the run exits 1 naming each
/// by table, id and field, and writes nothing. Once they are fixed in the
/// source it imports; rows the original adds later are brought by the next
/// run, which skips what is there, and an account made here meanwhile keeps
/// its name (the Django one sharing it is a collision). A bad option or URL
/// exits 2.
async fn a_source_with_values_that_cannot_be_mapped_is_refused_whole_and_a_fixed_one_goes_on(
    target: Backend,
) {
    let Some(sys) = TestSystem::start(target).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = DjangoDb::create(Flavour::Sqlite, dir.path()).await.unwrap();
    let joined = || text("2022-01-01 10:00:00");
    let hash = || text(SOME_HASH);
    db.user(user(
        1,
        hash(),
        "alice",
        "alice@example.com",
        false,
        true,
        true,
        joined(),
        Cell::Null,
    ))
    .await;
    db.user(user(
        2,
        hash(),
        "bo\0b",
        "bob@example.com",
        false,
        false,
        true,
        joined(),
        Cell::Null,
    ))
    .await;
    let mut carol = user(
        3,
        hash(),
        "carol",
        "",
        false,
        false,
        true,
        joined(),
        Cell::Null,
    );
    carol[7] = Cell::Bytes(b"c\xffrol@example.com".to_vec());
    db.user(carol).await;
    db.user(user(
        4,
        text("md5$salt$0123456789abcdef"),
        "dave",
        "dave@example.com",
        false,
        false,
        true,
        joined(),
        Cell::Null,
    ))
    .await;
    let when = || text("2022-01-02 10:00:00");
    let ua = || text("curl/8");
    db.login(login(
        1,
        "alice",
        "10.0.0.1",
        when(),
        ua(),
        "Bad luck",
        false,
        false,
        Some(1),
    ))
    .await;
    db.login(login(
        2,
        "alice",
        "10.0.0.1",
        when(),
        ua(),
        "Wrong password",
        true,
        false,
        Some(1),
    ))
    .await;
    db.login(login(
        3,
        "alice",
        "not-an-ip",
        when(),
        ua(),
        "Wrong password",
        false,
        false,
        Some(1),
    ))
    .await;
    db.login(login(
        4,
        "alice",
        "10.0.0.1",
        when(),
        text("curl\0/8"),
        "",
        true,
        false,
        Some(1),
    ))
    .await;
    let before = written(&sys).await;

    let out = auth_command(&sys, &["import-django", &db.import_url()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}{}", stdout(&out));
    assert!(
        err.contains("holds 7 values that cannot be imported; nothing was written"),
        "{err}"
    );
    for named in [
        "accounts_user id 2, username: contains a NUL character",
        "accounts_user id 3, email: is not valid UTF-8 (at byte 1)",
        "accounts_user id 4, password: is not a Django password hash (algorithm \"md5\" unknown)",
        "accounts_loginlog id 1, reject_reason: \"Bad luck\" is none of the original's reasons",
        "accounts_loginlog id 2, reject_reason: \"Wrong password\" on a successful attempt",
        "accounts_loginlog id 3, ip: \"not-an-ip\" is not an IP address",
        "accounts_loginlog id 4, user_agent: contains a NUL character",
    ] {
        assert!(err.contains(named), "{named}: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(written(&sys).await, before, "nothing was written");

    // Fixed in the source: everything goes in.
    db.execute(
        "UPDATE accounts_user SET username = 'bob' WHERE id = 2;
         UPDATE accounts_user SET email = 'carol@example.com' WHERE id = 3;
         UPDATE accounts_user SET password = '!' WHERE id = 4;
         UPDATE accounts_loginlog SET reject_reason = 'User Not Exists' WHERE id = 1;
         UPDATE accounts_loginlog SET successful = 0 WHERE id = 2;
         UPDATE accounts_loginlog SET ip = '10.0.0.3' WHERE id = 3;
         UPDATE accounts_loginlog SET user_agent = 'curl/8' WHERE id = 4;"
            .to_owned(),
    )
    .await;
    let out = auth_command(&sys, &["import-django", &db.import_url()]);
    let report = stdout(&out);
    assert!(out.status.success(), "{report}{}", stderr(&out));
    assert!(report.contains("4 imported, 0 already there"), "{report}");
    assert!(report.contains("4 queued for audit-service"), "{report}");
    assert_eq!(written(&sys).await[3], 4, "the watermark");

    // An account made here meanwhile keeps its name: the Django account
    // that shares it (in other case) is imported as a collision.
    auth_service::admin::create_admin(
        &sys.auth_config,
        "ERIN",
        "erin-here@example.com",
        "tiger-lamp-42-x",
    )
    .await
    .unwrap();
    // The original kept running: the next run brings only what is new.
    db.user(user(
        5,
        hash(),
        "erin",
        "erin@example.com",
        false,
        false,
        true,
        joined(),
        Cell::Null,
    ))
    .await;
    db.login(login(
        5,
        "erin",
        "10.0.0.5",
        when(),
        ua(),
        "",
        true,
        false,
        Some(5),
    ))
    .await;
    let out = auth_command(&sys, &["import-django", &db.import_url()]);
    let report = stdout(&out);
    assert!(out.status.success(), "{report}{}", stderr(&out));
    assert!(report.contains("1 imported, 4 already there"), "{report}");
    assert!(
        report.contains("1 queued for audit-service, 4 already there"),
        "{report}"
    );
    assert_eq!(written(&sys).await[3], 5);
    assert!(report.contains("name collisions: 1 account "), "{report}");
    let collisions = stdout(&auth_command(&sys, &["name-collisions"]));
    assert!(
        collisions.contains("(erin <erin@example.com>): its username collides with user")
            && collisions.contains("(ERIN <erin-here@example.com>)"),
        "{collisions}"
    );

    // Usage errors: exit 2, naming what to change.
    let zone = auth_command(
        &sys,
        &[
            "import-django",
            &db.import_url(),
            "--time-zone",
            "Mars/Olympus",
        ],
    );
    assert_eq!(zone.status.code(), Some(2), "{}", stderr(&zone));
    assert!(stderr(&zone).contains("--time-zone"), "{}", stderr(&zone));
    let scheme = auth_command(&sys, &["import-django", "mysql://root@127.0.0.1/django"]);
    assert_eq!(scheme.status.code(), Some(2), "{}", stderr(&scheme));
    assert!(
        stderr(&scheme).contains("sqlite:// or postgres://"),
        "{}",
        stderr(&scheme)
    );
    let missing = dir.path().join("missing.sqlite3");
    let absent = auth_command(
        &sys,
        &["import-django", &format!("sqlite://{}", missing.display())],
    );
    assert_eq!(absent.status.code(), Some(1), "{}", stderr(&absent));
    assert!(!missing.exists(), "the source is never created");
    sys.shutdown().await;
}

on_every_backend!(two_runs_released_at_once_import_everything_exactly_once);

/// The outcome of one run: its exit status and report.
fn run_lines(out: &Output) -> (bool, String) {
    (
        out.status.success(),
        format!("{}{}", stdout(out), stderr(out)),
    )
}

/// The number before `label` in `report` (`"12 imported"` → 12).
fn number_before(report: &str, label: &str) -> u64 {
    let at = report
        .find(label)
        .unwrap_or_else(|| panic!("{label}: {report}"));
    report[..at]
        .split_whitespace()
        .last()
        .and_then(|n| n.trim_matches(|c: char| !c.is_ascii_digit()).parse().ok())
        .unwrap_or_else(|| panic!("{label}: {report}"))
}

/// Two runs started at the same instant on the same source (an operator
/// starting it twice, a retried job) take turns batch by batch: between
/// them every account and log row is imported once, both finish cleanly,
/// and audit-service holds each row once.
async fn two_runs_released_at_once_import_everything_exactly_once(target: Backend) {
    const USERS: i64 = 1_200;
    const LOGINS: i64 = 1_300;
    let Some(sys) = TestSystem::start(target).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = DjangoDb::create(Flavour::Sqlite, dir.path()).await.unwrap();
    // Rows in bulk, by SQL: three batches of each.
    db.execute(format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {USERS})
         INSERT INTO accounts_user (id, password, is_superuser, username, first_name, last_name,
             email, is_staff, is_active, date_joined, verification_code)
         SELECT i, '{SOME_HASH}', 0, 'user' || i, '', '', 'user' || i || '@example.com', 0, 1,
             '2022-01-01 10:00:00', 0 FROM n;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {LOGINS})
         INSERT INTO accounts_loginlog (id, email, ip, created_at, user_agent, reject_reason,
             successful, suspicious, user_id)
         SELECT i, 'user' || i, '10.0.0.1', '2022-01-02 10:00:00', 'curl/8', 'Wrong password',
             0, 0, 1 + i % {USERS} FROM n;"
    ))
    .await;
    build();

    let url = db.import_url();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let runs: Vec<_> = (0..2)
        .map(|_| {
            let (barrier, url) = (barrier.clone(), url.clone());
            let database = sys.auth_config.database_url.expose().to_owned();
            std::thread::spawn(move || {
                let mut cmd = command("auth-service");
                cmd.args(["import-django", &url])
                    .env("AUTH_DATABASE_URL", database)
                    .env("RUST_LOG", "warn");
                barrier.wait();
                output_within(&mut cmd, "", Duration::from_secs(300))
            })
        })
        .collect();
    let outcomes: Vec<(bool, String)> = runs
        .into_iter()
        .map(|r| run_lines(&r.join().unwrap()))
        .collect();

    for (ok, report) in &outcomes {
        assert!(ok, "{report}");
    }
    let imported: u64 = outcomes
        .iter()
        .map(|(_, r)| number_before(r, " imported"))
        .sum();
    let queued: u64 = outcomes
        .iter()
        .map(|(_, r)| number_before(r, " queued for audit-service"))
        .sum();
    assert_eq!(imported, USERS as u64, "{outcomes:?}");
    assert_eq!(queued, LOGINS as u64, "{outcomes:?}");
    assert_eq!(written(&sys).await[..2], [USERS, USERS]);
    assert_eq!(written(&sys).await[3], LOGINS);

    // Each row reaches the log once.
    let mut imported_rows = 0;
    for _ in 0..300 {
        imported_rows = sys
            .all_attempts()
            .await
            .iter()
            .filter(|r| {
                r.attempt
                    .as_ref()
                    .unwrap()
                    .request_id
                    .starts_with("django-loginlog-")
            })
            .count();
        if imported_rows >= LOGINS as usize {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(imported_rows, LOGINS as usize);
    sys.shutdown().await;
}

//! The Django service's database, as `auth-service import-django` reads it:
//! its tables made by the fixtures in `tests/fixtures/django/` (SQLite and
//! PostgreSQL flavours of what its migrations create), rows inserted here
//! with bound values (so a test can store invalid UTF-8 or NUL in an
//! SQLite `TEXT` column, as a broken original might), and password hashes
//! made by Django's own `make_password` through python3 (`pip install
//! django argon2-cffi bcrypt`, which `.ci/run` does).

use std::path::Path;

use sqlx::{Connection, Executor};

/// Which engine the Django database is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// A file, as the Django service's default `db.sqlite3`.
    Sqlite,
    /// A fresh database on `TEST_POSTGRES_URL`.
    Postgres,
}

/// One column value of a fixture row.
#[derive(Debug, Clone)]
pub enum Cell {
    /// SQL NULL.
    Null,
    /// Text.
    Text(String),
    /// Raw bytes stored in a text column (SQLite keeps them as they are).
    Bytes(Vec<u8>),
    /// An integer or a boolean (0/1).
    Int(i64),
    /// A date and time as Django writes it: naive local text on SQLite;
    /// on PostgreSQL the same text with its offset (an instant, as Django
    /// stores it there through a connection in Asia/Tehran).
    Time {
        /// `YYYY-MM-DD HH:MM:SS[.ffffff]`, local.
        local: String,
        /// Its offset there, e.g. `+04:30`.
        offset: String,
    },
}

/// `text` as a cell.
pub fn text(text: &str) -> Cell {
    Cell::Text(text.to_owned())
}

/// A local time with its offset as a cell.
pub fn at(local: &str, offset: &str) -> Cell {
    Cell::Time {
        local: local.to_owned(),
        offset: offset.to_owned(),
    }
}

/// A Django database with the original's tables, empty.
pub struct DjangoDb {
    /// Its URL, as `import-django` takes it.
    pub url: String,
    /// Which engine.
    pub flavour: Flavour,
}

const USER_COLUMNS: &str = "id, password, last_login, is_superuser, username, first_name, \
    last_name, email, is_staff, is_active, date_joined, activation_date, code_generation_date, \
    verification_code, login_block_until";
const LOGIN_COLUMNS: &str =
    "id, email, ip, created_at, user_agent, reject_reason, successful, suspicious, user_id";

impl DjangoDb {
    /// Creates the tables in a new SQLite file under `dir`, or in a fresh
    /// PostgreSQL database (`None` when `TEST_POSTGRES_URL` is unset
    /// outside CI).
    pub async fn create(flavour: Flavour, dir: &Path) -> Option<Self> {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/django");
        let (url, ddl) = match flavour {
            Flavour::Sqlite => (
                format!("sqlite://{}?mode=rwc", dir.join("django.sqlite3").display()),
                fixtures.join("sqlite.sql"),
            ),
            Flavour::Postgres => {
                let server = common::testing::server_url("TEST_POSTGRES_URL")?;
                (
                    common::testing::fresh_postgres(&server).await,
                    fixtures.join("postgres.sql"),
                )
            }
        };
        let ddl = std::fs::read_to_string(&ddl).unwrap();
        let db = Self { url, flavour };
        db.execute(ddl).await;
        Some(db)
    }

    /// The URL `import-django` is given (the SQLite file is not created).
    pub fn import_url(&self) -> String {
        self.url.replace("?mode=rwc", "")
    }

    /// Runs `sql` (several statements) on the database.
    pub async fn execute(&self, sql: String) {
        match self.flavour {
            Flavour::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                conn.execute(sqlx::AssertSqlSafe(sql)).await.unwrap();
            }
            Flavour::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
                conn.execute(sqlx::AssertSqlSafe(sql)).await.unwrap();
            }
        }
    }

    /// Inserts an `accounts_user` row: cells in [`USER_COLUMNS`] order.
    pub async fn user(&self, cells: Vec<Cell>) {
        self.insert("accounts_user", USER_COLUMNS, cells).await;
    }

    /// Inserts an `accounts_loginlog` row: cells in [`LOGIN_COLUMNS`] order.
    pub async fn login(&self, cells: Vec<Cell>) {
        self.insert("accounts_loginlog", LOGIN_COLUMNS, cells).await;
    }

    async fn insert(&self, table: &str, columns: &str, cells: Vec<Cell>) {
        let n = columns.split(',').count();
        assert_eq!(cells.len(), n, "{table}: {n} cells");
        let marks: Vec<String> = (1..=n)
            .map(|i| match (&cells[i - 1], self.flavour) {
                // Django's PostgreSQL types, from text.
                (Cell::Time { .. }, Flavour::Postgres) => format!("${i}::timestamptz"),
                (Cell::Text(_), Flavour::Postgres) if table == "accounts_loginlog" && i == 3 => {
                    format!("${i}::inet")
                }
                (Cell::Int(_), Flavour::Postgres)
                    if matches!(
                        (table, i),
                        ("accounts_user", 4 | 9 | 10) | ("accounts_loginlog", 7 | 8)
                    ) =>
                {
                    format!("(${i})::int::boolean")
                }
                (Cell::Null, Flavour::Postgres) if table == "accounts_user" => {
                    // Typed NULLs for the nullable timestamps.
                    format!("${i}::timestamptz")
                }
                (Cell::Null, Flavour::Postgres) => format!("${i}::bigint"),
                // Stored as TEXT whatever the bytes, as a broken writer can.
                (Cell::Bytes(_), Flavour::Sqlite) => format!("CAST(${i} AS TEXT)"),
                _ => format!("${i}"),
            })
            .collect();
        let sql = format!(
            "INSERT INTO {table} ({columns}) VALUES ({})",
            marks.join(", ")
        );
        macro_rules! bind_all {
            ($conn:ty, $time:expr) => {{
                let mut conn = <$conn>::connect(&self.url).await.unwrap();
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                for cell in cells {
                    query = match cell {
                        Cell::Null => query.bind(None::<String>),
                        Cell::Text(t) => query.bind(t),
                        Cell::Bytes(b) => query.bind(b),
                        Cell::Int(i) => query.bind(i),
                        Cell::Time { local, offset } => query.bind($time(local, offset)),
                    };
                }
                query.execute(&mut conn).await.unwrap();
            }};
        }
        match self.flavour {
            Flavour::Sqlite => {
                bind_all!(sqlx::SqliteConnection, |local: String, _: String| local)
            }
            Flavour::Postgres => {
                bind_all!(sqlx::PgConnection, |local: String, offset: String| format!(
                    "{local}{offset}"
                ))
            }
        }
    }
}

/// Hashes made by Django's `make_password`, one per `(hasher, password)`
/// (`pbkdf2_sha256`, `pbkdf2_sha1`, `argon2`, `bcrypt_sha256`, `scrypt`),
/// or `None` outside CI when python3 with Django is missing (in CI that
/// fails the test).
pub fn django_hashes(pairs: &[(&str, &str)]) -> Option<Vec<String>> {
    let script = "import sys, json\n\
        from django.conf import settings\n\
        settings.configure(PASSWORD_HASHERS=[\n\
          'django.contrib.auth.hashers.PBKDF2PasswordHasher',\n\
          'django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher',\n\
          'django.contrib.auth.hashers.Argon2PasswordHasher',\n\
          'django.contrib.auth.hashers.BCryptSHA256PasswordHasher',\n\
          'django.contrib.auth.hashers.ScryptPasswordHasher'])\n\
        from django.contrib.auth.hashers import make_password\n\
        pairs = json.loads(sys.argv[1])\n\
        print(json.dumps([make_password(p, hasher=h) for h, p in pairs]))";
    let input = serde_json::to_string(pairs).unwrap();
    match std::process::Command::new("python3")
        .args(["-c", script, &input])
        .output()
    {
        Ok(out) if out.status.success() => Some(serde_json::from_slice(&out.stdout).unwrap()),
        other => {
            assert!(
                !common::testing::in_ci(),
                "python3 with django, argon2-cffi and bcrypt is needed and CI=true \
                 (pip install django argon2-cffi bcrypt; .ci/run does): {other:?}"
            );
            eprintln!("note: python3 with django is missing; this test did not run");
            None
        }
    }
}

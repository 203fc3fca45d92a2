//! Test support: fresh, isolated databases on the real servers CI provides.
//!
//! Tests that need PostgreSQL or MySQL read `TEST_POSTGRES_URL` /
//! `TEST_MYSQL_URL`. When the variable is set and the server is
//! unreachable, the test fails loudly. When it is unset, the test fails in
//! CI (`CI=true`, which `.ci/run` sets along with both URLs) and is skipped
//! elsewhere, with a note on stderr.

use sqlx::{Connection, Executor};

/// Whether this is a CI run (`CI=true` or `CI=1`), where every database
/// and tool a test needs must be there.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The server URL for `var`, or `None` (with a note on stderr) when unset
/// outside CI; in CI an unset one fails the test.
pub fn server_url(var: &str) -> Option<String> {
    let url = std::env::var(var).ok().filter(|v| !v.is_empty());
    if url.is_none() {
        assert!(!in_ci(), "{var} is not set and CI=true: .ci/run sets it");
        eprintln!("{var} is not set: skipping this backend (CI sets it)");
    }
    url
}

fn with_database(url: &str, db: &str) -> String {
    // Replace the path (the database name) and keep any query string.
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let root = base.rsplit_once('/').map_or(base, |(r, _)| r);
    match query {
        Some(q) => format!("{root}/{db}?{q}"),
        None => format!("{root}/{db}"),
    }
}

fn fresh_name() -> String {
    format!("test_{}", uuid::Uuid::new_v4().simple())
}

/// Creates an empty PostgreSQL database named `test_<uuid>` on the server
/// at `server_url` and returns its URL. Panics (failing the test) when the
/// server cannot be reached.
pub async fn fresh_postgres(server_url: &str) -> String {
    fresh_database::<sqlx::PgConnection>("PostgreSQL", server_url).await
}

/// Creates an empty MySQL/MariaDB database named `test_<uuid>` and returns
/// its URL. Panics when the server cannot be reached.
#[cfg(feature = "mysql")]
pub async fn fresh_mysql(server_url: &str) -> String {
    fresh_database::<sqlx::MySqlConnection>("MySQL", server_url).await
}

async fn fresh_database<C>(engine: &str, server_url: &str) -> String
where
    C: Connection,
    for<'c> &'c mut C: Executor<'c>,
{
    let mut conn = C::connect(server_url)
        .await
        .unwrap_or_else(|e| panic!("{engine} at {server_url} is unreachable: {e}"));
    let name = fresh_name();
    let ddl = format!("CREATE DATABASE {name}");
    conn.execute(sqlx::AssertSqlSafe(ddl))
        .await
        .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
    with_database(server_url, &name)
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_name_is_replaced_and_query_kept() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h/test?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
    }
}

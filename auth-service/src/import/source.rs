//! Reading the Django service's database, read-only, in one snapshot.
//!
//! Every column is read as bytes (SQLite `CAST(… AS BLOB)`, PostgreSQL
//! `convert_to(…::text, 'UTF8')`) and judged in Rust ([`super::rows`]), so
//! a value of the wrong type, invalid UTF-8 in an SQLite `TEXT` column or
//! a NUL is a refusal naming its row and field, never a driver error or a
//! silent conversion. Rows are read in pages by id, inside one read-only
//! transaction (PostgreSQL: `REPEATABLE READ`), so the check and the import
//! read the same rows even while the original keeps running.

use std::str::FromStr as _;

use anyhow::Context as _;
use sqlx::{
    Postgres, Sqlite, Transaction,
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqlitePoolOptions},
};

/// A raw column value: `None` for NULL.
pub type Bytes = Option<Vec<u8>>;

/// One `accounts_user` row, as read: each field the column of that name
/// (`None`: NULL), judged by [`super::rows::DjangoUser::parse`].
#[derive(Debug, Clone, Default)]
pub struct RawUser {
    pub id: i64,
    pub password: Bytes,
    pub username: Bytes,
    pub email: Bytes,
    pub is_superuser: Bytes,
    pub is_staff: Bytes,
    pub is_active: Bytes,
    pub date_joined: Bytes,
    pub activation_date: Bytes,
}

/// One `accounts_loginlog` row, as read: each field the column of that
/// name, judged by [`super::rows::DjangoLogin::parse`].
#[derive(Debug, Clone, Default)]
pub struct RawLogin {
    pub id: i64,
    pub email: Bytes,
    pub ip: Bytes,
    pub created_at: Bytes,
    pub user_agent: Bytes,
    pub reject_reason: Bytes,
    pub successful: Bytes,
    pub suspicious: Bytes,
    pub user_id: Bytes,
}

/// The Django database, with its snapshot open.
pub enum Source {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres {
        tx: Transaction<'static, Postgres>,
        /// How the columns whose type varies are read.
        columns: PgColumns,
    },
}

/// The expressions reading PostgreSQL's columns whose type Django chose
/// (datetimes, see [`pg_time`]; the IP, `inet` there and text elsewhere).
#[derive(Debug, Clone, Default)]
pub struct PgColumns {
    date_joined: String,
    activation_date: String,
    created_at: String,
    ip: &'static str,
}

/// A PostgreSQL datetime column as text: a `timestamp with time zone`
/// (what Django creates) is an instant, written in UTC with a `Z`; a
/// `timestamp without time zone` is a naive local time, written as is.
fn pg_time(column: &str, with_zone: bool) -> String {
    if with_zone {
        format!(
            "convert_to(to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US\"Z\"'), 'UTF8')"
        )
    } else {
        format!("convert_to(to_char({column}, 'YYYY-MM-DD HH24:MI:SS.US'), 'UTF8')")
    }
}

const SQLITE_USERS: &str = "SELECT id, CAST(password AS BLOB), CAST(username AS BLOB), \
    CAST(email AS BLOB), CAST(is_superuser AS BLOB), CAST(is_staff AS BLOB), \
    CAST(is_active AS BLOB), CAST(date_joined AS BLOB), CAST(activation_date AS BLOB) \
    FROM accounts_user WHERE id > ? ORDER BY id LIMIT ?";

const SQLITE_LOGINS: &str = "SELECT id, CAST(email AS BLOB), CAST(ip AS BLOB), \
    CAST(created_at AS BLOB), CAST(user_agent AS BLOB), CAST(reject_reason AS BLOB), \
    CAST(successful AS BLOB), CAST(suspicious AS BLOB), CAST(user_id AS BLOB) \
    FROM accounts_loginlog WHERE id > ? ORDER BY id LIMIT ?";

impl Source {
    /// Opens `url` (`sqlite://…` or `postgres://…`) read-only and starts
    /// the snapshot. A missing SQLite file is an error, never created.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let shown = common::database::location(url);
        let scheme = url.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("sqlite") => {
                let options = SqliteConnectOptions::from_str(url)
                    .with_context(|| format!("the Django database URL ({shown})"))?
                    .read_only(true)
                    .create_if_missing(false);
                let pool = SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(options)
                    .await
                    .map_err(|e| source_error(&shown, &e))?;
                let tx = pool.begin().await.map_err(|e| source_error(&shown, &e))?;
                Ok(Self::Sqlite(tx))
            }
            Some("postgres" | "postgresql") => {
                let options = PgConnectOptions::from_str(url)
                    .with_context(|| format!("the Django database URL ({shown})"))?
                    // Belt and braces: every statement of the session is
                    // read-only, whatever this code sends.
                    .options([("default_transaction_read_only", "on")]);
                common::database::probe(&options).await.map_err(|e| {
                    anyhow::anyhow!("cannot open the Django database at {shown}: {e}")
                })?;
                let pool = PgPoolOptions::new()
                    .max_connections(1)
                    .connect_with(options)
                    .await
                    .map_err(|e| source_error(&shown, &e))?;
                let mut tx = pool
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await
                    .map_err(|e| source_error(&shown, &e))?;
                let columns = pg_columns(&mut tx)
                    .await
                    .map_err(|e| source_error(&shown, &e))?;
                Ok(Self::Postgres { tx, columns })
            }
            _ => Err(common::config::ConfigError::new(
                "the Django database URL",
                &shown,
                "must start with sqlite:// or postgres://",
            )
            .into()),
        }
    }

    /// Up to `limit` users with an id above `after`, by id.
    pub async fn users_after(&mut self, after: i64, limit: i64) -> anyhow::Result<Vec<RawUser>> {
        let rows = match self {
            Self::Sqlite(tx) => sqlx::query(SQLITE_USERS)
                .bind(after)
                .bind(limit)
                .fetch_all(&mut **tx)
                .await
                .map(|rows| rows.iter().map(user_of).collect::<Result<Vec<_>, _>>()),
            Self::Postgres { tx, columns } => {
                let sql = format!(
                    "SELECT id::int8, convert_to(password, 'UTF8'), convert_to(username, 'UTF8'), \
                     convert_to(email, 'UTF8'), convert_to(is_superuser::int::text, 'UTF8'), \
                     convert_to(is_staff::int::text, 'UTF8'), convert_to(is_active::int::text, 'UTF8'), \
                     {}, {} FROM accounts_user WHERE id > $1 ORDER BY id LIMIT $2",
                    columns.date_joined, columns.activation_date
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(after)
                    .bind(limit)
                    .fetch_all(&mut **tx)
                    .await
                    .map(|rows| rows.iter().map(user_of).collect::<Result<Vec<_>, _>>())
            }
        };
        rows.and_then(|r| r)
            .map_err(|e| read_error("accounts_user", &e))
    }

    /// Up to `limit` log rows with an id above `after`, by id.
    pub async fn logins_after(&mut self, after: i64, limit: i64) -> anyhow::Result<Vec<RawLogin>> {
        let rows = match self {
            Self::Sqlite(tx) => sqlx::query(SQLITE_LOGINS)
                .bind(after)
                .bind(limit)
                .fetch_all(&mut **tx)
                .await
                .map(|rows| rows.iter().map(login_of).collect::<Result<Vec<_>, _>>()),
            Self::Postgres { tx, columns } => {
                let sql = format!(
                    "SELECT id::int8, convert_to(email, 'UTF8'), {}, {}, \
                     convert_to(user_agent, 'UTF8'), convert_to(reject_reason, 'UTF8'), \
                     convert_to(successful::int::text, 'UTF8'), convert_to(suspicious::int::text, 'UTF8'), \
                     convert_to(user_id::text, 'UTF8') \
                     FROM accounts_loginlog WHERE id > $1 ORDER BY id LIMIT $2",
                    columns.ip, columns.created_at
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(after)
                    .bind(limit)
                    .fetch_all(&mut **tx)
                    .await
                    .map(|rows| rows.iter().map(login_of).collect::<Result<Vec<_>, _>>())
            }
        };
        rows.and_then(|r| r)
            .map_err(|e| read_error("accounts_loginlog", &e))
    }

    /// Ends the snapshot (nothing was written: it is rolled back).
    pub async fn close(self) {
        let _ = match self {
            Self::Sqlite(tx) => tx.rollback().await,
            Self::Postgres { tx, .. } => tx.rollback().await,
        };
    }
}

/// How PostgreSQL's columns are to be read, by their types.
async fn pg_columns(tx: &mut Transaction<'static, Postgres>) -> Result<PgColumns, sqlx::Error> {
    let typed: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, data_type::text
           FROM information_schema.columns
          WHERE table_schema = current_schema()
            AND table_name IN ('accounts_user', 'accounts_loginlog')",
    )
    .fetch_all(&mut **tx)
    .await?;
    let is = |table: &str, column: &str, ty: &str| {
        typed
            .iter()
            .any(|(t, c, d)| t.as_str() == table && c.as_str() == column && d.as_str() == ty)
    };
    let with_zone = |table, column| is(table, column, "timestamp with time zone");
    Ok(PgColumns {
        // `inet`'s text form carries a prefix length (`/32`); `host` not.
        ip: if is("accounts_loginlog", "ip", "inet") {
            "convert_to(host(ip), 'UTF8')"
        } else {
            "convert_to(ip::text, 'UTF8')"
        },
        date_joined: pg_time("date_joined", with_zone("accounts_user", "date_joined")),
        activation_date: pg_time(
            "activation_date",
            with_zone("accounts_user", "activation_date"),
        ),
        created_at: pg_time("created_at", with_zone("accounts_loginlog", "created_at")),
    })
}

fn user_of<R: sqlx::Row>(row: &R) -> Result<RawUser, sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Vec<u8>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(RawUser {
        id: row.try_get(0)?,
        password: row.try_get(1)?,
        username: row.try_get(2)?,
        email: row.try_get(3)?,
        is_superuser: row.try_get(4)?,
        is_staff: row.try_get(5)?,
        is_active: row.try_get(6)?,
        date_joined: row.try_get(7)?,
        activation_date: row.try_get(8)?,
    })
}

fn login_of<R: sqlx::Row>(row: &R) -> Result<RawLogin, sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Vec<u8>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(RawLogin {
        id: row.try_get(0)?,
        email: row.try_get(1)?,
        ip: row.try_get(2)?,
        created_at: row.try_get(3)?,
        user_agent: row.try_get(4)?,
        reject_reason: row.try_get(5)?,
        successful: row.try_get(6)?,
        suspicious: row.try_get(7)?,
        user_id: row.try_get(8)?,
    })
}

fn source_error(shown: &str, e: &sqlx::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot open the Django database at {shown}: {}",
        common::database::describe(e)
    )
}

/// A failed read of `table`: most often a database that is not the Django
/// service's (no such table or column).
fn read_error(table: &str, e: &sqlx::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot read {table} from the Django database ({}); is it the Django service's \
         database, with its migrations applied?",
        common::database::describe(e)
    )
}

//! auth-service binary: serves by default; operator subcommands otherwise.

use std::{io::Read, process::ExitCode};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    version,
    about = "Accounts, verification, login and JWTs over gRPC (auth.v1)",
    after_help = format!("{OPERATOR_HELP}\n\n{}", common::cli::AFTER_HELP)
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

/// What the operator commands act on, for `--help`.
const OPERATOR_HELP: &str = "\
The operator commands (user, create-admin, unlock, rotate-keys, name-collisions, import-django) act on the database
in AUTH_DATABASE_URL (default sqlite://data/auth.db, relative to the working
directory) and never create it: run them where auth-service runs, or give an
absolute path (sqlite:///var/lib/auth/auth.db).";

#[derive(Subcommand)]
enum Command {
    /// Serve the gRPC API (the default).
    Serve,
    /// Create a verified administrator, or with --promote make an existing
    /// account one.
    #[command(
        after_help = "Examples:\n  printf '%s' \"$PASSWORD\" | auth-service create-admin --username admin --email admin@example.com --password-stdin\n  auth-service create-admin --promote --username alice\n\nA new admin is active at once. A promoted account keeps its password and state (an unverified one still cannot log in); its tokens carry the admin claim from its next login or refresh.\n\nThe database must exist (auth-service creates it when it first serves): a relative sqlite path in AUTH_DATABASE_URL is read from the working directory."
    )]
    CreateAdmin {
        /// The admin's username (with --promote: the existing account's username or email).
        #[arg(long)]
        username: String,
        /// The new admin's email.
        #[arg(long, required_unless_present = "promote", conflicts_with = "promote")]
        email: Option<String>,
        /// Read the new admin's password from standard input (passwords never go on the command line).
        #[arg(long, required_unless_present = "promote", conflicts_with = "promote")]
        password_stdin: bool,
        /// Make the existing account --username an admin instead of creating one.
        #[arg(long)]
        promote: bool,
    },
    /// Administer accounts: list, show, activate, deactivate, grant or
    /// revoke admin rights, unlock, log out, resend verification, delete.
    #[command(
        after_help = "Examples:\n  auth-service user list --query alice --active true\n  auth-service user show alice@example.com\n  auth-service user deactivate alice\n  auth-service user grant-admin --id 42\n  auth-service user delete alice --yes\n\nAn account is named by its username or email, or by --id. The rules are the admin API's: a change that would leave no active administrator is refused, an unverified account is not activated (resend-verification instead), deactivating ends every session. Each change is logged as an admin_event line."
    )]
    User {
        #[command(subcommand)]
        command: auth_service::user_cli::UserCommand,
    },
    /// Lift a brute-force lock on an account (all IPs) before it expires.
    Unlock {
        /// The account's username or email.
        #[arg(long)]
        username: String,
    },
    /// List accounts whose names collided with an older account's when
    /// existing accounts were moved to normalised, lookalike-proof names.
    /// Each keeps working by its old spelling until an operator renames or
    /// removes it. Exits 0 with none, 1 when there are some.
    NameCollisions,
    /// Bring the Django service's users and login log over from its
    /// database (read only). Checks every row first and writes nothing if
    /// any cannot be mapped; then imports in batches, each one
    /// transaction. A second run adds nothing. See MIGRATING.md.
    #[command(
        after_help = "Examples:\n  auth-service import-django sqlite:///srv/django/db.sqlite3\n  DJANGO_DATABASE_URL=postgres://django:secret@db/accounts auth-service import-django\n\nPasswords keep working: Django hashes are stored as they are and become argon2id at each account's first login. Log rows go into the outbox; auth-service streams them to audit-service (keep AUDIT_RETENTION_DAYS=0 or high enough for old rows, which it would delete otherwise).\n\nExit status: 0 imported (or nothing new), 1 refused (the rows that cannot be mapped are listed; nothing was written) or failed (a rerun goes on where it stopped), 2 invalid usage."
    )]
    ImportDjango {
        /// The Django database: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB
        /// (the environment variable keeps a password off the command line).
        #[arg(env = "DJANGO_DATABASE_URL", hide_env_values = true)]
        database_url: String,
        /// The time zone the Django service wrote its naive times in (its
        /// TIME_ZONE, with USE_TZ = False); an IANA name.
        #[arg(long, default_value = "Asia/Tehran")]
        time_zone: String,
    },
    /// Add a new signing key of JWT_ALGORITHM's algorithm (default EdDSA):
    /// published now, signing after AUTH_KEY_PUBLISH_DELAY (default 10m);
    /// older keys keep verifying until their tokens expire.
    RotateKeys {
        /// Sign with the new key at once (a leaked key). Breaks verifiers
        /// holding a cached key set until they refetch it.
        #[arg(long)]
        now: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    common::cli::run("auth-service", || async move {
        let config = auth_service::Config::from_env()?;
        let command = cli.command.unwrap_or(Command::Serve);
        let location = common::database::location(config.database_url.expose());
        match command {
            Command::Serve => auth_service::run(config).await,
            Command::CreateAdmin {
                username,
                promote: true,
                ..
            } => {
                let user = auth_service::admin::promote(&config, &username).await?;
                let note = if user.is_active {
                    ""
                } else {
                    "; the account is not verified yet and cannot log in until it is"
                };
                println!(
                    "promoted {} (id {}) to admin in {location}{note}",
                    user.username, user.id
                );
                Ok(())
            }
            Command::CreateAdmin {
                username, email, ..
            } => {
                let email = email.unwrap_or_default();
                let user = create_admin(&config, &username, &email).await?;
                println!(
                    "created admin {} (id {}) in {location}",
                    user.username, user.id
                );
                Ok(())
            }
            Command::User { command } => {
                print!("{}", auth_service::user_cli::run(&config, command).await?);
                Ok(())
            }
            Command::Unlock { username } => {
                let n = auth_service::admin::unlock(&config, &username).await?;
                println!("unlocked {username} in {location} ({n} counters cleared)");
                Ok(())
            }
            Command::RotateKeys { now } => rotate_keys(&config, now, &location).await,
            Command::ImportDjango {
                database_url,
                time_zone,
            } => {
                let report =
                    auth_service::admin::import_django(&config, &database_url, &time_zone).await?;
                print!("{report}");
                Ok(())
            }
            Command::NameCollisions => {
                let collisions = auth_service::admin::name_collisions(&config).await?;
                if collisions.is_empty() {
                    println!("no name collisions in {location}");
                    return Ok(());
                }
                for c in &collisions {
                    println!(
                        "user {} ({} <{}>): its {} collides with user {} ({} <{}>)",
                        c.user_id,
                        c.username,
                        c.email,
                        c.kind,
                        c.holder_id,
                        c.holder_username,
                        c.holder_email
                    );
                }
                anyhow::bail!(
                    "{} name collision(s) in {location}: rename or remove the later accounts",
                    collisions.len()
                )
            }
        }
    })
}

/// Reads the password from stdin (one trailing newline dropped) and
/// creates the admin.
async fn create_admin(
    config: &auth_service::Config,
    username: &str,
    email: &str,
) -> anyhow::Result<auth_service::store::User> {
    let mut password = String::new();
    std::io::stdin().read_to_string(&mut password)?;
    let password = password.trim_end_matches(['\r', '\n']);
    auth_service::admin::create_admin(config, username, email, password).await
}

async fn rotate_keys(
    config: &auth_service::Config,
    now: bool,
    location: &str,
) -> anyhow::Result<()> {
    use auth_service::admin::Rollover;
    let rollover = if now {
        Rollover::Immediate
    } else {
        Rollover::Scheduled
    };
    let key = auth_service::admin::rotate_keys(config, rollover).await?;
    let starts = time::OffsetDateTime::from_unix_timestamp(key.not_before)?
        .format(&time::format_description::well_known::Rfc3339)?;
    println!(
        "added {} signing key {} in {location}: published now, signs from {starts}",
        key.alg, key.kid
    );
    Ok(())
}

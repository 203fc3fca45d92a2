//! What every binary does around its own work: read `.env`, start logging,
//! and turn the outcome into one line on stderr and an exit status an
//! operator, or a supervisor, can act on.
//!
//! The fatal line goes to stderr directly, never through `tracing`, so
//! `RUST_LOG=off` (or a filter that leaves the crate out) cannot hide why
//! the process stopped, and it is printed once whatever the log settings.

use std::{future::Future, path::Path, process::ExitCode};

use crate::config::ConfigError;

/// Exit status for invalid configuration or usage: a setting (or the
/// command line) must change; restarting as is will fail again. clap
/// exits with 2 for usage errors too.
pub const EXIT_CONFIG: u8 = 2;
/// Exit status for a failure while starting or running: an address in
/// use, a database that cannot be reached or refuses, a service that died.
/// A retry may succeed once the cause is gone.
pub const EXIT_FAILURE: u8 = 1;

/// The `--help` epilogue every binary shares.
pub const AFTER_HELP: &str = "\
Configuration comes from environment variables (env.sample lists every one
with its default). A .env file in the working directory is read first;
variables already set in the environment win over it.

Exit status: 0 done, 1 failed while starting or running (an address in
use, a database unreachable or refusing), 2 invalid configuration or usage
(the message names the variable).";

/// Reads `.env` from the working directory (only there: a file in some
/// parent folder is not this service's) into the environment without
/// overriding variables already set. A missing file is fine; an unreadable
/// or malformed one is a configuration error. Call it before any thread
/// starts: it sets environment variables.
pub fn load_dotenv() -> Result<(), ConfigError> {
    let path = Path::new(".env");
    let shown = std::env::current_dir().map_or_else(
        |_| ".env".to_owned(),
        |dir| dir.join(path).display().to_string(),
    );
    match dotenvy::from_path(path) {
        Ok(()) => Ok(()),
        Err(e) if e.not_found() => Ok(()),
        // The line may hold a secret: name only its variable.
        Err(dotenvy::Error::LineParse(line, _)) => {
            let what = match line.split_once('=') {
                Some((key, _)) => format!("cannot parse the line setting {}", key.trim()),
                None => "cannot parse a line that is not NAME=value".to_owned(),
            };
            Err(ConfigError::new(".env", &shown, what))
        }
        Err(e) => Err(ConfigError::new(".env", &shown, e.to_string())),
    }
}

/// Runs a binary: loads `.env`, starts a multi-threaded runtime and
/// logging, awaits `work`, flushes the trace exporter and maps the result
/// to an exit status: [`EXIT_CONFIG`] when a [`ConfigError`] is anywhere in
/// the error's chain, else [`EXIT_FAILURE`]. `binary` prefixes the fatal
/// line and names the service in traces.
pub fn run<F, Fut>(binary: &'static str, work: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    // Before the runtime's threads exist: this writes the environment.
    if let Err(e) = load_dotenv() {
        return fail(binary, &e.into());
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            return fail(
                binary,
                &anyhow::Error::new(e).context("cannot start the runtime"),
            );
        }
    };
    runtime.block_on(async {
        let telemetry = match crate::telemetry::init(binary) {
            Ok(telemetry) => telemetry,
            Err(e) => return fail(binary, &e.into()),
        };
        let result = work().await;
        telemetry.shutdown().await;
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(binary, &e),
        }
    })
}

/// Prints `binary: <error>` on stderr and returns the exit status it
/// deserves.
pub fn fail(binary: &str, error: &anyhow::Error) -> ExitCode {
    eprintln!("{binary}: {}", one_line(error));
    ExitCode::from(exit_status(error))
}

/// [`EXIT_CONFIG`] when the chain holds a [`ConfigError`], else
/// [`EXIT_FAILURE`].
pub fn exit_status(error: &anyhow::Error) -> u8 {
    if error.chain().any(|cause| cause.is::<ConfigError>()) {
        EXIT_CONFIG
    } else {
        EXIT_FAILURE
    }
}

/// The error and its causes on one line, each cause once: many library
/// errors print their source inside their own message, which a plain
/// `{:#}` then repeats.
pub fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let inner = std::io::Error::other("role \"x\" does not exist");
        let outer = anyhow::Error::new(inner)
            .context("error returned from database: role \"x\" does not exist")
            .context("cannot connect");
        assert_eq!(
            one_line(&outer),
            "cannot connect: error returned from database: role \"x\" does not exist"
        );
    }

    #[test]
    fn configuration_errors_anywhere_in_the_chain_exit_with_2() {
        let config = anyhow::Error::new(ConfigError::new("X", "1", "bad")).context("starting");
        assert_eq!(exit_status(&config), EXIT_CONFIG);
        assert_eq!(
            exit_status(&anyhow::anyhow!("address in use")),
            EXIT_FAILURE
        );
    }
}

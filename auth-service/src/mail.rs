//! Outgoing email: SMTP when `SMTP_URL` is set, else `.eml` files under
//! `MAIL_DIR` so a local setup works with no mail server at all.
//!
//! Each file is named `<UTC time>_<address>.eml` (see [`file_name`]), so a
//! shell glob on one address lists its mail oldest first and `tail -n1`
//! picks the newest: the README's walk-through reads the code that way.
//! (lettre's own file transport names files by random UUID, whose order
//! says nothing.)

use std::{io::ErrorKind, path::PathBuf};

use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, header::ContentType},
};
use time::{OffsetDateTime, format_description::FormatItem, macros::format_description};
use tokio::io::AsyncWriteExt as _;

/// Where mail goes.
#[derive(Clone)]
pub enum Mailer {
    /// A real SMTP server (pooled connections).
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// One `.eml` file per message in this folder.
    Files(PathBuf),
}

impl Mailer {
    /// Builds the transport; an unparsable `SMTP_URL` is a start-up error.
    pub fn new(smtp_url: Option<&str>, mail_dir: PathBuf) -> anyhow::Result<Self> {
        match smtp_url {
            Some(url) => Ok(Self::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|e| {
                        common::config::ConfigError::new(
                            "SMTP_URL",
                            &common::config::redact_url(url),
                            format!("not a valid SMTP URL: {e}"),
                        )
                    })?
                    .build(),
            )),
            None => {
                std::fs::create_dir_all(&mail_dir).map_err(|e| {
                    anyhow::anyhow!("MAIL_DIR {} cannot be created: {e}", mail_dir.display())
                })?;
                Ok(Self::Files(mail_dir))
            }
        }
    }

    /// Sends one plain-text message.
    pub async fn send(
        &self,
        from: &Mailbox,
        to: &str,
        subject: &str,
        body: String,
    ) -> anyhow::Result<()> {
        let message = Message::builder()
            .from(from.clone())
            .to(to.parse()?)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)?;
        match self {
            Self::Smtp(t) => {
                t.send(message).await?;
            }
            Self::Files(dir) => write_file(dir, to, &message.formatted()).await?,
        }
        Ok(())
    }
}

/// Writes `raw` as a new file in `dir` named for now and `to`. Never
/// overwrites: two messages to one address in the same nanosecond (another
/// replica sharing the folder) take the next free name.
async fn write_file(dir: &std::path::Path, to: &str, raw: &[u8]) -> anyhow::Result<()> {
    let mut at = OffsetDateTime::now_utc();
    loop {
        let path = dir.join(file_name(at, to));
        match tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
        {
            Ok(mut file) => {
                file.write_all(raw).await?;
                file.flush().await?;
                return Ok(());
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                at += time::Duration::nanoseconds(1);
            }
            Err(e) => return Err(anyhow::anyhow!("cannot write {}: {e}", path.display())),
        }
    }
}

/// Fixed width, so names sort as times do.
const STAMP: &[FormatItem<'static>] =
    format_description!("[year][month][day]T[hour][minute][second].[subsecond digits:9]Z");

/// `<UTC time>_<address>.eml`, e.g.
/// `20261130T212233.123456789Z_alice@example.com.eml`. Letters, digits and
/// `@.+-` of the address are kept; any other byte (`_`, `/`, ...) is
/// percent-encoded, so `_` only ever separates the time and a glob like
/// `*_alice@example.com.eml` matches that address alone.
pub fn file_name(at: OffsetDateTime, to: &str) -> String {
    let stamp = at
        .to_offset(time::UtcOffset::UTC)
        .format(STAMP)
        // Every UTC time has these fields; the fallback keeps mail flowing.
        .unwrap_or_else(|_| at.unix_timestamp_nanos().to_string());
    let mut address = String::with_capacity(to.len());
    for byte in to.bytes() {
        if byte.is_ascii_alphanumeric() || b"@.+-".contains(&byte) {
            address.push(char::from(byte));
        } else {
            address.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("{stamp}_{address}.eml")
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn a_file_is_named_by_its_utc_time_and_address() {
        assert_eq!(
            file_name(
                datetime!(2026-11-30 21:22:33.000_000_042 +02:00),
                "alice@example.com"
            ),
            "20261130T192233.000000042Z_alice@example.com.eml"
        );
    }

    #[test]
    fn names_sort_as_their_times_do() {
        let earlier = file_name(datetime!(2026-11-30 09:59:59.9 UTC), "a@example.com");
        let later = file_name(datetime!(2026-11-30 10:00:00 UTC), "a@example.com");
        assert!(earlier < later, "{earlier} {later}");
    }

    #[test]
    fn separators_and_path_characters_in_the_address_are_encoded() {
        assert_eq!(
            file_name(
                datetime!(2026-01-02 03:04:05 UTC),
                "bob_alice/x@example.com"
            ),
            "20260102T030405.000000000Z_bob%5Falice%2Fx@example.com.eml"
        );
    }

    #[tokio::test]
    async fn the_newest_mail_of_an_address_sorts_last_among_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let mailer = Mailer::new(None, dir.path().to_owned()).unwrap();
        let from: Mailbox = "noreply@example.com".parse().unwrap();
        for (to, body) in [
            ("alice@example.com", "first"),
            ("bob_alice@example.com", "other"),
            ("alice@example.com", "second"),
            ("zed@example.com", "later, other"),
        ] {
            mailer.send(&from, to, "s", body.to_owned()).await.unwrap();
        }

        let mut alice: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with("_alice@example.com.eml"))
            .collect();
        alice.sort();

        assert_eq!(alice.len(), 2, "{alice:?}");
        let newest = std::fs::read_to_string(dir.path().join(&alice[1])).unwrap();
        assert!(newest.contains("second"), "{newest}");
    }
}

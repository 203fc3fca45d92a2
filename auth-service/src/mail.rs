//! Outgoing email: SMTP when `SMTP_URL` is set, else `.eml` files under
//! `MAIL_DIR` so a local setup works with no mail server at all.

use std::path::PathBuf;

use lettre::{
    AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, header::ContentType},
};

/// Where mail goes.
#[derive(Clone)]
pub enum Mailer {
    /// A real SMTP server (pooled connections).
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// One `.eml` file per message.
    Files(AsyncFileTransport<Tokio1Executor>, PathBuf),
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
                Ok(Self::Files(AsyncFileTransport::new(&mail_dir), mail_dir))
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
            Self::Files(t, _) => {
                t.send(message).await?;
            }
        }
        Ok(())
    }
}

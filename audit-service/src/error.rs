//! The service's one error type and its one mapping to gRPC status codes.

use tonic::Status;

/// Why a request could not be served.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller sent something unusable; the message names the field.
    #[error("{field} {reason}")]
    InvalidArgument {
        /// The request field, e.g. `attempts[3].event_id` or `cursor`.
        field: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An ingested attempt is unusable; the message names the row, the
    /// field and the event, so the producer can find the one to set aside.
    #[error("{field} {reason} (event_id {event_id})")]
    InvalidAttempt {
        /// The field, e.g. `attempts[3].ip`.
        field: String,
        /// What is wrong with it.
        reason: &'static str,
        /// The attempt's event id, canonical.
        event_id: String,
    },
    /// The log database failed. Details are logged, never sent to the caller.
    #[error("log database error")]
    Database(#[from] sqlx::Error),
}

impl Error {
    /// An invalid-argument error naming `field`.
    pub fn invalid(field: impl Into<String>, reason: &'static str) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            reason,
        }
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        match err {
            Error::InvalidArgument { .. } | Error::InvalidAttempt { .. } => {
                Status::invalid_argument(err.to_string())
            }
            // Unavailable tells producers to retry later: their batch was not
            // acked, so resending it loses and duplicates nothing.
            Error::Database(source) => {
                tracing::error!(error = %source, "log database error");
                Status::unavailable("the login-attempt log is temporarily unavailable")
            }
        }
    }
}

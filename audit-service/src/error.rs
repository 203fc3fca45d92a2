//! The service's one error type and its one mapping to gRPC status codes.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

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
    /// A request field out of bounds, with a message made for the value
    /// given. Sent with a `google.rpc.BadRequest` field violation as well,
    /// so a caller (the gateway) can show it under the field's name.
    #[error("{field}: {reason}")]
    FieldViolation {
        /// The request field, e.g. `bucket`.
        field: &'static str,
        /// What is wrong with it: a sentence that reads on its own, under
        /// the field's name.
        reason: String,
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

    /// A [`Error::FieldViolation`] of `field`.
    pub fn field(field: &'static str, reason: String) -> Self {
        Self::FieldViolation { field, reason }
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        match err {
            Error::InvalidArgument { .. } | Error::InvalidAttempt { .. } => {
                Status::invalid_argument(err.to_string())
            }
            Error::FieldViolation { field, ref reason } => Status::with_error_details(
                Code::InvalidArgument,
                err.to_string(),
                ErrorDetails::with_bad_request_violation(field, reason.clone()),
            ),
            // Unavailable tells producers to retry later: their batch was not
            // acked, so resending it loses and duplicates nothing.
            Error::Database(source) => {
                tracing::error!(error = %source, "log database error");
                Status::unavailable("the login-attempt log is temporarily unavailable")
            }
        }
    }
}

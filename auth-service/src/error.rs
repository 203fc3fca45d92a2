//! The one error type of auth-service and its one mapping to gRPC status.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::{domain::FieldError, store::StoreError};

/// The message every failed login gets, whatever the reason, so responses
/// reveal nothing about which accounts exist.
pub const BAD_CREDENTIALS: &str = "No active account found with the given credentials";

/// Everything that can go wrong in a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Request fields broke a rule.
    #[error("invalid request")]
    Invalid(Vec<FieldError>),
    /// A unique field is taken.
    #[error("already exists")]
    Conflict(Vec<FieldError>),
    /// Login refused (any reason).
    #[error("{BAD_CREDENTIALS}")]
    BadCredentials,
    /// A token that is malformed, expired, revoked or signed by an unknown
    /// key.
    #[error("token is invalid or expired")]
    InvalidToken,
    /// A good token of the other type (an access token given as a refresh
    /// token, or the reverse).
    #[error("token has wrong type")]
    WrongTokenType,
    /// Too many attempts: refused without looking at the credentials.
    #[error("throttled for {retry_after}s")]
    Throttled {
        /// Seconds to wait, sent as `retry-after` metadata.
        retry_after: u64,
    },
    /// The caller is authenticated but may not do this (an administrator's
    /// action by an account that is not one).
    #[error("permission denied")]
    PermissionDenied,
    /// What the request names does not exist; the message says what.
    #[error("{0}")]
    NotFound(String),
    /// The request is well formed but the state of the system refuses it
    /// (the last administrator, an unverified account, ...).
    #[error("{message}")]
    Precondition {
        /// Machine-readable, upper snake case (`LAST_ADMIN`): the
        /// PreconditionFailure violation's type.
        reason: &'static str,
        /// What it concerns (`user:42`).
        subject: String,
        /// For a person.
        message: String,
    },
    /// A collaborator outside the database (the mail server) failed; the
    /// message says which, safe to show.
    #[error("{0}")]
    Unavailable(&'static str),
    /// The database failed.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    /// Anything else unexpected.
    #[error("internal: {0:#}")]
    Internal(#[from] anyhow::Error),
}

fn with_fields(code: Code, message: &str, fields: &[FieldError]) -> Status {
    let mut details = ErrorDetails::new();
    for f in fields {
        details.add_bad_request_violation(f.field.clone(), f.message.clone());
    }
    Status::with_error_details(code, message, details)
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid(fields) => {
                with_fields(Code::InvalidArgument, "invalid request", &fields)
            }
            Error::Conflict(fields) => with_fields(Code::AlreadyExists, "already exists", &fields),
            Error::BadCredentials => Status::unauthenticated(BAD_CREDENTIALS),
            Error::InvalidToken => Status::unauthenticated("Token is invalid or expired"),
            Error::WrongTokenType => Status::with_error_details(
                Code::Unauthenticated,
                "Token has wrong type",
                ErrorDetails::with_error_info(
                    proto::auth::v1::TOKEN_WRONG_TYPE,
                    proto::auth::v1::ERROR_DOMAIN,
                    std::collections::HashMap::new(),
                ),
            ),
            Error::Throttled { retry_after } => {
                let mut status = Status::resource_exhausted("too many attempts, retry later");
                status
                    .metadata_mut()
                    .insert("retry-after", retry_after.into());
                status
            }
            Error::PermissionDenied => {
                Status::permission_denied("an administrator's access token is required")
            }
            Error::NotFound(message) => Status::not_found(message),
            Error::Precondition {
                reason,
                subject,
                message,
            } => {
                let mut details = ErrorDetails::new();
                details.add_precondition_failure_violation(reason, subject, message.clone());
                Status::with_error_details(Code::FailedPrecondition, message, details)
            }
            Error::Unavailable(message) => Status::unavailable(message),
            Error::Store(e) => {
                tracing::error!(error = %e, "storage failure");
                Status::unavailable("storage unavailable")
            }
            Error::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "internal failure");
                Status::internal("internal error")
            }
        }
    }
}

//! Parse, don't validate: raw client input enters the core only through these
//! newtypes, each built by a `parse` that names the field it rejects.

mod code;
mod email;
mod identifier;
pub mod names;
mod password;
mod username;

pub use code::VerificationCode;
pub use email::{EmailAddress, SMTPUTF8_REFUSED};
pub use identifier::{LoginIdentifier, LoginLookup};
pub use password::{Password, normalise as normalise_password};
pub use username::Username;

/// One problem with one request field; many of them form a
/// `google.rpc.BadRequest` detail that the gateway turns into a field map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The request field, as the client named it.
    pub field: String,
    /// A sentence the client can show.
    pub message: String,
}

impl FieldError {
    /// Builds a field error.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The standard "missing" message.
    pub fn required(field: &'static str) -> Self {
        Self::new(field, "This field is required.")
    }
}

//! The JWT claims auth-service signs and the gateway verifies: one type,
//! so the issuer and the verifier cannot drift apart.

use serde::{Deserialize, Serialize};

/// `token_type` of access tokens (simplejwt's value).
pub const ACCESS: &str = "access";
/// `token_type` of refresh tokens (simplejwt's value).
pub const REFRESH: &str = "refresh";

/// Claims, with simplejwt's names (so existing clients keep decoding them)
/// plus `iss`, `is_staff` and `username`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// [`ACCESS`] or [`REFRESH`].
    pub token_type: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Issue time, Unix seconds.
    pub iat: i64,
    /// Unique token id.
    pub jti: String,
    /// The account.
    pub user_id: i64,
    /// The issuer (`JWT_ISSUER`), checked by every verifier.
    pub iss: String,
    /// Administrator; absent (a token of the old service) means not.
    #[serde(default)]
    pub is_staff: bool,
    /// The account's username, for display and logs.
    #[serde(default)]
    pub username: String,
}

//! The workspace's gRPC contracts. Service crates depend on this crate and
//! never run code generation themselves.

/// `auth.v1`: accounts, verification, login, tokens.
pub mod auth {
    /// Version 1 of the auth API.
    pub mod v1 {
        tonic::include_proto!("auth.v1");
    }
}

/// `audit.v1`: the login-attempt log.
pub mod audit {
    /// Version 1 of the audit API.
    pub mod v1 {
        tonic::include_proto!("audit.v1");

        impl RejectReason {
            /// Every failure reason (all but `Unspecified`).
            pub const FAILURES: [Self; 6] = [
                Self::UnknownUser,
                Self::BadPassword,
                Self::Inactive,
                Self::MalformedRequest,
                Self::LockedOut,
                Self::RateLimited,
            ];

            /// The spelling the log stores and REST shows (`bad_password`);
            /// empty for `Unspecified` (a success).
            pub fn code(self) -> &'static str {
                match self {
                    Self::Unspecified => "",
                    Self::UnknownUser => "unknown_user",
                    Self::BadPassword => "bad_password",
                    Self::Inactive => "inactive",
                    Self::MalformedRequest => "malformed_request",
                    Self::LockedOut => "locked_out",
                    Self::RateLimited => "rate_limited",
                }
            }

            /// The failure reason spelled `code`; `None` for anything else
            /// (the empty string included).
            pub fn from_code(code: &str) -> Option<Self> {
                Self::FAILURES.into_iter().find(|r| r.code() == code)
            }
        }
    }
}

/// Descriptor set of every message and service here, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("descriptor");

#[cfg(test)]
mod tests {
    use super::audit::v1::RejectReason;

    #[test]
    fn reason_codes_are_the_enum_names_in_lower_case() {
        for reason in RejectReason::FAILURES {
            let name = reason.as_str_name().strip_prefix("REJECT_REASON_").unwrap();
            assert_eq!(reason.code(), name.to_lowercase());
            assert_eq!(RejectReason::from_code(reason.code()), Some(reason));
        }
        assert_eq!(RejectReason::from_code(""), None);
        assert_eq!(RejectReason::from_code("BAD_PASSWORD"), None);
    }
}

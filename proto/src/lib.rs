//! The workspace's gRPC contracts. Service crates depend on this crate and
//! never run code generation themselves.

/// `auth.v1`: accounts, verification, login, tokens, and their
/// administration.
pub mod auth {
    /// Version 1 of the auth API.
    pub mod v1 {
        tonic::include_proto!("auth.v1");

        /// The `domain` of the `google.rpc.ErrorInfo` details auth.v1
        /// attaches to some errors.
        pub const ERROR_DOMAIN: &str = "auth.v1";
        /// `ErrorInfo.reason` of an UNAUTHENTICATED answer to a token that
        /// is good but of the other type (an access token given as a
        /// refresh token, or the reverse).
        pub const TOKEN_WRONG_TYPE: &str = "TOKEN_WRONG_TYPE";
    }
}

/// `audit.v1`: the login-attempt log and the admin events.
pub mod audit {
    /// Version 1 of the audit API.
    pub mod v1 {
        tonic::include_proto!("audit.v1");

        impl RejectReason {
            /// Every failure reason (all but `Unspecified`).
            pub const FAILURES: [Self; 9] = [
                Self::UnknownUser,
                Self::BadPassword,
                Self::Inactive,
                Self::MalformedRequest,
                Self::LockedOut,
                Self::RateLimited,
                Self::CodeWrong,
                Self::CodeExpired,
                Self::TooManyAttempts,
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
                    Self::CodeWrong => "code_wrong",
                    Self::CodeExpired => "code_expired",
                    Self::TooManyAttempts => "too_many_attempts",
                }
            }

            /// The failure reason spelled `code`; `None` for anything else
            /// (the empty string included).
            pub fn from_code(code: &str) -> Option<Self> {
                Self::FAILURES.into_iter().find(|r| r.code() == code)
            }
        }

        impl AttemptKind {
            /// Every kind an attempt is stored as (`Unspecified` is stored
            /// as `Login`, see [`AttemptKind::stored`]).
            pub const ALL: [Self; 3] = [Self::Login, Self::PasswordChange, Self::PasswordReset];

            /// The kind an attempt is stored and shown as: unspecified
            /// (attempts from before kinds existed) is a login.
            pub fn stored(self) -> Self {
                match self {
                    Self::Unspecified => Self::Login,
                    other => other,
                }
            }

            /// The spelling the log stores and REST shows (`password_change`).
            pub fn code(self) -> &'static str {
                match self.stored() {
                    Self::Unspecified | Self::Login => "login",
                    Self::PasswordChange => "password_change",
                    Self::PasswordReset => "password_reset",
                }
            }

            /// The kind spelled `code`; `None` for anything else.
            pub fn from_code(code: &str) -> Option<Self> {
                Self::ALL.into_iter().find(|k| k.code() == code)
            }
        }

        impl AdminAction {
            /// Every action an event can record (all but `Unspecified`).
            pub const ALL: [Self; 8] = [
                Self::Activate,
                Self::Deactivate,
                Self::GrantAdmin,
                Self::RevokeAdmin,
                Self::Unlock,
                Self::Logout,
                Self::ResendVerification,
                Self::Delete,
            ];

            /// The spelling the log stores and REST shows (`grant_admin`);
            /// empty for `Unspecified`.
            pub fn code(self) -> &'static str {
                match self {
                    Self::Unspecified => "",
                    Self::Activate => "activate",
                    Self::Deactivate => "deactivate",
                    Self::GrantAdmin => "grant_admin",
                    Self::RevokeAdmin => "revoke_admin",
                    Self::Unlock => "unlock",
                    Self::Logout => "logout",
                    Self::ResendVerification => "resend_verification",
                    Self::Delete => "delete",
                }
            }

            /// The action spelled `code`; `None` for anything else (the
            /// empty string included).
            pub fn from_code(code: &str) -> Option<Self> {
                Self::ALL.into_iter().find(|a| a.code() == code)
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

    #[test]
    fn kind_codes_are_the_enum_names_in_lower_case_and_unspecified_is_a_login() {
        use super::audit::v1::AttemptKind;
        for kind in AttemptKind::ALL {
            let name = kind.as_str_name().strip_prefix("ATTEMPT_KIND_").unwrap();
            assert_eq!(kind.code(), name.to_lowercase());
            assert_eq!(AttemptKind::from_code(kind.code()), Some(kind));
        }
        assert_eq!(AttemptKind::Unspecified.code(), "login");
        assert_eq!(AttemptKind::from_code("unspecified"), None);
        assert_eq!(AttemptKind::from_code(""), None);
    }

    #[test]
    fn admin_action_codes_are_the_enum_names_in_lower_case() {
        use super::audit::v1::AdminAction;
        for action in AdminAction::ALL {
            let name = action.as_str_name().strip_prefix("ADMIN_ACTION_").unwrap();
            assert_eq!(action.code(), name.to_lowercase());
            assert_eq!(AdminAction::from_code(action.code()), Some(action));
        }
        assert_eq!(AdminAction::from_code(""), None);
        assert_eq!(AdminAction::from_code("DELETE"), None);
    }

    #[test]
    fn an_admin_event_never_decodes_as_an_attempt() {
        // A forwarder from before admin events reads every outbox row as an
        // attempt; an admin event must fail to decode there rather than be
        // sent (and stored) as a login attempt.
        use super::audit::v1::{AdminAction, AdminEvent, Attempt};
        use prost::Message as _;
        for action in AdminAction::ALL {
            let event = AdminEvent {
                event_id: "0190b1f4-0000-7000-8000-000000000001".into(),
                action: action as i32,
                target_id: 7,
                ..Default::default()
            };
            let bytes = event.encode_to_vec();
            assert!(Attempt::decode(bytes.as_slice()).is_err(), "{action:?}");
        }
    }
}

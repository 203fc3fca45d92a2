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
    }
}

/// Descriptor set of every message and service here, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("descriptor");

//! gRPC metadata keys that carry the edge's view of a client across the hop,
//! so every RPC shares them without repeating fields in each message.

/// Request id from the edge (`X-Request-Id`), for log correlation.
pub const REQUEST_ID: &str = "x-request-id";
/// Client IP as the gateway determined it (trusted proxies applied).
pub const CLIENT_IP: &str = "x-client-ip";
/// The client's User-Agent; absent when the client sent none. Not
/// `user-agent`, which gRPC itself sets to the calling library.
pub const CLIENT_USER_AGENT: &str = "x-client-user-agent";

/// Reads an ASCII metadata value, ignoring values that are not valid text.
pub fn get<'a>(md: &'a tonic::metadata::MetadataMap, key: &str) -> Option<&'a str> {
    md.get(key).and_then(|v| v.to_str().ok())
}

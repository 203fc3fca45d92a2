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

/// Longest request id kept, in bytes (all visible ASCII); the edge replaces
/// a longer one, and the backends do the same for internal callers.
pub const MAX_REQUEST_ID_CHARS: usize = 128;
/// Longest User-Agent kept, so one client cannot bloat every log row.
pub const MAX_USER_AGENT_CHARS: usize = 512;

/// A client-chosen request id when it is 1..=128 visible ASCII characters;
/// any other value could smuggle junk into logs and is replaced.
pub fn sane_request_id(bytes: &[u8]) -> Option<String> {
    let ok = !bytes.is_empty()
        && bytes.len() <= MAX_REQUEST_ID_CHARS
        && bytes.iter().all(u8::is_ascii_graphic);
    // `is_ascii_graphic` makes the bytes valid UTF-8.
    ok.then(|| String::from_utf8_lossy(bytes).into_owned())
}

/// A User-Agent as printable ASCII (tabs become spaces, other bytes `?`),
/// cut to [`MAX_USER_AGENT_CHARS`], so it can travel as gRPC metadata and
/// be stored as sent, give or take what no log should hold.
pub fn printable_user_agent(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(MAX_USER_AGENT_CHARS)
        .map(|&b| match b {
            b'\t' => ' ',
            0x20..=0x7e => char::from(b),
            _ => '?',
        })
        .collect()
}

/// Who is calling, as the edge saw it, read back from a call's metadata
/// with the same limits the edge applied, so an internal caller that skips
/// the gateway gets no more room than a client does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientContext {
    /// Client IP in canonical text (IPv4-mapped IPv6 as IPv4), or empty
    /// when not given or not an address.
    pub ip: String,
    /// User-Agent; `None` when the client sent none.
    pub user_agent: Option<String>,
    /// Request id, or a fresh UUIDv4 when missing or not sane.
    pub request_id: String,
}

impl ClientContext {
    /// Reads the context; malformed values are dropped, never kept raw.
    pub fn from_metadata(md: &tonic::metadata::MetadataMap) -> Self {
        let ip = get(md, CLIENT_IP)
            .and_then(|s| s.trim().parse::<std::net::IpAddr>().ok())
            .map(|ip| ip.to_canonical().to_string())
            .unwrap_or_default();
        let user_agent = md
            .get(CLIENT_USER_AGENT)
            .map(|v| printable_user_agent(v.as_bytes()));
        let request_id = md
            .get(REQUEST_ID)
            .and_then(|v| sane_request_id(v.as_bytes()))
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        Self {
            ip,
            user_agent,
            request_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_valid_values_and_drops_malformed_ones() {
        let mut md = tonic::metadata::MetadataMap::new();
        md.insert(CLIENT_IP, "::ffff:10.0.0.1".parse().unwrap());
        md.insert(REQUEST_ID, "abc-123".parse().unwrap());
        let ctx = ClientContext::from_metadata(&md);
        assert_eq!(ctx.ip, "10.0.0.1");
        assert_eq!(ctx.request_id, "abc-123");
        assert_eq!(ctx.user_agent, None);

        let mut md = tonic::metadata::MetadataMap::new();
        md.insert(CLIENT_IP, "1.2.3.4, 5.6.7.8".parse().unwrap());
        md.insert(CLIENT_USER_AGENT, "curl/8".parse().unwrap());
        md.insert(REQUEST_ID, "has space".parse().unwrap());
        let ctx = ClientContext::from_metadata(&md);
        assert_eq!(ctx.ip, "");
        assert_eq!(ctx.user_agent.as_deref(), Some("curl/8"));
        assert_eq!(ctx.request_id.len(), 36);
    }

    #[test]
    fn request_ids_are_kept_only_when_sane() {
        assert_eq!(
            sane_request_id(b"abc-123_XYZ.:/").as_deref(),
            Some("abc-123_XYZ.:/")
        );
        assert!(sane_request_id("a".repeat(128).as_bytes()).is_some());
        for bad in [&b""[..], b"has space", b"tab\there", b"id\xc3\xa9"] {
            assert!(sane_request_id(bad).is_none(), "{bad:?}");
        }
        assert!(sane_request_id("a".repeat(129).as_bytes()).is_none());
    }

    #[test]
    fn user_agents_become_printable_ascii_of_bounded_length() {
        assert_eq!(
            printable_user_agent(b"curl/8.0\t(x)\xc3\xa9"),
            "curl/8.0 (x)??"
        );
        assert_eq!(printable_user_agent(&[b'a'; 600]).len(), 512);
    }
}

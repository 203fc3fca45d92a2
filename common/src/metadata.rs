//! gRPC metadata keys that carry the edge's view of a client across the hop,
//! so every RPC shares them without repeating fields in each message.

/// Request id from the edge (`X-Request-Id`), for log correlation.
pub const REQUEST_ID: &str = "x-request-id";
/// Client IP as the gateway determined it (trusted proxies applied).
pub const CLIENT_IP: &str = "x-client-ip";
/// The client's User-Agent; absent when the client sent none. Not
/// `user-agent`, which gRPC itself sets to the calling library.
pub const CLIENT_USER_AGENT: &str = "x-client-user-agent";
/// An end user's access token, for calls that act for that user (the
/// administration API); `authorization` carries the internal token.
pub const ACCESS_TOKEN: &str = "x-access-token";

/// Reads an ASCII metadata value, ignoring values that are not valid text.
pub fn get<'a>(md: &'a tonic::metadata::MetadataMap, key: &str) -> Option<&'a str> {
    md.get(key).and_then(|v| v.to_str().ok())
}

/// Longest request id a client may choose (see [`sane_request_id`]).
pub const MAX_CLIENT_REQUEST_ID_CHARS: usize = 64;
/// Longest request id the attempt log stores, in characters: a bound on
/// what any producer sends, above [`MAX_CLIENT_REQUEST_ID_CHARS`].
pub const MAX_REQUEST_ID_CHARS: usize = 128;
/// Longest User-Agent kept, so one client cannot bloat every log row.
pub const MAX_USER_AGENT_CHARS: usize = 512;

/// A client-chosen request id when it is a token of 1..=64 characters of
/// `[A-Za-z0-9._:-]`: enough for UUIDs, ULIDs, W3C trace ids and the ids
/// AWS and Heroku send, and nothing a log viewer, a spreadsheet (`=`, `+`,
/// `@`, `|`) or a header could read as more than an id. Anything else is
/// replaced by the caller with a fresh UUID; the rejected text is never
/// echoed or stored.
pub fn sane_request_id(bytes: &[u8]) -> Option<String> {
    let ok = !bytes.is_empty()
        && bytes.len() <= MAX_CLIENT_REQUEST_ID_CHARS
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    // Only ASCII passes, so the bytes are valid UTF-8.
    ok.then(|| String::from_utf8_lossy(bytes).into_owned())
}

/// The request id to use for a client-sent value: the value when
/// [`sane_request_id`] keeps it, else a fresh UUIDv4 (logged at debug,
/// without the rejected text).
pub fn request_id_or_fresh(sent: Option<&[u8]>) -> String {
    if let Some(id) = sent.and_then(sane_request_id) {
        return id;
    }
    let fresh = uuid::Uuid::new_v4().to_string();
    if let Some(sent) = sent {
        tracing::debug!(
            sent_len = sent.len(),
            request_id = %fresh,
            "client request id is not a 1-64 character token: replaced"
        );
    }
    fresh
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
        let request_id = request_id_or_fresh(md.get(REQUEST_ID).map(|v| v.as_bytes()));
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
        for good in [
            "abc-123_XYZ.:",
            "0190f4a2-7b1c-7d3e-9f00-1234567890ab",
            "01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "1-67891233-abcdef012345678912345678",
        ] {
            assert_eq!(sane_request_id(good.as_bytes()).as_deref(), Some(good));
        }
        assert!(sane_request_id("a".repeat(64).as_bytes()).is_some());
        for bad in [
            &b""[..],
            b"has space",
            b"tab\there",
            b"id\xc3\xa9",
            b"=cmd|' /C calc'!A0",
            b"+1",
            b"@SUM(A1)",
            b"a/b",
            b"nul\0",
            b"crlf\r\nx",
            "ｒｅｑ".as_bytes(),
        ] {
            assert!(sane_request_id(bad).is_none(), "{bad:?}");
        }
        assert!(sane_request_id("a".repeat(65).as_bytes()).is_none());
        let fresh = request_id_or_fresh(Some(b"=cmd|' /C calc'!A0"));
        assert!(uuid::Uuid::parse_str(&fresh).is_ok(), "{fresh}");
        assert_eq!(request_id_or_fresh(Some(b"rid-1")), "rid-1");
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

//! The client context the edge passes as gRPC metadata.

use std::net::IpAddr;

use common::metadata;
use tonic::metadata::MetadataMap;

/// Longest User-Agent kept; longer ones are cut, not refused.
const MAX_USER_AGENT: usize = 512;

/// Who is calling, as the gateway saw it.
#[derive(Debug, Clone, Default)]
pub struct ClientContext {
    /// Client IP, or empty when not given or not a valid address.
    pub ip: String,
    /// User-Agent; `None` when the client sent none.
    pub user_agent: Option<String>,
    /// Request id, or a fresh one when missing or unreasonable.
    pub request_id: String,
}

impl ClientContext {
    /// Reads the context; malformed values are dropped, never stored raw.
    pub fn from_metadata(md: &MetadataMap) -> Self {
        let ip = metadata::get(md, metadata::CLIENT_IP)
            .and_then(|s| s.trim().parse::<IpAddr>().ok())
            .map(|ip| ip.to_canonical().to_string())
            .unwrap_or_default();
        let user_agent = md.get(metadata::CLIENT_USER_AGENT).map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .chars()
                .take(MAX_USER_AGENT)
                .collect()
        });
        let request_id = metadata::get(md, metadata::REQUEST_ID)
            .filter(|id| {
                !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
            })
            .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
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
        let mut md = MetadataMap::new();
        md.insert(metadata::CLIENT_IP, "::ffff:10.0.0.1".parse().unwrap());
        md.insert(metadata::REQUEST_ID, "abc-123".parse().unwrap());
        let ctx = ClientContext::from_metadata(&md);
        assert_eq!(ctx.ip, "10.0.0.1");
        assert_eq!(ctx.request_id, "abc-123");
        assert_eq!(ctx.user_agent, None);

        let mut md = MetadataMap::new();
        md.insert(metadata::CLIENT_IP, "1.2.3.4, 5.6.7.8".parse().unwrap());
        md.insert(metadata::CLIENT_USER_AGENT, "curl/8".parse().unwrap());
        let ctx = ClientContext::from_metadata(&md);
        assert_eq!(ctx.ip, "");
        assert_eq!(ctx.user_agent.as_deref(), Some("curl/8"));
        assert_eq!(ctx.request_id.len(), 36);
    }
}

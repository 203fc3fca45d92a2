//! Who the client is, as far as the network lets us know.
//!
//! The TCP peer is the only address nobody can forge. `X-Forwarded-For` is
//! believed only when that peer is one of our own proxies, and then only up
//! to the first hop we do not trust: everything to the left of it was written
//! by the client and may be invented. Lockouts and the audit log key on this
//! address, so getting it wrong lets an attacker pick their own IP.

use std::{
    net::{IpAddr, SocketAddr},
    str::FromStr,
};

use axum::http::HeaderValue;
use ipnet::IpNet;

/// The networks our own reverse proxies live in (`TRUSTED_PROXIES`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Trusts exactly these networks.
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self(nets)
    }

    /// Whether no proxy is trusted (the socket peer is always the client).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` belongs to a trusted proxy. IPv4-mapped IPv6 addresses
    /// (what a dual-stack socket reports for IPv4 peers) count as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }
}

impl FromStr for TrustedProxies {
    type Err = String;

    /// Parses a comma-separated list of CIDRs; a bare address means that one
    /// host. Blank entries are skipped so a trailing comma is harmless.
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let mut nets = Vec::new();
        for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let net = match entry.parse::<IpNet>() {
                Ok(net) => net.trunc(),
                Err(_) => entry.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
                    format!("{entry:?} is not a CIDR such as 10.0.0.0/8 or an IP address")
                })?,
            };
            nets.push(net);
        }
        Ok(Self(nets))
    }
}

/// The client's address: `peer` itself unless `peer` is a trusted proxy, in
/// which case `X-Forwarded-For` (all of its header lines, in order) is walked
/// from the right, skipping trusted proxies, and the first untrusted hop is
/// the client. When every hop is trusted the leftmost one is used. A
/// malformed header is ignored as a whole (the peer is used): a value we
/// cannot parse is never passed on.
pub fn resolve<'a>(
    peer: IpAddr,
    forwarded_for: impl IntoIterator<Item = &'a HeaderValue>,
    trusted: &TrustedProxies,
) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        return peer;
    }
    let Some(hops) = parse_forwarded_for(forwarded_for) else {
        return peer;
    };
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        client = hop;
        if !trusted.contains(hop) {
            break;
        }
    }
    client
}

/// Whether the original request came in over HTTPS, as told by a trusted
/// proxy's `X-Forwarded-Proto`; anyone else's claim is ignored.
pub fn forwarded_https(
    peer: IpAddr,
    forwarded_proto: Option<&HeaderValue>,
    trusted: &TrustedProxies,
) -> bool {
    if !trusted.contains(peer) {
        return false;
    }
    forwarded_proto
        .and_then(|v| v.to_str().ok())
        // With several proxies the first value is the client-facing one.
        .and_then(|v| v.split(',').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// All hops of `X-Forwarded-For`, left to right, or `None` when any part is
/// not an address. Absent or empty headers give an empty list.
fn parse_forwarded_for<'a>(
    values: impl IntoIterator<Item = &'a HeaderValue>,
) -> Option<Vec<IpAddr>> {
    let mut hops = Vec::new();
    for value in values {
        let text = value.to_str().ok()?;
        if text.trim().is_empty() {
            continue;
        }
        for entry in text.split(',') {
            hops.push(parse_hop(entry.trim())?);
        }
    }
    Some(hops)
}

/// One hop: `1.2.3.4`, `2001:db8::1`, `[2001:db8::1]`, or either with a port
/// (`1.2.3.4:5678`, `[2001:db8::1]:5678`), which some proxies append.
fn parse_hop(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sock) = entry.parse::<SocketAddr>() {
        return Some(sock.ip().to_canonical());
    }
    entry
        .strip_prefix('[')
        .and_then(|e| e.strip_suffix(']'))
        .and_then(|e| e.parse::<std::net::Ipv6Addr>().ok())
        .map(|ip| IpAddr::V6(ip).to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn proxies(s: &str) -> TrustedProxies {
        s.parse().unwrap()
    }

    fn xff(values: &[&str]) -> Vec<HeaderValue> {
        values
            .iter()
            .map(|v| HeaderValue::from_str(v).unwrap())
            .collect()
    }

    fn resolve_with(peer: &str, trusted: &str, headers: &[&str]) -> IpAddr {
        resolve(ip(peer), &xff(headers), &proxies(trusted))
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client() {
        assert_eq!(
            resolve_with("203.0.113.9", "", &["1.1.1.1"]),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn an_untrusted_peer_cannot_spoof_its_address() {
        assert_eq!(
            resolve_with("203.0.113.9", "10.0.0.0/8", &["1.1.1.1, 10.0.0.2"]),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn a_trusted_peer_forwards_the_client_address() {
        assert_eq!(
            resolve_with("10.0.0.2", "10.0.0.0/8", &["198.51.100.7"]),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn a_trusted_peer_without_the_header_is_itself_the_client() {
        assert_eq!(resolve_with("10.0.0.2", "10.0.0.0/8", &[]), ip("10.0.0.2"));
        assert_eq!(
            resolve_with("10.0.0.2", "10.0.0.0/8", &[""]),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn the_walk_stops_at_the_first_untrusted_hop_from_the_right() {
        // The client prepended a fake 1.1.1.1; the real client is 198.51.100.7,
        // added by our outer proxy 10.0.0.5, which reached 10.0.0.2.
        assert_eq!(
            resolve_with(
                "10.0.0.2",
                "10.0.0.0/8",
                &["1.1.1.1, 198.51.100.7, 10.0.0.5"]
            ),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn several_header_lines_are_read_in_order() {
        assert_eq!(
            resolve_with(
                "10.0.0.2",
                "10.0.0.0/8",
                &["1.1.1.1", "198.51.100.7", "10.0.0.5"]
            ),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn when_every_hop_is_trusted_the_leftmost_is_used() {
        assert_eq!(
            resolve_with("10.0.0.2", "10.0.0.0/8", &["10.9.9.9, 10.0.0.5"]),
            ip("10.9.9.9")
        );
    }

    #[test]
    fn a_malformed_header_is_ignored_entirely() {
        for bad in [
            "not-an-ip",
            "1.1.1.1, garbage",
            "1.1.1.1,,2.2.2.2",
            "unknown",
            "1.1.1.1; DROP TABLE",
            "300.1.1.1",
            "[::1",
        ] {
            assert_eq!(
                resolve_with("10.0.0.2", "10.0.0.0/8", &[bad]),
                ip("10.0.0.2"),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_non_ascii_header_is_ignored() {
        let value = HeaderValue::from_bytes(b"1.1.1.1\xff").unwrap();
        assert_eq!(
            resolve(ip("10.0.0.2"), [&value], &proxies("10.0.0.0/8")),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn hops_with_ports_and_brackets_are_understood() {
        assert_eq!(
            resolve_with("10.0.0.2", "10.0.0.0/8", &["198.51.100.7:4711"]),
            ip("198.51.100.7")
        );
        assert_eq!(
            resolve_with("10.0.0.2", "10.0.0.0/8", &["[2001:db8::7]:4711"]),
            ip("2001:db8::7")
        );
        assert_eq!(
            resolve_with("10.0.0.2", "10.0.0.0/8", &["[2001:db8::7]"]),
            ip("2001:db8::7")
        );
        assert_eq!(
            resolve_with("10.0.0.2", "10.0.0.0/8", &["2001:db8::7"]),
            ip("2001:db8::7")
        );
    }

    #[test]
    fn ipv4_mapped_peers_match_ipv4_networks() {
        assert_eq!(
            resolve_with("::ffff:10.0.0.2", "10.0.0.0/8", &["198.51.100.7"]),
            ip("198.51.100.7")
        );
        // And the reported address is the plain IPv4 form.
        assert_eq!(
            resolve_with("::ffff:203.0.113.9", "", &[]),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn ipv6_proxies_are_supported() {
        assert_eq!(
            resolve_with("fd00::2", "fd00::/8", &["2001:db8::1, fd00::3"]),
            ip("2001:db8::1")
        );
    }

    #[test]
    fn trusted_proxy_lists_parse_cidrs_and_bare_addresses() {
        let t = proxies(" 10.0.0.0/8 , 192.168.1.1,fd00::/8,");
        assert!(t.contains(ip("10.255.0.1")));
        assert!(t.contains(ip("192.168.1.1")));
        assert!(!t.contains(ip("192.168.1.2")));
        assert!(t.contains(ip("fd00::1")));
        assert!(!t.contains(ip("8.8.8.8")));
    }

    #[test]
    fn host_bits_in_a_cidr_are_ignored() {
        assert!(proxies("10.1.2.3/8").contains(ip("10.200.0.1")));
    }

    #[test]
    fn bad_proxy_entries_are_refused_with_the_entry_named() {
        let err = "10.0.0.0/8, nope".parse::<TrustedProxies>().unwrap_err();
        assert!(err.contains("nope"), "{err}");
        assert!("10.0.0.0/40".parse::<TrustedProxies>().is_err());
    }

    #[test]
    fn forwarded_proto_is_believed_only_from_trusted_proxies() {
        let https = HeaderValue::from_static("https");
        let t = proxies("10.0.0.0/8");
        assert!(forwarded_https(ip("10.0.0.2"), Some(&https), &t));
        assert!(!forwarded_https(ip("203.0.113.9"), Some(&https), &t));
        assert!(!forwarded_https(ip("10.0.0.2"), None, &t));
        let chain = HeaderValue::from_static("HTTPS, http");
        assert!(forwarded_https(ip("10.0.0.2"), Some(&chain), &t));
        let http = HeaderValue::from_static("http");
        assert!(!forwarded_https(ip("10.0.0.2"), Some(&http), &t));
    }
}

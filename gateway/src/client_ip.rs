//! Who the client is, as far as the network lets us know.
//!
//! The TCP peer is the only address nobody can forge. The forwarding header
//! (`X-Forwarded-For`, or RFC 7239 `Forwarded` when configured) is believed
//! only when that peer is one of our own proxies, and then only up to the
//! first hop we do not trust: everything to the left of it was written by
//! the client and may be invented, so it is never even parsed. Lockouts and
//! the audit log key on this address, so getting it wrong lets an attacker
//! pick their own IP — or, as important, escape a block by making the
//! request look anonymous.
//!
//! The walk, from the right (the hop nearest to us):
//! - a trusted address: one of our proxies, keep walking;
//! - an untrusted address: the client, stop;
//! - anything else (garbage, an empty entry, `unknown`, an obfuscated
//!   `_hidden` node, a `Forwarded` element without `for=`): our proxy
//!   passed on something it could not vouch for. The request is attributed
//!   to the hop that sent it — the last trusted address walked, or the peer —
//!   and a warning is logged. It never becomes anonymous or unlimited.
//! - no untrusted address at all: the leftmost trusted hop.

use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr},
    str::FromStr,
};

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// Longest piece of an unparseable entry quoted in the warning; the rest is
/// only counted, so a client cannot fill the logs through its proxy.
const MAX_LOGGED_ENTRY: usize = 64;

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

/// Which forwarding header our proxies append to (`TRUSTED_PROXY_HEADER`).
///
/// Exactly one header is read, never both, and never "whichever is
/// present": a header our proxies do not touch passes through them
/// unchanged, so every entry in it was written by the client. If the
/// gateway preferred `Forwarded` whenever present (as some guidance
/// suggests) behind an nginx that only appends `X-Forwarded-For`, a client
/// sending `Forwarded: for=1.2.3.4` would pick its own address. Only the
/// operator knows which header the proxies maintain, so it is configured;
/// the default is `X-Forwarded-For`, which nearly every proxy and load
/// balancer appends to (and what this gateway always read).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (the de-facto standard).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1;proto=https, ...`.
    Forwarded,
}

impl FromStr for ForwardedHeader {
    type Err = String;

    /// `x-forwarded-for` or `forwarded`, in any case.
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(Self::XForwardedFor),
            "forwarded" => Ok(Self::Forwarded),
            _ => Err("expected x-forwarded-for or forwarded".to_owned()),
        }
    }
}

/// How the client address is worked out: which peers are our proxies and
/// which header they append to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyRules {
    /// Peers (and hops) whose forwarding entries are believed.
    pub trusted: TrustedProxies,
    /// The header those proxies maintain.
    pub header: ForwardedHeader,
}

impl ProxyRules {
    /// The client's address for a request from `peer` with `headers`: the
    /// rightmost hop that is not a trusted proxy (see the module docs).
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusted.contains(peer) {
            return peer;
        }
        match self.header {
            ForwardedHeader::XForwardedFor => walk(
                peer,
                &xff_entries(headers.get_all(&X_FORWARDED_FOR)),
                parse_xff_hop,
                &self.trusted,
                "x-forwarded-for",
            ),
            ForwardedHeader::Forwarded => walk(
                peer,
                &forwarded_elements(headers.get_all(&FORWARDED)),
                parse_forwarded_element,
                &self.trusted,
                "forwarded",
            ),
        }
    }
}

/// Walks `entries` from the right starting at the trusted `peer`; see the
/// module docs. `parse` is only called on entries actually reached, so
/// whatever the client wrote to the left of its own address is never read.
fn walk(
    peer: IpAddr,
    entries: &[&[u8]],
    parse: fn(&[u8]) -> Option<IpAddr>,
    trusted: &TrustedProxies,
    header: &'static str,
) -> IpAddr {
    // The hop that handed us the entry being looked at.
    let mut sender = peer;
    for entry in entries.iter().rev() {
        match parse(entry) {
            Some(ip) if trusted.contains(ip) => sender = ip,
            Some(ip) => return ip,
            None => {
                tracing::warn!(
                    header,
                    entry = %excerpt(entry),
                    entry_len = entry.len(),
                    attributed_to = %sender,
                    "a trusted proxy forwarded an entry that is not an address; \
                     attributing the request to that proxy"
                );
                return sender;
            }
        }
    }
    sender
}

/// The first [`MAX_LOGGED_ENTRY`] bytes of `entry` as printable ASCII, for
/// the log (the full length is logged separately).
fn excerpt(entry: &[u8]) -> String {
    let mut text: String = entry
        .iter()
        .take(MAX_LOGGED_ENTRY)
        .map(|&b| match b {
            0x20..=0x7e => char::from(b),
            _ => '?',
        })
        .collect();
    if entry.len() > MAX_LOGGED_ENTRY {
        text.push_str("...");
    }
    text
}

/// The comma-separated entries of every `X-Forwarded-For` line, in order,
/// trimmed. Lines are joined as RFC 9110 joins repeated list headers; a
/// wholly blank line is no entry at all, but an empty entry inside a list
/// (`a,,b`, `a, `) is kept so the walk treats it as unparseable.
fn xff_entries<'a>(values: impl IntoIterator<Item = &'a HeaderValue>) -> Vec<&'a [u8]> {
    let mut entries = Vec::new();
    for value in values {
        let bytes = value.as_bytes();
        if bytes.trim_ascii().is_empty() {
            continue;
        }
        entries.extend(bytes.split(|&b| b == b',').map(<[u8]>::trim_ascii));
    }
    entries
}

/// One `X-Forwarded-For` hop: `1.2.3.4`, `2001:db8::1`, `[2001:db8::1]`, or
/// either with a port (`1.2.3.4:5678`, `[2001:db8::1]:5678`), which some
/// proxies append.
fn parse_xff_hop(entry: &[u8]) -> Option<IpAddr> {
    let entry = std::str::from_utf8(entry).ok()?;
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sock) = entry.parse::<SocketAddr>() {
        return Some(sock.ip().to_canonical());
    }
    entry
        .strip_prefix('[')
        .and_then(|e| e.strip_suffix(']'))
        .and_then(|e| e.parse::<Ipv6Addr>().ok())
        .map(|ip| IpAddr::V6(ip).to_canonical())
}

/// The elements of every `Forwarded` line, in order (RFC 7239 section 4):
/// split at commas outside quoted strings, trimmed. As for
/// `X-Forwarded-For`, blank lines are skipped and empty elements kept.
fn forwarded_elements<'a>(values: impl IntoIterator<Item = &'a HeaderValue>) -> Vec<&'a [u8]> {
    let mut elements = Vec::new();
    for value in values {
        let bytes = value.as_bytes();
        if bytes.trim_ascii().is_empty() {
            continue;
        }
        elements.extend(
            split_outside_quotes(bytes, b',')
                .into_iter()
                .map(<[u8]>::trim_ascii),
        );
    }
    elements
}

/// `bytes` split at each `sep` that is not inside a quoted string
/// (`"..."` with `\` escapes). An unterminated quote runs to the end, so
/// the last piece then fails to parse.
fn split_outside_quotes(bytes: &[u8], sep: u8) -> Vec<&[u8]> {
    let mut pieces = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, &b) in bytes.iter().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if b == sep && !quoted {
            pieces.push(&bytes[start..i]);
            start = i + 1;
        }
    }
    pieces.push(&bytes[start..]);
    pieces
}

/// The address in one `Forwarded` element's `for=` parameter
/// (`for=192.0.2.60;proto=https`, `for="[2001:db8::1]:4711"`). `None` when
/// the element has no `for=` (or two), or names no address: `unknown`, an
/// obfuscated `_hidden` identifier, or anything malformed.
fn parse_forwarded_element(element: &[u8]) -> Option<IpAddr> {
    let mut node = None;
    for pair in split_outside_quotes(element, b';') {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        let (name, value) = (pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii());
        if !name.eq_ignore_ascii_case(b"for") {
            continue;
        }
        if node.is_some() {
            return None;
        }
        node = Some(unquote(value)?);
    }
    parse_node(&node?)
}

/// A parameter value: a token as is, or a quoted string with its escapes
/// removed (RFC 7230 `quoted-string`).
fn unquote(value: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(value).ok()?;
    let Some(inner) = text.strip_prefix('"') else {
        let token = |c: char| c.is_ascii_graphic() && !"\"(),/:;<=>?@[\\]{}".contains(c);
        // `:`, `[` and `]` are not token characters, but some proxies send
        // `for=[2001:db8::1]` or `for=1.2.3.4:80` unquoted; accept those
        // rather than blame the proxy's hop for its client.
        let lenient = |c: char| token(c) || matches!(c, ':' | '[' | ']');
        return (!text.is_empty() && text.chars().all(lenient)).then(|| text.to_owned());
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return chars.next().is_none().then_some(out),
            c => out.push(c),
        }
    }
    None
}

/// An RFC 7239 node: `192.0.2.43`, `192.0.2.43:47011`, `[2001:db8::17]`,
/// `[2001:db8::17]:4711`, the port possibly obfuscated (`:_x1`). `unknown`
/// and obfuscated identifiers (`_hidden`) name no address.
fn parse_node(node: &str) -> Option<IpAddr> {
    let (host, port) = match node.strip_prefix('[') {
        Some(rest) => {
            let (inside, after) = rest.split_once(']')?;
            let ip = inside.parse::<Ipv6Addr>().ok()?;
            (IpAddr::V6(ip), after)
        }
        // A bare IPv6 address (not RFC 7239, which brackets them, but
        // unambiguous: it has no port).
        None if node.matches(':').count() > 1 => (node.parse::<IpAddr>().ok()?, ""),
        None => {
            let (host, port) = node.split_at(node.find(':').unwrap_or(node.len()));
            (IpAddr::V4(host.parse().ok()?), port)
        }
    };
    if !port.is_empty() {
        let port = port.strip_prefix(':')?;
        let obfuscated = port.strip_prefix('_').is_some_and(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        });
        if !obfuscated && port.parse::<u16>().is_err() {
            return None;
        }
    }
    Some(host.to_canonical())
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

    fn lines(name: &str, values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(
                HeaderName::from_str(name).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        headers
    }

    fn resolve_with(peer: &str, trusted: &str, headers: &[&str]) -> IpAddr {
        let rules = ProxyRules {
            trusted: proxies(trusted),
            header: ForwardedHeader::XForwardedFor,
        };
        rules.resolve(ip(peer), &lines("x-forwarded-for", headers))
    }

    fn resolve_forwarded(peer: &str, trusted: &str, headers: &[&str]) -> IpAddr {
        let rules = ProxyRules {
            trusted: proxies(trusted),
            header: ForwardedHeader::Forwarded,
        };
        rules.resolve(ip(peer), &lines("forwarded", headers))
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
    fn garbage_left_of_the_client_is_ignored() {
        for header in [
            "junk, 203.0.113.50",
            "<script>, 203.0.113.50",
            ", 203.0.113.50",
            "unknown,,1.1.1.1; DROP TABLE, 203.0.113.50",
            "300.1.1.1, 203.0.113.50",
            "[::1, 203.0.113.50",
        ] {
            assert_eq!(
                resolve_with("127.0.0.1", "127.0.0.1/32", &[header]),
                ip("203.0.113.50"),
                "{header}"
            );
        }
    }

    #[test]
    fn garbage_where_the_client_should_be_is_blamed_on_the_peer() {
        for header in [
            "not-an-ip",
            "1.1.1.1, garbage",
            "1.1.1.1,",
            "1.1.1.1, ",
            "unknown",
            "1.1.1.1; DROP TABLE",
            "300.1.1.1",
            "[::1",
            "[2001:db8::1]:99999",
            "1.2.3.4:port",
        ] {
            assert_eq!(
                resolve_with("10.0.0.2", "10.0.0.0/8", &[header]),
                ip("10.0.0.2"),
                "{header}"
            );
        }
    }

    #[test]
    fn garbage_behind_a_trusted_hop_is_blamed_on_that_hop() {
        // 10.0.0.5 (our outer proxy) passed on something it could not
        // parse: the request is that proxy's, not the peer's, not the
        // client-chosen 1.1.1.1's, and not anonymous.
        assert_eq!(
            resolve_with("10.0.0.2", "10.0.0.0/8", &["1.1.1.1, junk, 10.0.0.5"]),
            ip("10.0.0.5")
        );
    }

    #[test]
    fn non_ascii_bytes_are_only_a_problem_where_the_walk_reaches_them() {
        let rules = ProxyRules {
            trusted: proxies("10.0.0.0/8"),
            header: ForwardedHeader::XForwardedFor,
        };
        let mut headers = HeaderMap::new();
        let value = HeaderValue::from_bytes(b"1.1.1.1\xff, 198.51.100.7").unwrap();
        headers.insert("x-forwarded-for", value);
        assert_eq!(rules.resolve(ip("10.0.0.2"), &headers), ip("198.51.100.7"));

        let value = HeaderValue::from_bytes(b"1.1.1.1\xff").unwrap();
        headers.insert("x-forwarded-for", value);
        assert_eq!(rules.resolve(ip("10.0.0.2"), &headers), ip("10.0.0.2"));
    }

    #[test]
    fn empty_lines_are_no_hops() {
        assert_eq!(
            resolve_with("10.0.0.2", "10.0.0.0/8", &["", "198.51.100.7", "  "]),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn long_garbage_is_logged_only_in_part() {
        let long = vec![b'x'; 10_000];
        let logged = excerpt(&long);
        assert_eq!(logged.len(), MAX_LOGGED_ENTRY + 3);
        assert_eq!(excerpt(b"a\nb\xff"), "a?b?");
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
        assert_eq!(
            resolve_with("10.0.0.2", "10.0.0.0/8", &["[2001:db8::1]:443, 10.0.0.9"]),
            ip("2001:db8::1")
        );
        assert_eq!(
            resolve_with("10.0.0.2", "10.0.0.0/8", &["::ffff:198.51.100.7"]),
            ip("198.51.100.7")
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
    fn forwarded_names_the_client_in_for() {
        for (header, client) in [
            ("for=198.51.100.7", "198.51.100.7"),
            ("For=198.51.100.7;proto=https;by=10.0.0.2", "198.51.100.7"),
            ("for=\"198.51.100.7:4711\"", "198.51.100.7"),
            ("for=\"198.51.100.7:_port\"", "198.51.100.7"),
            ("for=\"[2001:db8::1]:4711\"", "2001:db8::1"),
            ("for=\"[2001:db8::1]\"", "2001:db8::1"),
            ("for=\"2001:db8::1\"", "2001:db8::1"),
            ("for=[2001:db8::1]:443", "2001:db8::1"),
            ("proto=https; for = 198.51.100.7", "198.51.100.7"),
            (
                "for=1.1.1.1, for=198.51.100.7, for=10.0.0.5",
                "198.51.100.7",
            ),
            ("for=_hidden, for=198.51.100.7", "198.51.100.7"),
            ("for=\"a,b\", for=198.51.100.7", "198.51.100.7"),
        ] {
            assert_eq!(
                resolve_forwarded("10.0.0.2", "10.0.0.0/8", &[header]),
                ip(client),
                "{header}"
            );
        }
    }

    #[test]
    fn forwarded_lines_are_read_in_order() {
        assert_eq!(
            resolve_forwarded(
                "10.0.0.2",
                "10.0.0.0/8",
                &["for=1.1.1.1", "for=198.51.100.7", "for=10.0.0.5"]
            ),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn forwarded_without_an_address_is_blamed_on_the_sending_hop() {
        for header in [
            "for=unknown",
            "for=_hidden",
            "for=\"_hidden:80\"",
            "proto=https",
            "for=1.1.1.1;for=2.2.2.2",
            "for=\"198.51.100.7",
            "for=\"198.51.100.7\"x",
            "for=",
            "for=198.51.100.7:http",
            "garbage",
            "for=198.51.100.7,",
        ] {
            assert_eq!(
                resolve_forwarded("10.0.0.2", "10.0.0.0/8", &[header]),
                ip("10.0.0.2"),
                "{header}"
            );
        }
        assert_eq!(
            resolve_forwarded(
                "10.0.0.2",
                "10.0.0.0/8",
                &["for=1.1.1.1, for=unknown, for=10.0.0.5"]
            ),
            ip("10.0.0.5")
        );
    }

    #[test]
    fn only_the_configured_header_is_read() {
        let mut headers = lines("forwarded", &["for=6.6.6.6"]);
        headers.insert("x-forwarded-for", HeaderValue::from_static("198.51.100.7"));
        let xff = ProxyRules {
            trusted: proxies("10.0.0.0/8"),
            header: ForwardedHeader::XForwardedFor,
        };
        assert_eq!(xff.resolve(ip("10.0.0.2"), &headers), ip("198.51.100.7"));
        let forwarded = ProxyRules {
            header: ForwardedHeader::Forwarded,
            ..xff
        };
        assert_eq!(forwarded.resolve(ip("10.0.0.2"), &headers), ip("6.6.6.6"));
    }

    #[test]
    fn the_header_choice_parses() {
        assert_eq!(
            "Forwarded".parse::<ForwardedHeader>(),
            Ok(ForwardedHeader::Forwarded)
        );
        assert_eq!(
            " x-forwarded-for ".parse::<ForwardedHeader>(),
            Ok(ForwardedHeader::XForwardedFor)
        );
        assert!("x-real-ip".parse::<ForwardedHeader>().is_err());
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
}

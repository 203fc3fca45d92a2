//! Accepting connections for the gRPC servers, and dialling a listener of
//! this process.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::net::{TcpListener, TcpStream};
use tokio_stream::{Stream, StreamExt, wrappers::TcpListenerStream};

/// Accepted connections with Nagle's algorithm off. A gRPC response goes out
/// as several small HTTP/2 frames (headers, data, trailers); with Nagle on,
/// the later ones wait for the peer's delayed ACK — measured here as a 40 ms
/// stall on every response bigger than a bare status (a login's tokens, a
/// page of the log).
pub fn incoming_nodelay(listener: TcpListener) -> impl Stream<Item = std::io::Result<TcpStream>> {
    TcpListenerStream::new(listener).map(|conn| {
        if let Ok(conn) = &conn {
            let _ = conn.set_nodelay(true);
        }
        conn
    })
}

/// The URL a client in this process dials to reach a server listening on
/// `listen`: a wildcard address (`0.0.0.0`, `[::]`) is dialled on the
/// loopback of its family, since no one can connect to "any address".
pub fn dial_url(listen: SocketAddr, tls: bool) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{}", SocketAddr::new(ip, listen.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listeners_are_dialled_on_loopback() {
        let url = |s: &str, tls| dial_url(s.parse().unwrap(), tls);
        assert_eq!(url("0.0.0.0:50051", false), "http://127.0.0.1:50051");
        assert_eq!(url("[::]:50052", true), "https://[::1]:50052");
        assert_eq!(url("10.1.2.3:7", false), "http://10.1.2.3:7");
        assert_eq!(url("[::1]:7", false), "http://[::1]:7");
    }
}

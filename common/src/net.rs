//! Accepting connections for the gRPC servers.

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

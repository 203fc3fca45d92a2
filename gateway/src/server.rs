//! The HTTP server loop, in place of `axum::serve`, which (as of axum 0.8.9)
//! offers no timeouts and no connection cap: it serves every accepted
//! connection for as long as the client likes. Here each connection is
//! bounded three ways:
//!
//! - **Request head**: a connection must deliver a complete request head
//!   within `header_read_timeout`, or it is closed. The first head is
//!   timed here (it covers the HTTP/1-or-2 sniffing that hyper-util's auto
//!   builder does without any timeout); later heads on a kept-alive HTTP/1
//!   connection by hyper's own `header_read_timeout`, which also closes
//!   idle kept-alive connections after that time.
//! - **Request body**: the whole body must arrive within `body_timeout` of
//!   the request head ([`DeadlineBody`], a hard deadline rather than a
//!   per-read one, so a byte a second does not keep a request alive); the
//!   body reader answers 408 when it passes.
//! - **Connections**: at most `max_connections` are served at once. Past
//!   that, a new connection gets a fixed `503` with `Connection: close`
//!   and `Retry-After`, written without reading its request, and is closed.
//!   A clear answer beats the alternatives: stopping `accept` would leave
//!   clients hanging in the kernel backlog until they time out, and closing
//!   silently looks like a network fault. A load balancer retries a 503
//!   elsewhere.
//!
//! Graceful shutdown is kept: on the signal the listener is dropped, every
//! connection is told to finish its in-flight request and close, and the
//! loop returns once all have. Connections that never sent a complete head
//! are closed at once; a kept-alive connection halfway through sending its
//! next head can hold shutdown for up to `header_read_timeout`.

use std::{
    io,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{Router, body::Body, extract::ConnectInfo, http::Request};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{Semaphore, watch},
};
use tower::ServiceExt;
use tower_http::timeout::DeadlineBody;

/// Default `GATEWAY_HEADER_READ_TIMEOUT`: a real client sends its request
/// head in one packet right after connecting (or at once after a response
/// on a kept-alive connection), so 10 s is generous even on a bad mobile
/// link, yet it frees a slowloris connection 10 s after it stalls. Proxies
/// in front keep idle upstream connections for less than that or reconnect.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `GATEWAY_BODY_TIMEOUT`: bodies are at most 64 KiB (a login or
/// registration form is under 1 KiB); 15 s allows 64 KiB at about 4 KiB/s.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(15);
/// Default `GATEWAY_MAX_CONNECTIONS`: one idle connection costs a few KiB
/// (the task, hyper's 8 KiB read buffer, socket buffers), so 10,000 is tens
/// of MiB at most; it stays below common `ulimit -n` values (the container
/// images' 1,048,576; many hosts' 65,536) with room for the gRPC channels,
/// and far above what one gateway replica serves in practice (connections
/// come pooled from a proxy, or are short-lived from clients).
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// Limits on what one client connection may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Time from accepting a connection (or finishing a response on a
    /// kept-alive one) to a complete request head.
    pub header_read_timeout: Duration,
    /// Time from the request head to the end of its body.
    pub body_timeout: Duration,
    /// Connections served at once; more are refused with a 503.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    /// The documented defaults (above).
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// The answer to a connection past the cap. Fixed bytes, written without
/// reading the request: the point is to spend nothing on it.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
content-length: 96\r\n\
connection: close\r\n\
retry-after: 1\r\n\
x-content-type-options: nosniff\r\n\
cache-control: no-store\r\n\
\r\n\
{\"detail\":\"Too many connections to this server, try again later.\",\"code\":\"too_many_connections\"}";

/// Refused connections drained at once (see [`refuse`]); past this they are
/// closed at once.
const MAX_DRAINING: usize = 256;
/// How long a refused connection's request is read and discarded, so the
/// client can read the 503 before the close.
const DRAIN_TIME: Duration = Duration::from_millis(500);

/// Serves `router` on `listener` until `shutdown` resolves, then finishes
/// in-flight requests and returns. Every request carries the peer address
/// as [`ConnectInfo<SocketAddr>`].
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    // CONNECT for HTTP/2 upgrades, as axum::serve enables it.
    builder.http2().enable_connect_protocol();
    let builder = Arc::new(builder);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let draining = Arc::new(Semaphore::new(MAX_DRAINING));
    // `stop` tells connections to finish; every connection task holds a
    // `done` receiver, so `done_tx.closed()` resolves when all have ended.
    let (stop_tx, stop_rx) = watch::channel(());
    let (done_tx, done_rx) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refuse(tcp, &draining);
            continue;
        };
        // Nagle off: a response's headers and body are separate writes.
        let _ = tcp.set_nodelay(true);
        let connection = Connection {
            builder: builder.clone(),
            router: router.clone(),
            limits,
            peer,
        };
        let (stop, done) = (stop_rx.clone(), done_rx.clone());
        tokio::spawn(async move {
            connection.serve(tcp, stop).await;
            drop(permit);
            drop(done);
        });
    }

    drop(listener);
    drop(stop_tx);
    drop(done_rx);
    done_tx.closed().await;
}

/// One accepted connection and what serving it needs.
struct Connection {
    /// The shared hyper configuration.
    builder: Arc<auto::Builder<TokioExecutor>>,
    /// The application.
    router: Router,
    /// Timeouts.
    limits: ConnectionLimits,
    /// The TCP peer.
    peer: SocketAddr,
}

impl Connection {
    /// Serves requests until the client leaves, a limit passes, or `stop`
    /// fires (then the in-flight request is finished first).
    async fn serve(self, tcp: TcpStream, mut stop: watch::Receiver<()>) {
        let Self {
            builder,
            router,
            limits,
            peer,
        } = self;
        let got_request = Arc::new(AtomicBool::new(false));
        let seen = got_request.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            seen.store(true, Ordering::Relaxed);
            let mut request = request.map(|body| with_deadline(body, limits.body_timeout));
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(request)
        });
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
        let mut connection = std::pin::pin!(connection);
        let first_head = tokio::time::sleep(limits.header_read_timeout);
        let mut first_head = std::pin::pin!(first_head);
        let (mut head_checked, mut stopping) = (false, false);
        loop {
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::trace!(%peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                () = &mut first_head, if !head_checked => {
                    head_checked = true;
                    if !got_request.load(Ordering::Relaxed) {
                        tracing::debug!(%peer, "no request head in time; closing");
                        return;
                    }
                }
                _ = stop.changed(), if !stopping => {
                    // Nothing was ever asked on this connection: nothing to
                    // finish (hyper would wait for a half-sent head).
                    if !got_request.load(Ordering::Relaxed) {
                        return;
                    }
                    stopping = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// The request body with the deadline for its end; bodies that are
/// already complete (most GETs) skip the timer.
fn with_deadline(body: Incoming, timeout: Duration) -> Body {
    if body.is_end_stream() {
        Body::new(body)
    } else {
        Body::new(DeadlineBody::new(timeout, body))
    }
}

/// Answers a connection past the cap with [`REFUSAL`] and closes it. Closing
/// a socket with unread data makes the kernel send a reset, which can
/// destroy the 503 before the client reads it, so (for at most
/// [`MAX_DRAINING`] connections at once, [`DRAIN_TIME`] each) the request is
/// read and discarded first.
fn refuse(mut tcp: TcpStream, draining: &Arc<Semaphore>) {
    metrics::counter!("gateway_connections_refused_total").increment(1);
    // The socket buffer is empty, so this small write completes at once.
    let _ = tcp.try_write(REFUSAL);
    let Ok(permit) = draining.clone().try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let _ = tcp.shutdown().await;
        let mut sink = [0u8; 4096];
        let _ = tokio::time::timeout(DRAIN_TIME, async {
            while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
        drop(permit);
    });
}

/// What to do when `accept` fails: errors about one connection (it was
/// reset before we took it) are nothing; anything else (out of file
/// descriptors, say) is logged and retried after a pause, so the loop does
/// not spin.
async fn accept_failed(e: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed; retrying in 1s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_declares_its_body_length() {
        let text = std::str::from_utf8(REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}\r\n", body.len())));
        serde_json::from_str::<serde_json::Value>(body).unwrap();
    }
}

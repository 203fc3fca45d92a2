//! Slow and greedy clients against the real server loop: half-sent request
//! heads, trickled bodies, and more connections than the cap.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::helpers::{TestApp, spawn_app_with};

const LOGIN: &str = "/api/accounts/login/";

/// Reads until the server closes the connection (EOF or reset), or
/// `limit` passes; what was read, and whether it closed in time.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

/// One HTTP/1.1 response with a `content-length` body, read without
/// waiting for the connection to close.
async fn read_response(stream: &mut (impl AsyncRead + Unpin)) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap();
            if body.len() >= length {
                return text;
            }
        }
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed early: {text}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// One `GET /healthz` on a kept-alive raw connection; the status line.
async fn healthz_on(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .unwrap();
    let response = read_response(stream).await;
    response.lines().next().unwrap().to_owned()
}

async fn login(app: &TestApp) -> (u16, Duration) {
    let started = Instant::now();
    let response = app
        .post_json(
            LOGIN,
            &json!({"username": "alice", "password": "right-password"}),
        )
        .await;
    (response.status().as_u16(), started.elapsed())
}

#[tokio::test]
async fn half_sent_request_heads_are_closed_after_the_header_timeout_without_blocking_others() {
    let header_timeout = Duration::from_secs(2);
    let app = spawn_app_with(|c| c.limits.header_read_timeout = header_timeout).await;
    let opened = Instant::now();
    let mut slow = Vec::new();
    for i in 0..200 {
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        // Half of them stop inside a header line; the other half after two
        // bytes, before hyper can even tell HTTP/1 from HTTP/2.
        let partial: &[u8] = if i % 2 == 0 {
            b"POST /api/accounts/login/ HTTP/1.1\r\nHost: gw\r\nContent-Ty"
        } else {
            b"PO"
        };
        stream.write_all(partial).await.unwrap();
        slow.push(stream);
    }

    // While all 200 are held, a real login goes through at once.
    let (status, took) = login(&app).await;
    assert_eq!(status, 200);
    eprintln!("login while 200 half-open connections were held: {took:?}");
    assert!(took < Duration::from_millis(500), "login took {took:?}");
    assert!(opened.elapsed() < header_timeout, "setup too slow to tell");

    // And every one of them is closed once the header timeout has passed.
    let deadline = header_timeout + Duration::from_secs(3);
    for (i, stream) in slow.iter_mut().enumerate() {
        let left = deadline.saturating_sub(opened.elapsed());
        let (_, closed) = read_until_closed(stream, left).await;
        assert!(
            closed,
            "connection {i} still open after {:?}",
            opened.elapsed()
        );
    }
    assert!(opened.elapsed() >= header_timeout);
    eprintln!("all 200 closed {:?} after opening", opened.elapsed());
}

#[tokio::test]
async fn a_kept_alive_connection_that_goes_quiet_is_closed_after_the_header_timeout() {
    let header_timeout = Duration::from_secs(1);
    let app = spawn_app_with(|c| c.limits.header_read_timeout = header_timeout).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    assert_eq!(healthz_on(&mut stream).await, "HTTP/1.1 200 OK");

    let idle = Instant::now();
    let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(4)).await;

    assert!(closed);
    assert!(idle.elapsed() >= header_timeout - Duration::from_millis(100));
}

#[tokio::test]
async fn a_body_trickled_slowly_is_refused_with_408() {
    let app = spawn_app_with(|c| c.limits.body_timeout = Duration::from_secs(1)).await;
    let body = br#"{"username": "alice", "password": "right-password"}"#;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(
            format!(
                "POST {LOGIN} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let started = Instant::now();
    // One byte every 100 ms: 5 s for the whole body.
    let trickle = tokio::spawn(async move {
        for byte in body {
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });

    let response = tokio::time::timeout(Duration::from_secs(4), read_response(&mut reader))
        .await
        .expect("no answer within 4 s");
    trickle.abort();

    assert!(
        response.starts_with("HTTP/1.1 408 Request Timeout"),
        "{response}"
    );
    let (head, json) = response.split_once("\r\n\r\n").unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json")
    );
    let json: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(json["code"], "body_timeout", "{json}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // The login reached auth-service once, as an attempt whose body could
    // not be read (so it is logged, and no password was checked).
    let calls: Vec<Vec<String>> = app
        .auth
        .login
        .calls()
        .into_iter()
        .map(|(r, _)| r.malformed_fields)
        .collect();
    assert_eq!(calls, [vec!["body".to_owned()]]);
}

#[tokio::test]
async fn a_body_sent_in_time_is_not_affected_by_the_body_timeout() {
    let app = spawn_app_with(|c| c.limits.body_timeout = Duration::from_secs(1)).await;

    let (status, _) = login(&app).await;

    assert_eq!(status, 200);
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_while_those_under_it_work() {
    let app = spawn_app_with(|c| c.limits.max_connections = 3).await;
    // Three connections: one in use, two idle.
    let mut working = TcpStream::connect(app.addr).await.unwrap();
    assert_eq!(healthz_on(&mut working).await, "HTTP/1.1 200 OK");
    let idle_a = TcpStream::connect(app.addr).await.unwrap();
    let _idle_b = TcpStream::connect(app.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // A fourth is answered 503 and closed, without the server reading it.
    let mut over = TcpStream::connect(app.addr).await.unwrap();
    over.write_all(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .unwrap();
    let (refusal, closed) = read_until_closed(&mut over, Duration::from_secs(2)).await;
    assert!(closed);
    assert!(
        refusal.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{refusal:?}"
    );
    assert!(refusal.contains("connection: close\r\n"));
    assert!(refusal.contains("retry-after: 1\r\n"));
    assert!(refusal.contains("\"code\":\"too_many_connections\""));

    // The ones under the cap keep working.
    assert_eq!(healthz_on(&mut working).await, "HTTP/1.1 200 OK");

    // Once one leaves, a new connection is served again.
    drop(idle_a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fresh = TcpStream::connect(app.addr).await.unwrap();
    assert_eq!(healthz_on(&mut fresh).await, "HTTP/1.1 200 OK");
}

#[tokio::test]
async fn shutdown_finishes_promptly_while_slow_and_idle_connections_are_open() {
    let config = gateway::Config::for_tests("http://127.0.0.1:1", "http://127.0.0.1:1");
    let app = gateway::Application::build(config).await.unwrap();
    let addr = app.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let mut idle = TcpStream::connect(addr).await.unwrap();
    assert_eq!(healthz_on(&mut idle).await, "HTTP/1.1 200 OK");
    let mut half_head = TcpStream::connect(addr).await.unwrap();
    half_head
        .write_all(b"GET /healthz HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let started = Instant::now();
    stop.send(()).unwrap();
    let finished = tokio::time::timeout(Duration::from_secs(5), server).await;

    // Well before the 10 s header timeout: nothing was in flight.
    assert!(finished.is_ok(), "still serving after 5 s");
    finished.unwrap().unwrap().unwrap();
    eprintln!("shutdown took {:?}", started.elapsed());
    for stream in [&mut idle, &mut half_head, &mut silent] {
        let (_, closed) = read_until_closed(stream, Duration::from_secs(1)).await;
        assert!(closed);
    }
    assert!(TcpStream::connect(addr).await.is_err());
}

//! A real SMTP server (mailin-embedded) on loopback that keeps every message.

use std::{
    net::TcpListener,
    sync::{Arc, Mutex},
    time::Duration,
};

use mailin_embedded::{Handler, Server, SslConfig, response::Response};

/// One received message.
#[derive(Debug, Clone)]
pub struct Mail {
    /// Envelope recipients.
    pub to: Vec<String>,
    /// Raw RFC 5322 text.
    pub data: String,
}

#[derive(Clone, Default)]
struct Collector {
    inbox: Arc<Mutex<Vec<Mail>>>,
    to: Vec<String>,
    data: Vec<u8>,
}

impl Handler for Collector {
    fn data_start(&mut self, _domain: &str, _from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.to = to.to_vec();
        self.data.clear();
        mailin_embedded::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let mail = Mail {
            to: std::mem::take(&mut self.to),
            data: String::from_utf8_lossy(&std::mem::take(&mut self.data)).into_owned(),
        };
        self.inbox.lock().unwrap().push(mail);
        mailin_embedded::response::OK
    }
}

/// A running SMTP server; it lives as long as the test process.
#[derive(Clone)]
pub struct SmtpServer {
    /// `smtp://127.0.0.1:<port>`, for `SMTP_URL`.
    pub url: String,
    inbox: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpServer {
    /// Binds 127.0.0.1:0 and serves on its own thread.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let collector = Collector::default();
        let inbox = collector.inbox.clone();
        let mut server = Server::new(collector);
        server
            .with_name("smtp.test")
            .with_ssl(SslConfig::None)
            .unwrap()
            .with_tcp_listener(listener);
        std::thread::spawn(move || {
            if let Err(e) = server.serve() {
                eprintln!("test SMTP server stopped: {e}");
            }
        });
        Self {
            url: format!("smtp://127.0.0.1:{port}"),
            inbox,
        }
    }

    /// Every message received for `to` so far.
    pub fn messages_to(&self, to: &str) -> Vec<Mail> {
        let to = to.to_lowercase();
        self.inbox
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.to.iter().any(|t| t.to_lowercase() == to))
            .cloned()
            .collect()
    }

    /// Waits (up to 10 s) for the `n`-th message to `to` and returns the
    /// 6-digit code in it.
    pub async fn wait_for_code(&self, to: &str, n: usize) -> String {
        for _ in 0..200 {
            if let Some(mail) = self.messages_to(to).get(n - 1) {
                return extract_code(&mail.data)
                    .unwrap_or_else(|| panic!("no code in mail: {}", mail.data));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no mail #{n} for {to} within 10 s");
    }
}

/// The code after "code is:" in a verification email.
pub fn extract_code(data: &str) -> Option<String> {
    let rest = &data[data.find("code is:")? + "code is:".len()..];
    let code: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    (code.len() == 6).then_some(code)
}

//! The real binaries refuse to serve internal gRPC on a network address
//! that anyone could call: without `INTERNAL_TOKEN` (or client
//! certificates) they stop at start-up with one line naming the variable,
//! unless the operator opts out explicitly.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use system_tests::processes::{
    Processes, build_binaries, exit_within, free_addr, spawn, wait_listening,
};

/// The environment of `service` listening on all interfaces at `port`.
fn on_all_interfaces(
    service: &str,
    port: u16,
    dir: &std::path::Path,
) -> Vec<(&'static str, String)> {
    match service {
        "auth-service" => vec![
            ("AUTH_GRPC_ADDR", format!("0.0.0.0:{port}")),
            ("AUTH_METRICS_ADDR", "off".to_owned()),
            (
                "AUTH_DATABASE_URL",
                format!("sqlite://{}", dir.join("auth.db").display()),
            ),
            ("MAIL_DIR", dir.join("mail").display().to_string()),
        ],
        _ => vec![
            ("AUDIT_GRPC_ADDR", format!("0.0.0.0:{port}")),
            ("AUDIT_METRICS_ADDR", "off".to_owned()),
            (
                "AUDIT_DATABASE_URL",
                format!("sqlite://{}", dir.join("audit.db").display()),
            ),
        ],
    }
}

/// A refusal comes at once; a service that starts serving instead fails
/// the test after this long rather than hanging it.
const REFUSAL_LIMIT: Duration = Duration::from_secs(30);

#[test]
fn grpc_services_on_a_network_address_need_a_token_or_an_explicit_opt_out() {
    build_binaries();
    let dir = tempfile::tempdir().unwrap();
    for service in ["auth-service", "audit-service"] {
        let port = free_addr().port();
        let env = on_all_interfaces(service, port, dir.path());

        let (status, stderr) = exit_within(service, &env, REFUSAL_LIMIT);
        assert!(
            !status.success(),
            "{service} started with internal gRPC open"
        );
        assert!(
            stderr.contains("INTERNAL_TOKEN") && stderr.contains("0.0.0.0"),
            "{service}: {stderr}"
        );
        let db = if service == "auth-service" {
            "auth.db"
        } else {
            "audit.db"
        };
        assert!(
            !dir.path().join(db).exists(),
            "{service} touched its database before refusing"
        );

        let mut placeholder = env.clone();
        placeholder.push((
            "INTERNAL_TOKEN",
            "change-me-to-a-long-random-string".to_owned(),
        ));
        let (status, stderr) = exit_within(service, &placeholder, REFUSAL_LIMIT);
        assert!(!status.success(), "{service} took the example token");
        assert!(stderr.contains("placeholder"), "{service}: {stderr}");

        for extra in [
            (
                "INTERNAL_TOKEN",
                "0123456789abcdef0123456789abcdef".to_owned(),
            ),
            ("INTERNAL_ALLOW_OPEN", "true".to_owned()),
        ] {
            let mut env = env.clone();
            env.push(extra);
            let mut procs = Processes::default();
            procs.0.push(spawn(service, &env));
            wait_listening(format!("127.0.0.1:{port}").parse().unwrap(), service);
            drop(procs);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

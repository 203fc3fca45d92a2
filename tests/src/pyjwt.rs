//! An independent verifier: PyJWT's `PyJWKClient` against our JWKS URL, as a
//! third party would check our tokens. One long-lived Python process keeps
//! the client (and its key cache) across calls, the way a real service does.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
};

use serde_json::Value;

/// Reads one token per line, answers one JSON line: `{"ok": true, "kid",
/// "claims"}` or `{"ok": false, "error"}` (PyJWT's message).
const SCRIPT: &str = r#"
import json, sys
import jwt
client = jwt.PyJWKClient(sys.argv[1], lifespan=float(sys.argv[3]), cooldown_duration=float(sys.argv[4]))
for line in sys.stdin:
    token = line.strip()
    try:
        key = client.get_signing_key_from_jwt(token)
        claims = jwt.decode(token, key, algorithms=sys.argv[5].split(","), issuer=sys.argv[2])
        out = {"ok": True, "kid": key.key_id, "claims": claims}
    except Exception as e:
        out = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    print(json.dumps(out), flush=True)
"#;

/// A running PyJWT verifier.
pub struct PyJwt {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl PyJwt {
    /// Starts a verifier for tokens of `issuer` against `jwks_url`, caching
    /// the key set for `lifespan` (PyJWT's default: 300 s) and refetching on
    /// an unknown `kid` at most once per `cooldown` (default: 30 s); `None`
    /// when python3 or PyJWT (with `cryptography`, for EdDSA) is missing,
    /// which fails the test instead when `CI=true` (`.ci/run` installs it).
    pub fn start(
        jwks_url: &str,
        issuer: &str,
        lifespan: std::time::Duration,
        cooldown: std::time::Duration,
    ) -> Option<Self> {
        Self::start_for(jwks_url, issuer, lifespan, cooldown, &["EdDSA"])
    }

    /// Like [`PyJwt::start`], accepting tokens of `algorithms` (PyJWT's
    /// `algorithms=`: what a service configured for our setting allows).
    pub fn start_for(
        jwks_url: &str,
        issuer: &str,
        lifespan: std::time::Duration,
        cooldown: std::time::Duration,
        algorithms: &[&str],
    ) -> Option<Self> {
        if !crate::tools::python_modules(&["jwt", "cryptography"], "pip install 'pyjwt[crypto]'") {
            return None;
        }
        let mut child = Command::new("python3")
            .args([
                "-c",
                SCRIPT,
                jwks_url,
                issuer,
                &lifespan.as_secs_f64().to_string(),
                &cooldown.as_secs_f64().to_string(),
                &algorithms.join(","),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 starts");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Some(Self {
            child,
            stdin,
            stdout,
        })
    }

    /// PyJWT's verdict on `token`. Blocking (Python fetches the JWKS from
    /// the gateway meanwhile), so it runs off the async workers.
    pub async fn verify(self, token: &str) -> (Self, Value) {
        let token = token.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut this = self;
            writeln!(this.stdin, "{token}").expect("PyJWT verifier takes input");
            let mut line = String::new();
            this.stdout
                .read_line(&mut line)
                .expect("PyJWT verifier answers");
            let verdict = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("PyJWT verifier said {line:?}: {e}"));
            (this, verdict)
        })
        .await
        .expect("the verifier task ends")
    }
}

impl Drop for PyJwt {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! The verifier issue #15 names: djangorestframework-simplejwt, as a Django
//! service downstream of us configures it (`SIMPLE_JWT = {"ALGORITHM": …,
//! "JWK_URL": …, "ISSUER": …}`), checking our access tokens with its own
//! `AccessToken` class: signature by the key of the token's `kid` from our
//! `/.well-known/jwks.json`, expiry, issuer, `token_type` and `jti`.

use std::{
    io::Write,
    process::{Command, Stdio},
};

use serde_json::Value;

/// Reads one token per line, answers one JSON line each: `{"ok": true,
/// "claims"}` or `{"ok": false, "error"}` (simplejwt's message).
const SCRIPT: &str = r#"
import json, sys
import django
from django.conf import settings
settings.configure(
    SECRET_KEY="unused: tokens are verified with the keys at JWK_URL",
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "rest_framework_simplejwt"],
    SIMPLE_JWT={"ALGORITHM": sys.argv[2], "JWK_URL": sys.argv[1], "ISSUER": sys.argv[3]},
)
django.setup()
from rest_framework_simplejwt.tokens import AccessToken
for line in sys.stdin:
    try:
        token = AccessToken(line.strip())
        out = {"ok": True, "claims": dict(token.payload)}
    except Exception as e:
        out = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    print(json.dumps(out), flush=True)
"#;

/// simplejwt's verdict on each of `tokens`, configured for `algorithm` and
/// our JWKS at `jwks_url`; `None` when python3 with Django and simplejwt is
/// missing, which fails the test instead when `CI=true` (`.ci/run`
/// installs them). Blocking (simplejwt fetches the JWKS from the gateway
/// meanwhile), so it runs off the async workers.
pub async fn verify(
    jwks_url: &str,
    algorithm: &str,
    issuer: &str,
    tokens: &[&str],
) -> Option<Vec<Value>> {
    if !crate::tools::python_modules(
        &["django", "rest_framework_simplejwt", "jwt", "cryptography"],
        "pip install djangorestframework-simplejwt 'pyjwt[crypto]'",
    ) {
        return None;
    }
    let args = [jwks_url, algorithm, issuer].map(str::to_owned);
    let input: String = tokens.iter().map(|t| format!("{t}\n")).collect();
    let output = tokio::task::spawn_blocking(move || {
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(SCRIPT)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 starts");
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(input.as_bytes())
            .expect("simplejwt verifier takes input");
        child.wait_with_output().expect("simplejwt verifier ends")
    })
    .await
    .expect("the verifier task ends");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "simplejwt verifier failed ({}): {stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let verdicts: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect();
    assert_eq!(verdicts.len(), tokens.len(), "{stdout}");
    Some(verdicts)
}

//! Optional TLS for internal gRPC, configured by PEM file paths.
//!
//! Servers: `<PREFIX>_TLS_CERT` + `<PREFIX>_TLS_KEY` switch TLS on;
//! `<PREFIX>_TLS_CLIENT_CA` additionally requires client certificates signed
//! by that CA (mutual TLS). Clients: `INTERNAL_TLS_CA` is the CA that signed
//! the servers' certificates (used for `https://` URLs);
//! `INTERNAL_TLS_CLIENT_CERT` + `INTERNAL_TLS_CLIENT_KEY` are presented
//! when servers require client certificates.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::config::{ConfigError, var};

/// Server-side TLS files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA whose client certificates are required; `None`: no client auth.
    pub client_ca: Option<PathBuf>,
}

/// Client-side TLS files.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientTls {
    /// PEM CA that signed the servers' certificates.
    pub ca: Option<PathBuf>,
    /// PEM client certificate and key, for servers that require one.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// Selects ring as the process's TLS crypto provider, once. rustls refuses
/// to guess when several providers are compiled in (another dependency
/// enables aws-lc-rs); a provider installed earlier is kept.
pub(crate) fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn is_https(url: &str) -> bool {
    url.trim_start()
        .get(..6)
        .is_some_and(|s| s.eq_ignore_ascii_case("https:"))
}

fn read(name: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path)
        .map_err(|e| ConfigError::new(name, &path.display().to_string(), e.to_string()))
}

impl ServerTls {
    /// Reads `<prefix>_TLS_CERT`, `_KEY` and `_CLIENT_CA`; `None` when TLS is off.
    pub fn from_env(prefix: &str) -> Result<Option<Self>, ConfigError> {
        let (cert_var, key_var) = (format!("{prefix}_TLS_CERT"), format!("{prefix}_TLS_KEY"));
        let ca_var = format!("{prefix}_TLS_CLIENT_CA");
        match (var(&cert_var), var(&key_var)) {
            (None, None) => match var(&ca_var) {
                // A client CA alone would silently leave the port open to
                // anyone: refuse it rather than guess.
                Some(ca) => Err(ConfigError::new(
                    &ca_var,
                    &ca,
                    format!("needs {cert_var} and {key_var} (client certificates need TLS)"),
                )),
                None => Ok(None),
            },
            (Some(cert), Some(key)) => Ok(Some(Self {
                cert: cert.into(),
                key: key.into(),
                client_ca: var(&ca_var).map(PathBuf::from),
            })),
            (Some(_), None) => Err(ConfigError::new(
                &key_var,
                "",
                "required with the certificate",
            )),
            (None, Some(_)) => Err(ConfigError::new(&cert_var, "", "required with the key")),
        }
    }

    /// Loads the files into tonic's server configuration.
    pub fn load(&self, prefix: &str) -> Result<ServerTlsConfig, ConfigError> {
        install_crypto_provider();
        let cert = read(&format!("{prefix}_TLS_CERT"), &self.cert)?;
        let key = read(&format!("{prefix}_TLS_KEY"), &self.key)?;
        let mut config = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
        if let Some(ca) = &self.client_ca {
            let ca = read(&format!("{prefix}_TLS_CLIENT_CA"), ca)?;
            config = config.client_ca_root(Certificate::from_pem(ca));
        }
        Ok(config)
    }
}

impl ClientTls {
    /// Reads `INTERNAL_TLS_CA`, `INTERNAL_TLS_CLIENT_CERT`, `INTERNAL_TLS_CLIENT_KEY`.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(var)
    }

    /// The same, through `lookup` (name ⇒ non-blank value), so a service
    /// that reads its whole configuration through a lookup for testing can
    /// share this one parser.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let identity = match (
            lookup("INTERNAL_TLS_CLIENT_CERT"),
            lookup("INTERNAL_TLS_CLIENT_KEY"),
        ) {
            (None, None) => None,
            (Some(c), Some(k)) => Some((c.into(), k.into())),
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "INTERNAL_TLS_CLIENT_KEY",
                    "",
                    "required with INTERNAL_TLS_CLIENT_CERT",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "INTERNAL_TLS_CLIENT_CERT",
                    "",
                    "required with INTERNAL_TLS_CLIENT_KEY",
                ));
            }
        };
        Ok(Self {
            ca: lookup("INTERNAL_TLS_CA").map(PathBuf::from),
            identity,
        })
    }

    /// Checks that an `https://` URL in variable `name` can be verified:
    /// there is no built-in root store, so it needs `INTERNAL_TLS_CA`.
    pub fn check_url(&self, name: &str, url: &str) -> Result<(), ConfigError> {
        if is_https(url) && self.ca.is_none() {
            return Err(ConfigError::new(
                name,
                url,
                "https:// needs INTERNAL_TLS_CA (the CA that signed the service's certificate)",
            ));
        }
        Ok(())
    }

    /// The TLS configuration for connecting to `url`: loaded from the
    /// files for `https://`, `None` (plain HTTP/2) otherwise.
    pub fn for_url(&self, url: &str) -> Result<Option<ClientTlsConfig>, ConfigError> {
        if is_https(url) {
            self.load().map(Some)
        } else {
            Ok(None)
        }
    }

    /// Loads the files into tonic's client configuration (used for
    /// `https://` URLs only).
    pub fn load(&self) -> Result<ClientTlsConfig, ConfigError> {
        install_crypto_provider();
        let mut config = ClientTlsConfig::new();
        if let Some(ca) = &self.ca {
            config = config.ca_certificate(Certificate::from_pem(read("INTERNAL_TLS_CA", ca)?));
        }
        if let Some((cert, key)) = &self.identity {
            config = config.identity(Identity::from_pem(
                read("INTERNAL_TLS_CLIENT_CERT", cert)?,
                read("INTERNAL_TLS_CLIENT_KEY", key)?,
            ));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_urls_need_a_ca_and_plain_ones_do_not() {
        let none = ClientTls::default();
        let err = none
            .check_url("AUDIT_GRPC_URL", "https://audit:50052")
            .unwrap_err();
        assert_eq!(err.name, "AUDIT_GRPC_URL");
        none.check_url("AUDIT_GRPC_URL", "http://audit:50052")
            .unwrap();
        assert!(none.for_url("http://audit:50052").unwrap().is_none());
        let with_ca = ClientTls {
            ca: Some("/nonexistent/ca.pem".into()),
            identity: None,
        };
        with_ca
            .check_url("AUDIT_GRPC_URL", "HTTPS://audit:50052")
            .unwrap();
        // Unreadable files are reported by the variable that named them.
        let err = with_ca.for_url("https://audit:50052").unwrap_err();
        assert_eq!(err.name, "INTERNAL_TLS_CA");
    }
}

//! Logging, and optional OpenTelemetry trace export, shared by every binary.
//!
//! Export starts only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or the
//! traces-only `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set: spans then go
//! by OTLP/gRPC, batched on a background thread, to that collector. Unset,
//! no exporter exists and the OpenTelemetry layer is absent, so logging
//! costs what it did before. The SDK reads the other standard variables
//! itself (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`,
//! `OTEL_EXPORTER_OTLP_COMPRESSION`, `OTEL_BSP_*`, ...).

use std::{
    io::IsTerminal as _,
    sync::atomic::{AtomicBool, Ordering},
};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use tracing_subscriber::{EnvFilter, Layer as _, fmt, layer::SubscriberExt as _};

use crate::config::{ConfigError, var};

/// The variable whose presence turns export on.
pub const OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The traces-only endpoint; it wins over [`OTLP_ENDPOINT`] when both are set.
pub const OTLP_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// Overrides the service name this process reports.
pub const SERVICE_NAME: &str = "OTEL_SERVICE_NAME";

/// Set once spans are exported; the trace-context helpers do nothing
/// (not even look at the current span) while it is false.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether this process exports spans, so propagation is worth doing.
pub(crate) fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// What [`init`] started; hand it to [`Telemetry::shutdown`] when the
/// service has stopped so the last spans are sent.
#[must_use = "call `shutdown` at exit, or the last batch of spans is lost"]
#[derive(Debug, Default)]
pub struct Telemetry {
    /// Present only when export was configured and this call installed it.
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether this handle owns a running exporter.
    pub fn is_exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Sends the spans still queued and stops the exporter (a no-op
    /// without one). Runs on a blocking thread: the SDK waits for the
    /// export, which needs this runtime's I/O to make progress.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        EXPORTING.store(false, Ordering::Relaxed);
        match tokio::task::spawn_blocking(move || provider.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "trace exporter did not shut down cleanly"),
            Err(e) => tracing::warn!(error = %e, "trace exporter shutdown task failed"),
        }
    }
}

/// Installs the global subscriber: `RUST_LOG` filters (default `info`),
/// `LOG_FORMAT=json` switches to one JSON object per line for containers
/// (`text`, the default, is for people: coloured only on a terminal and
/// without `NO_COLOR`), and spans are exported by OTLP when an endpoint is
/// configured, under `OTEL_SERVICE_NAME` or else `service` (the binary's
/// name).
///
/// A `RUST_LOG` that does not parse, or an unknown `LOG_FORMAT`, is a
/// [`ConfigError`] rather than a silent fallback, so a typo does not hide
/// the logs someone asked for.
///
/// Calling it again is harmless (later calls install nothing and return an
/// inert handle), which lets tests and the all-in-one launcher share it.
/// Must run inside a Tokio runtime: the exporter's channel lives on it.
/// A broken OTel configuration is reported and export stays off; logging
/// never depends on it.
pub fn init(service: &str) -> Result<Telemetry, ConfigError> {
    if tracing::dispatcher::has_been_set() {
        return Ok(Telemetry::default());
    }
    let filter = log_filter(var("RUST_LOG").as_deref())?;
    let json = log_format_is_json(var("LOG_FORMAT").as_deref())?;
    let fmt_layer = if json {
        fmt::layer()
            .with_target(true)
            .json()
            .flatten_event(true)
            .boxed()
    } else {
        let colour = std::io::stdout().is_terminal() && var("NO_COLOR").is_none();
        fmt::layer().with_target(true).with_ansi(colour).boxed()
    };

    let (provider, otel_error) = match otlp_endpoint() {
        None => (None, None),
        Some(endpoint) => match tracer_provider(service, &endpoint) {
            Ok(provider) => (Some(provider), None),
            Err(e) => (None, Some(e)),
        },
    };
    let otel_layer = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer(env!("CARGO_PKG_NAME")))
            .with_tracked_inactivity(false)
    });

    let subscriber = tracing_subscriber::registry()
        .with(filter)
        .with(fmt_layer)
        .with(otel_layer);
    if tracing::subscriber::set_global_default(subscriber).is_err() {
        // Another thread won the race; it owns logging (and export).
        if let Some(p) = provider {
            let _ = p.shutdown();
        }
        return Ok(Telemetry::default());
    }
    if let Some(e) = otel_error {
        tracing::error!(error = %e, "OpenTelemetry export not started");
    }
    if provider.is_some() {
        EXPORTING.store(true, Ordering::Relaxed);
        tracing::info!("exporting traces by OTLP/gRPC");
    }
    Ok(Telemetry { provider })
}

/// The `RUST_LOG` filter; unset means `info`.
fn log_filter(raw: Option<&str>) -> Result<EnvFilter, ConfigError> {
    match raw {
        None => Ok(EnvFilter::new("info")),
        Some(raw) => EnvFilter::builder().parse(raw.trim()).map_err(|e| {
            ConfigError::new(
                "RUST_LOG",
                raw,
                format!("{e} (expected directives such as info, warn,auth_service=debug or off)"),
            )
        }),
    }
}

/// Whether `LOG_FORMAT` asks for JSON; unset means text.
fn log_format_is_json(raw: Option<&str>) -> Result<bool, ConfigError> {
    match raw.map(str::trim) {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("json") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("text") => Ok(false),
        Some(v) => Err(ConfigError::new("LOG_FORMAT", v, "expected json or text")),
    }
}

/// The configured collector, traces-only variable first; empty means unset.
fn otlp_endpoint() -> Option<String> {
    [OTLP_TRACES_ENDPOINT, OTLP_ENDPOINT]
        .into_iter()
        .filter_map(|name| std::env::var(name).ok())
        .map(|v| v.trim().to_owned())
        .find(|v| !v.is_empty())
}

/// A batching provider exporting to `endpoint` by OTLP/gRPC on the
/// workspace's own tonic; `https://` endpoints are checked against the
/// public web PKI roots.
fn tracer_provider(
    service: &str,
    endpoint: &str,
) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint);
    if endpoint.starts_with("https:") {
        crate::tls::install_crypto_provider();
        exporter =
            exporter.with_tls_config(tonic::transport::ClientTlsConfig::new().with_webpki_roots());
    }
    let exporter = exporter.build()?;
    // The SDK's detectors read OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES;
    // setting the name here would override the operator's choice.
    let mut resource = Resource::builder();
    if std::env::var(SERVICE_NAME).map_or(true, |v| v.trim().is_empty()) {
        resource = resource.with_service_name(service.to_owned());
    }
    Ok(SdkTracerProvider::builder()
        .with_resource(resource.build())
        .with_batch_exporter(exporter)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_filter_is_refused_naming_rust_log() {
        let err = log_filter(Some("[[[bad")).unwrap_err();
        assert_eq!(err.name, "RUST_LOG");
        for good in ["off", "info", "warn,auth_service=debug", "  debug "] {
            assert!(log_filter(Some(good)).is_ok(), "{good}");
        }
    }

    #[test]
    fn log_format_is_json_or_text() {
        assert!(log_format_is_json(Some("JSON")).unwrap());
        assert!(!log_format_is_json(Some("text")).unwrap());
        assert!(!log_format_is_json(None).unwrap());
        assert_eq!(
            log_format_is_json(Some("jsn")).unwrap_err().name,
            "LOG_FORMAT"
        );
    }
}

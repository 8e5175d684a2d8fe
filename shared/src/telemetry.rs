//! Logging set-up, span export over OTLP (when `OTEL_EXPORTER_OTLP_ENDPOINT` is set), and W3C
//! trace context (`traceparent`) carried in NATS headers from the upload request to the worker.

use std::sync::OnceLock;

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{EnvFilter, Layer, fmt, prelude::*};

use crate::config::{LogFormat, OtlpProtocol, TelemetryConfig};

/// The span exporter, kept to flush it at shutdown.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Installs the global subscriber as service `hexflow`; see [`init_service`].
pub fn init(config: &TelemetryConfig, default_filter: &str) {
    init_service(config, "hexflow", default_filter);
}

/// Installs the global subscriber. `default_filter` applies when neither `HEXFLOW_LOG` nor
/// `RUST_LOG` is set (for example `"info,hexflow=debug"`). With an OTLP endpoint, spans are also
/// exported, named after `service` unless `OTEL_SERVICE_NAME` says otherwise. Must run inside
/// the Tokio runtime. Safe to call twice: the second call is a no-op, which lets tests and
/// `hexflow dev` share it.
pub fn init_service(config: &TelemetryConfig, service: &str, default_filter: &str) {
    let filter =
        config.filter.clone().or_else(|| std::env::var("RUST_LOG").ok()).unwrap_or_else(|| default_filter.to_owned());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|err| {
        eprintln!("HEXFLOW_LOG: invalid filter {filter:?} ({err}); using {default_filter:?}");
        EnvFilter::new(default_filter)
    });
    let fmt_layer = match config.format {
        LogFormat::Human => fmt::layer().with_target(true).boxed(),
        LogFormat::Json => fmt::layer().json().flatten_event(true).boxed(),
    };
    let otel_layer = config.otlp_endpoint.as_deref().and_then(|endpoint| {
        let name = config.service_name.as_deref().unwrap_or(service);
        match otlp_provider(endpoint, config.otlp_protocol, name) {
            Ok(provider) => {
                opentelemetry::global::set_text_map_propagator(
                    opentelemetry_sdk::propagation::TraceContextPropagator::new(),
                );
                let tracer = provider.tracer(name.to_owned());
                let _ = PROVIDER.set(provider);
                // The exporter's own HTTP/2 client must not trace itself.
                let quiet = EnvFilter::new("trace,h2=off,tonic=off,hyper=off,tower=off,opentelemetry=off");
                Some(tracing_opentelemetry::layer().with_tracer(tracer).with_filter(quiet))
            }
            Err(err) => {
                eprintln!("OTEL_EXPORTER_OTLP_ENDPOINT={endpoint}: cannot export spans ({err}); continuing without");
                None
            }
        }
    });
    let result = tracing_subscriber::registry().with(filter).with(otel_layer).with(fmt_layer).try_init();
    // An already-installed subscriber (tests, `hexflow dev`) is fine.
    drop(result);
}

fn otlp_provider(
    endpoint: &str,
    protocol: OtlpProtocol,
    service: &str,
) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
    let exporter = match protocol {
        OtlpProtocol::Grpc => {
            let builder = opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(endpoint);
            if endpoint.starts_with("https://") {
                // The system's trust store (plus SSL_CERT_FILE), as for every other TLS client here.
                let tls = opentelemetry_otlp::tonic_types::transport::ClientTlsConfig::new().with_native_roots();
                builder.with_tls_config(tls).build()?
            } else {
                builder.build()?
            }
        }
        OtlpProtocol::HttpProtobuf => {
            // OTLP/HTTP posts to `<endpoint>/v1/traces`, as every SDK does with this variable.
            let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
            opentelemetry_otlp::SpanExporter::builder().with_http().with_endpoint(url).build()?
        }
    };
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(service.to_owned()).build())
        .build())
}

/// Sends the spans still buffered (call before the process exits).
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get()
        && let Err(err) = provider.shutdown()
    {
        eprintln!("flushing spans: {err}");
    }
}

/// Makes `ctx` the remote parent of `span`, so the span joins the caller's trace in the
/// collector. Without span export it does nothing.
pub fn adopt(span: &tracing::Span, ctx: TraceContext) {
    if PROVIDER.get().is_none() {
        return;
    }
    let remote = SpanContext::new(
        TraceId::from_bytes(ctx.trace_id.to_be_bytes()),
        SpanId::from_bytes(ctx.span_id.to_be_bytes()),
        if ctx.sampled { TraceFlags::SAMPLED } else { TraceFlags::default() },
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
}

/// The context of the current span when spans are exported (the next hop's parent).
pub fn current() -> Option<TraceContext> {
    PROVIDER.get()?;
    let context = tracing::Span::current().context();
    let span = context.span();
    let sc = span.span_context();
    sc.is_valid().then(|| TraceContext {
        trace_id: u128::from_be_bytes(sc.trace_id().to_bytes()),
        span_id: u64::from_be_bytes(sc.span_id().to_bytes()),
        sampled: sc.is_sampled(),
    })
}

/// Name of the W3C trace context header.
pub const TRACEPARENT: &str = "traceparent";

/// A W3C trace context: the trace an operation belongs to and the span that caused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// 16-byte trace id.
    pub trace_id: u128,
    /// 8-byte id of the parent span.
    pub span_id: u64,
    /// The caller's sampling decision (the `sampled` trace flag), kept along the whole import.
    pub sampled: bool,
}

impl TraceContext {
    /// A new trace with a random id.
    pub fn new_root() -> Self {
        let id = uuid::Uuid::new_v4().as_u128();
        TraceContext { trace_id: id, span_id: (id >> 64) as u64 ^ id as u64, sampled: true }
    }

    /// The same trace, with a new span id (the next hop).
    pub fn child(self) -> Self {
        TraceContext { span_id: uuid::Uuid::new_v4().as_u128() as u64, ..self }
    }

    /// Parses a `traceparent` header value (`00-<32 hex>-<16 hex>-<2 hex>`).
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let span = parts.next()?;
        let flags = parts.next()?;
        if version.len() != 2 || trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok()?;
        let span_id = u64::from_str_radix(span, 16).ok()?;
        let sampled = u8::from_str_radix(flags, 16).ok()? & 1 == 1;
        (trace_id != 0 && span_id != 0).then_some(TraceContext { trace_id, span_id, sampled })
    }

    /// The header value.
    pub fn to_header(self) -> String {
        format!("00-{:032x}-{:016x}-{:02x}", self.trace_id, self.span_id, u8::from(self.sampled))
    }

    /// The trace id as 32 hex digits, for log fields.
    pub fn trace_id_hex(self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// Reads the context from NATS message headers.
    pub fn from_nats_headers(headers: Option<&async_nats::HeaderMap>) -> Option<Self> {
        headers?.get(TRACEPARENT).and_then(|v| Self::parse(v.as_str()))
    }

    /// Headers carrying this context to the next hop.
    pub fn to_nats_headers(self) -> async_nats::HeaderMap {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(TRACEPARENT, self.to_header().as_str());
        headers
    }

    /// The context to hand on from the current span: the exported span's own when spans are
    /// exported, else a new span id in the same trace.
    pub fn for_next_hop(self) -> TraceContext {
        current().unwrap_or_else(|| self.child())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_children_keep_the_trace() {
        let root = TraceContext::new_root();
        let parsed = TraceContext::parse(&root.to_header()).unwrap();
        assert_eq!(parsed, root);
        let child = root.child();
        assert_eq!(child.trace_id, root.trace_id);
        assert_ne!(child.span_id, root.span_id);
        assert_eq!(TraceContext::parse("garbage"), None);
        let unsampled = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert!(!unsampled.sampled, "the caller's decision not to sample is kept");
        assert!(unsampled.child().to_header().ends_with("-00"), "and handed on");
        assert_eq!(TraceContext::parse("00-00000000000000000000000000000000-0000000000000001-01"), None);
    }
}

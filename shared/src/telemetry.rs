//! Logging set-up and W3C trace context (`traceparent`) carried in NATS headers.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::{LogFormat, TelemetryConfig};

/// Installs the global subscriber. `default_filter` applies when neither `HEXFLOW_LOG` nor
/// `RUST_LOG` is set (for example `"info,hexflow=debug"`). Safe to call twice: the second call
/// is a no-op, which lets tests and `hexflow dev` share it.
pub fn init(config: &TelemetryConfig, default_filter: &str) {
    let filter =
        config.filter.clone().or_else(|| std::env::var("RUST_LOG").ok()).unwrap_or_else(|| default_filter.to_owned());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|err| {
        eprintln!("HEXFLOW_LOG: invalid filter {filter:?} ({err}); using {default_filter:?}");
        EnvFilter::new(default_filter)
    });
    let registry = tracing_subscriber::registry().with(filter);
    let result = match config.format {
        LogFormat::Human => registry.with(fmt::layer().with_target(true)).try_init(),
        LogFormat::Json => registry.with(fmt::layer().json().flatten_event(true)).try_init(),
    };
    // An already-installed subscriber (tests, `hexflow dev`) is fine.
    drop(result);
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
}

impl TraceContext {
    /// A new trace with a random id.
    pub fn new_root() -> Self {
        let id = uuid::Uuid::new_v4().as_u128();
        TraceContext { trace_id: id, span_id: (id >> 64) as u64 ^ id as u64 }
    }

    /// The same trace, with a new span id (the next hop).
    pub fn child(self) -> Self {
        TraceContext { trace_id: self.trace_id, span_id: uuid::Uuid::new_v4().as_u128() as u64 }
    }

    /// Parses a `traceparent` header value (`00-<32 hex>-<16 hex>-<2 hex>`).
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let span = parts.next()?;
        let _flags = parts.next()?;
        if version.len() != 2 || trace.len() != 32 || span.len() != 16 {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok()?;
        let span_id = u64::from_str_radix(span, 16).ok()?;
        (trace_id != 0 && span_id != 0).then_some(TraceContext { trace_id, span_id })
    }

    /// The header value.
    pub fn to_header(self) -> String {
        format!("00-{:032x}-{:016x}-01", self.trace_id, self.span_id)
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
        headers.insert(TRACEPARENT, self.child().to_header().as_str());
        headers
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
        assert_eq!(TraceContext::parse("00-00000000000000000000000000000000-0000000000000001-01"), None);
    }
}

//! The realtime gateway: Socket.IO (websocket, HTTP long-polling fallback) rooms fed from NATS.
//! Each import's room `progress-<id>` gets its progress throttled to one `progress-update` per
//! interval and its terminal event at once; a joining socket gets the snapshot first; a socket
//! may cancel an import; every socket hears a heartbeat, and its tenant's `data-updated`.
//!
//! Consumes: the `HEXFLOW_PROGRESS` stream (`hexflow.progress.>`, an ordered consumer that
//! resumes after reconnects). Publishes: `hexflow.cancel.<id>`. Reads: progress snapshots.
//! Tables: `imports` (owner and tenant; `cancel_requested_at` on cancel).
//!
//! # Layout
//! - [`config`]: `Config` and the Socket.IO `Options` from the environment.
//! - [`error`]: `Error`, the ack error codes.
//! - [`handlers`]: handshake auth, `join-progress`, `leave-progress`, `cancel-import`.
//! - [`fanout`]: the NATS consumer that survives reconnects.
//! - [`emit`]: room emits through the throttle, `data-updated`, heartbeat.
//! - `announce`: `data-updated` coalesced per tenant.
//! - [`throttle`]: the per-room throttle. [`rooms`]: the rooms of this replica.
//! - [`access`]: who owns an import. [`session`]: per-socket state. [`state`]: shared state, metrics.

pub mod access;
mod announce;
pub mod config;
pub mod emit;
pub mod error;
pub mod fanout;
pub mod handlers;
pub mod rooms;
pub mod session;
pub mod state;
pub mod throttle;

use std::{
    future::Future,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    http::{HeaderValue, Method, header},
};
use shared::{
    Nats,
    auth::{AuthConfig, Authenticator},
    metrics::Metrics,
    ops,
};
use socketioxide::{SocketIo, layer::SocketIoLayer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use config::{Config, Options};
pub use error::{Error, Result};
use state::{RealtimeMetrics, RealtimeState};

/// The Socket.IO layer and its background tasks (NATS fan-out, emitter, heartbeat), ready to be
/// mounted on a router: the standalone gateway's, or `hexflow dev`'s next to the upload API.
pub struct Realtime {
    layer: SocketIoLayer,
    io: SocketIo,
    state: RealtimeState,
    cors: Option<CorsLayer>,
    stop: CancellationToken,
    closed: AtomicBool,
}

impl Realtime {
    /// Builds the layer and starts the background tasks (they stop at [`Realtime::close`]).
    pub fn start(options: Options, auth: &AuthConfig, nats: Nats, db: sqlx::PgPool, metrics: &Metrics) -> Realtime {
        let auth = Authenticator::new(auth);
        if auth.is_open() {
            tracing::warn!(
                "AUTHENTICATION IS OFF (HEXFLOW_AUTH_SECRET unset): every socket is the anonymous user of tenant \"default\" and may watch and cancel every import of it"
            );
        }
        let cors = cors_layer(&options);
        let state = RealtimeState {
            data_updates: Default::default(),
            nats,
            rooms: Arc::new(rooms::Rooms::new(options.min_interval())),
            options: Arc::new(options),
            auth,
            owners: Arc::new(access::Owners::new(db)),
            consumer_alive: Arc::new(AtomicBool::new(false)),
            metrics: RealtimeMetrics::register(metrics),
        };
        // One limit on both transports: polling bodies, and websocket frames and messages (whose
        // own defaults, 16 and 64 MiB, would let a client make the gateway buffer, parse and
        // answer a message a thousand times the polling limit).
        let max_payload = usize::try_from(state.options.max_payload_bytes).unwrap_or(usize::MAX);
        let (layer, io) = SocketIo::builder()
            .max_payload(state.options.max_payload_bytes)
            .ws_max_message_size(max_payload)
            .ws_max_frame_size(max_payload)
            .ws_read_buffer_size(WS_READ_BUFFER_BYTES.min(max_payload))
            .with_state(state.clone())
            .build_layer();
        handlers::register(&io);
        let stop = CancellationToken::new();
        let (events_tx, events_rx) = fanout::channel();
        tokio::spawn(fanout::run(state.clone(), events_tx, stop.clone()));
        tokio::spawn(emit::run(io.clone(), state.clone(), events_rx, stop.clone()));
        tokio::spawn(emit::heartbeat(io.clone(), state.clone(), stop.clone()));
        Realtime { layer, io, state, cors, stop, closed: AtomicBool::new(false) }
    }

    /// `router` with Socket.IO served at `/socket.io/` (and the CORS allow-list around both).
    pub fn mount(&self, router: Router) -> Router {
        // One engine (one table of sessions) in front of the whole router: `Router::layer` would
        // build one per route and fallback, and a polling session would then be unknown to the
        // engine its next request reaches.
        let router = Router::new()
            .fallback_service(tower_layer::Layer::layer(&self.layer, router))
            .layer(axum::middleware::map_request(detach_headers));
        match &self.cors {
            Some(cors) => router.layer(cors.clone()),
            None => router,
        }
    }

    /// The readiness check: progress events flow from NATS (the consumer is attached).
    pub fn check(&self) -> (&'static str, ops::Check) {
        let state = self.state.clone();
        let check: ops::Check = Arc::new(move || {
            let consuming = state.is_consuming();
            Box::pin(async move {
                if consuming { Ok(()) } else { Err("progress consumer not attached (NATS unreachable?)".into()) }
            })
        });
        ("progress-consumer", check)
    }

    /// Disconnects every socket (so clients reconnect, to another replica behind a load
    /// balancer) and stops the background tasks.
    pub async fn close(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        tracing::info!(sockets = self.state.metrics.sockets.get(), "closing Socket.IO: disconnecting every socket");
        self.io.close().await;
        self.stop.cancel();
    }
}

/// Copies a Socket.IO request's URI and header values out of the connection's read buffer. The
/// URI and every header value hyper parses are slices of that buffer (8 KiB at least), and the
/// engine keeps every socket's request parts for the socket's whole life: each websocket would
/// hold its buffer (measured with heaptrack: 8 KiB of the 25 KiB each connection cost).
async fn detach_headers(mut request: axum::extract::Request) -> axum::extract::Request {
    if request.uri().path().starts_with("/socket.io") {
        if let Ok(uri) = request.uri().to_string().parse() {
            *request.uri_mut() = uri;
        }
        for value in request.headers_mut().values_mut() {
            // A value hyper accepted is accepted again; the copy owns its bytes.
            if let Ok(mut copy) = HeaderValue::from_bytes(value.as_bytes()) {
                copy.set_sensitive(value.is_sensitive());
                *value = copy;
            }
        }
    }
    request
}

/// The CORS allow-list; none when it is empty (same-origin pages need none).
fn cors_layer(options: &Options) -> Option<CorsLayer> {
    let origins: Vec<HeaderValue> =
        options.cors_origins.0.iter().filter_map(|origin| HeaderValue::from_str(origin).ok()).collect();
    if origins.is_empty() {
        return None;
    }
    tracing::info!(origins = ?options.cors_origins.0, "CORS allow-list");
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_credentials(true)
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION]),
    )
}

/// Turns Nagle's algorithm off: small event frames must not wait for the client's delayed ACK
/// (measured: the first update after an ack arrived ~40 ms late).
pub fn no_delay(tcp: &mut tokio::net::TcpStream) {
    if let Err(err) = tcp.set_nodelay(true) {
        tracing::debug!(error = %err, "cannot set TCP_NODELAY");
    }
}

/// A bound realtime gateway, not yet serving (split so callers learn the ports first).
pub struct Gateway {
    listener: TcpListener,
    ops_listener: TcpListener,
    router: Router,
    realtime: Realtime,
    ops: ops::Ops,
    connections: ops::ConnLimits,
}

/// Initial read buffer of each websocket. Clients send only small events (join, leave, cancel,
/// pongs), and the buffer grows for a larger frame, so 1 KiB instead of the default 4 KiB saves
/// 3 KiB on every idle connection.
const WS_READ_BUFFER_BYTES: usize = 1024;
/// How long shutdown waits for HTTP connections (polling requests) to finish.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

impl Gateway {
    /// Connects to NATS and PostgreSQL (retrying until they answer), provisions the streams,
    /// starts the fan-out and binds `config.listen` (port 0 picks a free port).
    pub async fn build(config: Config) -> anyhow::Result<Gateway> {
        shared::open_files::raise();
        let nats = Nats::connect(&config.nats, "hexflow-realtime-gateway").await?;
        nats.provision(&config.nats).await?;
        let db = shared::db::pool(&config.db)?;
        shared::db::wait_until_reachable(&db, Duration::from_secs(60)).await?;
        let listener = TcpListener::bind(config.listen).await.map_err(|e| {
            anyhow::anyhow!("binding HEXFLOW_REALTIME_LISTEN={}: {e}; expected a free host:port", config.listen)
        })?;
        let ops_listener = config.ops.bind(config::DEFAULT_OPS_LISTEN).await?;
        let metrics = Metrics::default();
        let realtime = Realtime::start(config.options, &config.auth, nats.clone(), db.clone(), &metrics);
        let (name, consumer_check) = realtime.check();
        let ops = ops::Ops::new("realtime-gateway", &metrics, config.ops.grace())
            .with_check("nats", ops::nats_check(nats))
            .with_check(name, consumer_check)
            .with_check("postgres", ops::db_check(db));
        let router = realtime.mount(Router::new());
        Ok(Gateway { listener, ops_listener, router, realtime, ops, connections: config.connections })
    }

    /// The address Socket.IO is served on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// The address of the ops endpoints.
    pub fn ops_addr(&self) -> SocketAddr {
        self.ops_listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until `shutdown` resolves; then stops accepting, disconnects every socket so
    /// clients reconnect elsewhere, and waits (bounded) for open requests.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        tracing::info!(addr = %self.local_addr(), "realtime gateway listening");
        let Gateway { listener, ops_listener, router, realtime, ops, connections } = self;
        ops.spawn(ops_listener);
        let realtime = Arc::new(realtime);
        let closing = realtime.clone();
        let stopped = CancellationToken::new();
        let stopped_signal = stopped.clone();
        let signal = async move {
            shutdown.await;
            ops.mark_stopping();
            stopped_signal.cancel();
            tokio::spawn(async move { closing.close().await });
        };
        let serve = ops::serve(listener, router, &connections, signal);
        tokio::select! {
            served = serve => served?,
            _ = async { stopped.cancelled().await; tokio::time::sleep(DRAIN_LIMIT).await } => {
                tracing::warn!("connections still open after {DRAIN_LIMIT:?}; stopping anyway");
            }
        }
        realtime.close().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderValue, Uri};

    use super::*;

    /// True when `part` lies inside `buffer`'s memory.
    fn inside(part: &[u8], buffer: &[u8]) -> bool {
        let (start, end) = (buffer.as_ptr() as usize, buffer.as_ptr() as usize + buffer.len());
        (start..end).contains(&(part.as_ptr() as usize))
    }

    #[tokio::test]
    async fn a_socket_io_request_keeps_no_slice_of_the_connections_buffer() {
        // What hyper does: the URI and the header values are slices of the read buffer.
        let buffer = bytes::Bytes::from(b"/socket.io/?EIO=4&transport=websocket websocket ok".to_vec());
        let uri = Uri::from_maybe_shared(buffer.slice(0..37)).unwrap();
        let upgrade = HeaderValue::from_maybe_shared(buffer.slice(38..47)).unwrap();
        let mut secret = HeaderValue::from_maybe_shared(buffer.slice(48..50)).unwrap();
        secret.set_sensitive(true);
        let request = axum::http::Request::builder()
            .uri(uri)
            .header("upgrade", upgrade)
            .header("authorization", secret)
            .body(axum::body::Body::empty())
            .unwrap();
        assert!(inside(request.headers()["upgrade"].as_bytes(), &buffer), "the set-up shares the buffer");

        let request = detach_headers(request).await;
        assert_eq!(request.uri(), "/socket.io/?EIO=4&transport=websocket");
        assert!(!inside(request.uri().path().as_bytes(), &buffer));
        assert_eq!(request.headers()["upgrade"], "websocket");
        assert!(!inside(request.headers()["upgrade"].as_bytes(), &buffer));
        assert!(!inside(request.headers()["authorization"].as_bytes(), &buffer));
        assert!(request.headers()["authorization"].is_sensitive());
    }
}

//! The state every handler and background task shares, and what the gateway counts.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use shared::{
    Nats,
    auth::Authenticator,
    metrics::{Counter, Gauge, Histogram, Metrics},
};

use crate::{access::Owners, config::Options, rooms::Rooms};

/// Shared by every socket handler (through socketioxide's `State`) and the background tasks.
#[derive(Clone)]
pub struct RealtimeState {
    /// Snapshots and cancel requests.
    pub nats: Nats,
    /// Throttle interval, limits, heartbeat period.
    pub options: Arc<Options>,
    /// Verifies handshake tokens (or lets everyone in, in open mode).
    pub auth: Authenticator,
    /// Who owns which import (cached reads of `imports`).
    pub owners: Arc<Owners>,
    /// The rooms this replica serves.
    pub rooms: Arc<Rooms>,
    /// True while the progress consumer is attached to the stream (`/readyz`).
    pub consumer_alive: Arc<AtomicBool>,
    /// `data-updated` announcements, coalesced per tenant.
    pub data_updates: Arc<crate::announce::DataUpdates>,
    /// What `/metrics` shows.
    pub metrics: RealtimeMetrics,
}

impl RealtimeState {
    /// True while progress events flow from NATS to the rooms.
    pub fn is_consuming(&self) -> bool {
        self.consumer_alive.load(Ordering::Relaxed)
    }
}

/// Buckets of the publish-to-emit latency, in seconds (the target is a p99 under 20 ms).
const LATENCY_BUCKETS: &[f64] = &[0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// What the realtime gateway counts.
#[derive(Clone)]
pub struct RealtimeMetrics {
    /// Sockets connected to this replica.
    pub sockets: Gauge,
    /// Live progress rooms on this replica.
    pub rooms: Gauge,
    /// Progress events read from NATS.
    pub events_in: Counter,
    /// Events emitted to rooms (one per room emit, whatever the number of sockets).
    pub events_out: Counter,
    /// Updates replaced by a newer one before their interval ended.
    pub coalesced: Counter,
    /// Events dropped as older than what their room had been sent.
    pub stale: Counter,
    /// Client events refused with `RATE_LIMITED`.
    pub rate_limited: Counter,
    /// Handshakes refused for a missing or invalid token.
    pub refused: Counter,
    /// Times the progress consumer was re-created (NATS reconnects, server restarts).
    pub consumer_restarts: Counter,
    /// From the event's `timestamp` (set by the publisher) to the room emit.
    pub publish_to_emit: Histogram,
}

impl RealtimeMetrics {
    /// Registers the gateway's metrics.
    pub fn register(metrics: &Metrics) -> Self {
        RealtimeMetrics {
            sockets: metrics.gauge("hexflow_realtime_sockets", "Sockets connected to this replica"),
            rooms: metrics.gauge("hexflow_realtime_rooms", "Live progress rooms on this replica"),
            events_in: metrics.counter("hexflow_realtime_events_in_total", "Progress events read from NATS"),
            events_out: metrics.counter("hexflow_realtime_events_out_total", "Events emitted to progress rooms"),
            coalesced: metrics.counter(
                "hexflow_realtime_updates_coalesced_total",
                "Updates replaced by a newer one within the interval",
            ),
            stale: metrics
                .counter("hexflow_realtime_stale_dropped_total", "Events dropped as older than what was sent"),
            rate_limited: metrics
                .counter("hexflow_realtime_rate_limited_total", "Client events refused as RATE_LIMITED"),
            refused: metrics
                .counter("hexflow_realtime_handshakes_refused_total", "Connections refused by authentication"),
            consumer_restarts: metrics
                .counter("hexflow_realtime_consumer_restarts_total", "Times the progress consumer was re-created"),
            publish_to_emit: metrics.histogram(
                "hexflow_realtime_publish_to_emit_seconds",
                "Time from a progress event's timestamp to its emit",
                LATENCY_BUCKETS,
            ),
        }
    }
}

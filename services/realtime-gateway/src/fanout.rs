//! Reads every progress event from the `HEXFLOW_PROGRESS` stream and hands it to the emitter.
//!
//! Every replica reads every session's events (an ordered consumer: ephemeral, no acks, in stream
//! order) and delivers them to its own sockets, so no Socket.IO adapter is needed. It starts at
//! the stream's end (live fan-out only) and remembers the stream sequence of the last event it
//! handled; whenever the consumer breaks or the connection comes back after an outage, a new
//! consumer starts right after that sequence. An event published while this replica was cut off
//! (a terminal one above all) is therefore still delivered, and none is delivered twice.

use std::{sync::atomic::Ordering, time::Duration};

use async_nats::jetstream::consumer::{
    DeliverPolicy,
    pull::{Ordered, OrderedConfig},
};
use futures::StreamExt;
use shared::{Nats, ProgressEvent, names};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::state::RealtimeState;

/// How often the connection is checked for a reconnect (the consumer is re-created after one).
const RECONNECT_CHECK: Duration = Duration::from_millis(100);
/// Longest pull request; it bounds the idle heartbeat, so a dead consumer is noticed within ~2×.
const MAX_PULL_EXPIRY: Duration = Duration::from_secs(10);

/// Why a consumer stopped.
enum Detached {
    /// Shutting down, or the emitter is gone.
    Stopped,
    /// Broken or outlived by a reconnect: attach a new one after the cursor.
    Broken(String),
}

/// Feeds `events` until `stop`, re-attaching after every break with backoff.
pub async fn run(state: RealtimeState, events: mpsc::Sender<ProgressEvent>, stop: CancellationToken) {
    // Stream sequence of the last event handled; `None` until the first consumer is attached.
    let mut cursor: Option<u64> = None;
    let mut backoff = Duration::from_millis(100);
    while !stop.is_cancelled() {
        let connects = state.nats.client.statistics().connects.load(Ordering::Relaxed);
        match attach(&state.nats, cursor).await {
            Ok((messages, start)) => {
                tracing::info!(start_sequence = start, "progress consumer attached");
                cursor = Some(start.saturating_sub(1));
                backoff = Duration::from_millis(100);
                state.consumer_alive.store(true, Ordering::Relaxed);
                let detached = follow(&state, messages, connects, &mut cursor, &events, &stop).await;
                state.consumer_alive.store(false, Ordering::Relaxed);
                match detached {
                    Detached::Stopped => return,
                    Detached::Broken(why) => {
                        tracing::warn!(reason = %why, resume_after = ?cursor, "progress consumer detached; re-attaching");
                        state.metrics.consumer_restarts.inc();
                    }
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_in_ms = backoff.as_millis() as u64, "cannot attach the progress consumer");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Creates an ordered consumer starting after `cursor` (or at the stream's end when there is
/// none yet); returns its messages and the first stream sequence it will deliver.
async fn attach(nats: &Nats, cursor: Option<u64>) -> Result<(Ordered, u64), async_nats::Error> {
    let mut stream = nats.js.get_stream(names::PROGRESS_STREAM).await?;
    let info = stream.info().await?;
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    let start = match cursor {
        None => last + 1,
        // The stream was re-created (its sequence restarted): everything in it is new to us.
        Some(cursor) if cursor > last => {
            tracing::warn!(cursor, last, "the progress stream is behind our cursor; starting from its beginning");
            first.max(1)
        }
        Some(cursor) => cursor + 1,
    };
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: format!("{}.>", names::PROGRESS_PREFIX),
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: start },
            max_expires: MAX_PULL_EXPIRY,
            description: Some("hexflow realtime gateway fan-out".into()),
            ..Default::default()
        })
        .await?;
    Ok((consumer.messages().await?, start))
}

/// Hands events on until the consumer breaks or the client reconnects.
async fn follow(
    state: &RealtimeState,
    mut messages: Ordered,
    connects_at_attach: u64,
    cursor: &mut Option<u64>,
    events: &mpsc::Sender<ProgressEvent>,
    stop: &CancellationToken,
) -> Detached {
    let statistics = state.nats.client.statistics();
    let mut check = tokio::time::interval(RECONNECT_CHECK);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Detached::Stopped,
            _ = check.tick() => {
                // After a reconnect the server may have lost the consumer (a restart) without the
                // idle heartbeat having noticed yet; a fresh one after the cursor is always safe.
                if statistics.connects.load(Ordering::Relaxed) != connects_at_attach && state.nats.is_connected() {
                    return Detached::Broken("reconnected to NATS".into());
                }
            }
            item = messages.next() => match item {
                Some(Ok(message)) => {
                    let Ok(info) = message.info() else { continue };
                    let sequence = info.stream_sequence;
                    if cursor.is_some_and(|c| sequence <= c) {
                        continue;
                    }
                    *cursor = Some(sequence);
                    state.metrics.events_in.inc();
                    match serde_json::from_slice::<ProgressEvent>(&message.payload) {
                        Ok(event) => {
                            if events.send(event).await.is_err() {
                                return Detached::Stopped;
                            }
                        }
                        Err(err) => tracing::warn!(subject = %message.subject, error = %err, "skipping a malformed progress event"),
                    }
                }
                Some(Err(err)) => return Detached::Broken(err.to_string()),
                None => return Detached::Broken("the consumer ended".into()),
            },
        }
    }
}

/// A channel sized for bursts: the reader waits (and NATS holds the rest) when the emitter lags.
pub fn channel() -> (mpsc::Sender<ProgressEvent>, mpsc::Receiver<ProgressEvent>) {
    mpsc::channel(4096)
}

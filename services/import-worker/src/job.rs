//! One delivery of a job message, from parse to acknowledgement: the attempt runs
//! ([`Attempt::run`]) and its outcome decides the acknowledgement ([`Attempt::finish`]).

use std::time::Duration;

use async_nats::jetstream::{AckKind, Message};
use shared::{ImportJob, telemetry::TraceContext};
use tracing::Instrument;

use crate::{Worker, attempt::Attempt};

/// Handles one delivery of a job message, from parse to acknowledgement.
pub async fn handle(worker: Worker, message: Message) {
    let number = message.info().map(|i| i.delivered).unwrap_or(1).max(1) as u32;
    let job: ImportJob = match serde_json::from_slice(&message.payload) {
        Ok(job) => job,
        Err(err) => {
            tracing::error!(error = %err, "malformed job message; dropping it");
            let _ = message.ack_with(AckKind::Term).await;
            return;
        }
    };
    let trace = TraceContext::from_nats_headers(message.headers.as_ref())
        .or_else(|| job.traceparent.as_deref().and_then(TraceContext::parse));
    let span = tracing::info_span!(
        "import",
        import_id = %job.import_id,
        attempt = number,
        trace_id = trace.map(|t| t.trace_id_hex()).unwrap_or_default()
    );
    if let Some(parent) = trace {
        shared::telemetry::adopt(&span, parent);
    }
    async move {
        let heartbeat = spawn_heartbeat(message.clone(), worker.config.ack_wait());
        let mut attempt = Attempt::new(&worker, &job, number, trace);
        let outcome = attempt.run().await;
        let ack = attempt.finish(outcome).await;
        heartbeat.abort();
        let Some(ack) = ack else {
            // This delivery is no longer the one JetStream tracks: an ack or a term would end
            // the live attempt's message, a nak would start yet another attempt.
            tracing::info!("fenced: a newer attempt holds the import, or it has ended; leaving the job alone");
            return;
        };
        if let Err(err) = message.ack_with(ack).await {
            tracing::warn!(error = %err, ?ack, "could not acknowledge the job; it may be delivered again");
        }
    }
    .instrument(span)
    .await
}

/// Tells JetStream the job is alive, a few times per `ack_wait`.
fn spawn_heartbeat(message: Message, ack_wait: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(ack_wait / 3);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(err) = message.ack_with(AckKind::Progress).await {
                tracing::warn!(error = %err, "in-progress ack failed");
            }
        }
    })
}

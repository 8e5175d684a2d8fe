//! The pull loop: one job fetched per free slot (so no job waits in a worker's buffer while its
//! ack timer runs), each run in its own task.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use futures::StreamExt;
use shared::names;
use tokio::{sync::Semaphore, task::JoinSet};
use tokio_util::sync::CancellationToken;

use shared::backoff::Backoff;

use crate::{Worker, job};

/// Waits after failed fetches of jobs (a broker restart): up to 400 ms, doubling, up to 5 s.
const FETCH_BACKOFF: Backoff = Backoff::new(Duration::from_millis(400), Duration::from_secs(5));

/// Creates (or opens) the durable consumer all workers share, and brings an existing one to the
/// configured ack wait, deliveries and pending limit (start-up fails, naming them, if it cannot).
pub async fn consumer(worker: &Worker) -> anyhow::Result<PullConsumer> {
    let stream = worker.nats.js.get_stream(names::JOBS_STREAM).await?;
    let config = pull::Config {
        durable_name: Some(names::WORKERS_CONSUMER.into()),
        description: Some("hexflow import workers".into()),
        ack_policy: AckPolicy::Explicit,
        ack_wait: worker.config.ack_wait(),
        max_deliver: worker.config.max_deliver,
        max_ack_pending: 10_000,
        ..Default::default()
    };
    let mut consumer: PullConsumer = stream.get_or_create_consumer(names::WORKERS_CONSUMER, config.clone()).await?;
    let current = consumer.info().await?.config.clone();
    let mut changes = Vec::new();
    if current.ack_wait != config.ack_wait {
        changes.push(format!("ack_wait {:?} (configured: {:?})", current.ack_wait, config.ack_wait));
    }
    if current.max_deliver != config.max_deliver {
        changes.push(format!("max_deliver {} (configured: {})", current.max_deliver, config.max_deliver));
    }
    if current.max_ack_pending != config.max_ack_pending {
        changes.push(format!("max_ack_pending {} (configured: {})", current.max_ack_pending, config.max_ack_pending));
    }
    if changes.is_empty() {
        return Ok(consumer);
    }
    let changes = changes.join(", ");
    tracing::info!(consumer = names::WORKERS_CONSUMER, %changes, "updating the consumer to match the configuration");
    stream
        .update_consumer(config)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "consumer {} of stream {} has {changes}; the server refused to change it ({e}); set \
             HEXFLOW_WORKER_ACK_WAIT_SECS / HEXFLOW_WORKER_MAX_DELIVER to the values above, or delete the \
             consumer while no import runs (nats consumer rm {} {})",
                names::WORKERS_CONSUMER,
                names::JOBS_STREAM,
                names::JOBS_STREAM,
                names::WORKERS_CONSUMER
            )
        })
        .map(|_: PullConsumer| ())?;
    stream.get_consumer(names::WORKERS_CONSUMER).await.map_err(|e| anyhow::anyhow!("opening the updated consumer: {e}"))
}

/// Runs jobs until `shutdown`, then lets jobs in hand finish for the grace period.
pub async fn consume(worker: Worker, consumer: PullConsumer, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(worker.config.concurrency as usize));
    let mut tasks = JoinSet::new();
    let mut failures = 0u32;
    loop {
        while tasks.try_join_next().is_some() {}
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let batch = tokio::select! {
            _ = shutdown.cancelled() => break,
            batch = consumer.batch().max_messages(1).expires(Duration::from_secs(5)).messages() => batch,
        };
        let mut batch = match batch {
            Ok(batch) => batch,
            Err(err) => {
                failures += 1;
                let delay = FETCH_BACKOFF.delay(failures);
                tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "fetching jobs failed");
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        let next = tokio::select! {
            _ = shutdown.cancelled() => break,
            next = batch.next() => next,
        };
        match next {
            Some(Ok(message)) => {
                failures = 0;
                let worker = worker.clone();
                tasks.spawn(async move {
                    job::handle(worker, message).await;
                    drop(permit);
                });
            }
            Some(Err(err)) => {
                failures += 1;
                let delay = FETCH_BACKOFF.delay(failures);
                tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "job fetch failed");
                tokio::time::sleep(delay).await;
            }
            None => {}
        }
    }
    let grace = Duration::from_secs(worker.config.shutdown_grace_secs);
    if !tasks.is_empty() {
        tracing::info!(jobs = tasks.len(), grace_secs = grace.as_secs(), "stopping: waiting for jobs in hand");
    }
    let drained = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(jobs = tasks.len(), "jobs still running after the grace period; they will be redelivered");
        tasks.abort_all();
    }
}

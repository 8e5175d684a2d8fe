//! NATS: connect with retry, provision JetStream, and the progress/cancel helpers every service uses.

use std::time::Duration;

use async_nats::jetstream::{
    self,
    context::Context,
    object_store,
    stream::{self, DiscardPolicy, LastRawMessageErrorKind, RetentionPolicy, StorageType},
};
use backon::Retryable;
use uuid::Uuid;

use crate::{config::NatsConfig, events::ProgressEvent, names, telemetry::TraceContext};

/// How long a progress snapshot outlives the last event of its import.
pub const PROGRESS_MAX_AGE: Duration = Duration::from_secs(3600);
/// How long a cancel request is kept (longer than any queue wait we expect).
pub const CANCEL_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Window in which a job published twice with the same `Nats-Msg-Id` is stored once.
pub const JOB_DUPLICATE_WINDOW: Duration = Duration::from_secs(600);

/// Errors talking to NATS, each naming the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The server could not be reached or a request failed.
    #[error("{step}: {source}")]
    Nats {
        /// What we were doing.
        step: &'static str,
        /// The underlying error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A setting cannot be used as given (names the variable and what was expected).
    #[error("{0}")]
    Config(String),
    /// A stream or consumer differs from the configuration in a way that cannot be changed in place.
    #[error("{0}")]
    Mismatch(String),
    /// A stored message did not hold what it should.
    #[error("{step}: malformed message: {source}")]
    Malformed {
        /// What we were doing.
        step: &'static str,
        /// Why it did not parse.
        source: serde_json::Error,
    },
}

/// Jittered exponential backoff from 100 ms up to `max_delay`, `times` retries at most.
fn retry_policy(max_delay: Duration, times: usize) -> backon::ExponentialBuilder {
    backon::ExponentialBuilder::default()
        .with_jitter()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(max_delay)
        .with_max_times(times)
}

/// Wraps an async-nats error with the step that failed.
pub(crate) fn failed<E: std::error::Error + Send + Sync + 'static>(step: &'static str) -> impl FnOnce(E) -> BusError {
    move |source| BusError::Nats { step, source: Box::new(source) }
}

/// Fails with a message naming `variable` when `path` cannot be read.
fn readable(path: &std::path::Path, variable: &str) -> Result<(), BusError> {
    std::fs::metadata(path)
        .map(|_| ())
        .map_err(|e| BusError::Config(format!("{variable}: cannot read {}: {e}", path.display())))
}

/// What differs between a stream's settings and the wanted ones, as `field current → wanted`:
/// with `fixed`, the settings a server cannot change in place; otherwise the ones it can.
fn stream_differences(current: &stream::Config, wanted: &stream::Config, fixed: bool) -> Vec<String> {
    fn differ<T: PartialEq + std::fmt::Debug>(out: &mut Vec<String>, field: &str, current: &T, wanted: &T) {
        if current != wanted {
            out.push(format!("{field} {current:?} (configured: {wanted:?})"));
        }
    }
    let mut out = Vec::new();
    if fixed {
        differ(&mut out, "retention", &current.retention, &wanted.retention);
        differ(&mut out, "storage", &current.storage, &wanted.storage);
    } else {
        differ(&mut out, "replicas", &current.num_replicas, &wanted.num_replicas);
        differ(&mut out, "subjects", &current.subjects, &wanted.subjects);
        differ(&mut out, "max_age", &current.max_age, &wanted.max_age);
        // 0 and -1 both mean "no limit"; servers report -1 for a 0 asked for.
        differ(
            &mut out,
            "max_messages_per_subject",
            &current.max_messages_per_subject.max(0),
            &wanted.max_messages_per_subject.max(0),
        );
        if !wanted.duplicate_window.is_zero() {
            // Zero asks for the server's default, which the server then reports.
            differ(&mut out, "duplicate_window", &current.duplicate_window, &wanted.duplicate_window);
        }
        // As for messages: 0 and -1 both mean "no limit".
        differ(&mut out, "max_bytes", &current.max_bytes.max(0), &wanted.max_bytes.max(0));
        differ(&mut out, "discard", &current.discard, &wanted.discard);
        differ(&mut out, "allow_direct", &current.allow_direct, &wanted.allow_direct);
    }
    out
}

/// A NATS connection with its JetStream context.
#[derive(Clone, Debug)]
pub struct Nats {
    /// Core client (plain publish/subscribe, connection state).
    pub client: async_nats::Client,
    /// JetStream context (streams, consumers, object store).
    pub js: Context,
}

impl Nats {
    /// Connects, retrying in the background until the server answers; reconnects are logged.
    /// `name` is the client name the server shows (`hexflow-upload-gateway`, ...).
    pub async fn connect(config: &NatsConfig, name: &str) -> Result<Nats, BusError> {
        let servers = config.servers().map_err(|e| BusError::Config(format!("NATS_URL: {e}")))?;
        let mut options = async_nats::ConnectOptions::new()
            .name(name)
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(None)
            .reconnect_delay_callback(|attempts| Duration::from_millis((100u64 << attempts.min(6)).min(5_000)))
            .event_callback(move |event| async move {
                match event {
                    async_nats::Event::Connected => tracing::info!("nats connected"),
                    async_nats::Event::Disconnected => tracing::warn!("nats disconnected; reconnecting with backoff"),
                    other => tracing::warn!(event = %other, "nats event"),
                }
            });
        if let Some(creds) = &config.creds {
            options = options.credentials_file(creds).await.map_err(|e| {
                BusError::Config(format!("NATS_CREDS: cannot read credentials file {}: {e}", creds.display()))
            })?;
        }
        if let (Some(user), Some(password)) = (&config.user, &config.password) {
            options = options.user_and_password(user.clone(), password.expose().to_owned());
        }
        if let Some(token) = &config.token {
            options = options.token(token.expose().to_owned());
        }
        if let Some(ca) = &config.ca {
            readable(ca, "NATS_CA")?;
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let (Some(cert), Some(key)) = (&config.cert, &config.key) {
            readable(cert, "NATS_CERT")?;
            readable(key, "NATS_KEY")?;
            options = options.add_client_certificate(cert.clone(), key.clone()).require_tls(true);
        }
        let client = options.connect(servers).await.map_err(failed("connecting to NATS"))?;
        let js = jetstream::new(client.clone());
        Ok(Nats { client, js })
    }

    /// True while the connection is up (for `/readyz`).
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Creates the streams and bucket of the broker contract, or brings existing ones to the
    /// configuration. Idempotent. Streams are created with explicit configs, which works on
    /// nats-server 2.9 and 2.10+. A cluster still electing its JetStream leaders times requests out: those are retried
    /// (with jittered backoff, about a minute in all); a setting that differs is not.
    /// `config` gives the replicas and the uploads bucket's size limit.
    pub async fn provision(&self, config: &NatsConfig) -> Result<(), BusError> {
        let attempt = || self.provision_once(config.replicas, config.uploads_max_bytes);
        attempt
            .retry(retry_policy(Duration::from_secs(5), 16))
            .when(|err| matches!(err, BusError::Nats { .. }))
            .notify(|err, delay| tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "JetStream not ready; retrying"))
            .await
    }

    async fn provision_once(&self, replicas: u8, uploads_max_bytes: Option<u64>) -> Result<(), BusError> {
        let replicas = usize::from(replicas);
        // JetStream's "no limit".
        let uploads_max_bytes = uploads_max_bytes.map_or(-1, |b| b as i64);
        let streams = [
            stream::Config {
                name: names::JOBS_STREAM.into(),
                subjects: vec![names::JOBS_SUBJECT.into()],
                retention: RetentionPolicy::WorkQueue,
                storage: StorageType::File,
                duplicate_window: JOB_DUPLICATE_WINDOW,
                num_replicas: replicas,
                ..Default::default()
            },
            stream::Config {
                name: names::PROGRESS_STREAM.into(),
                subjects: vec![format!("{}.>", names::PROGRESS_PREFIX)],
                storage: StorageType::File,
                max_messages_per_subject: 1,
                max_age: PROGRESS_MAX_AGE,
                discard: DiscardPolicy::Old,
                allow_direct: true,
                num_replicas: replicas,
                ..Default::default()
            },
            stream::Config {
                name: names::CANCEL_STREAM.into(),
                subjects: vec![format!("{}.>", names::CANCEL_PREFIX)],
                storage: StorageType::File,
                max_messages_per_subject: 1,
                max_age: CANCEL_MAX_AGE,
                discard: DiscardPolicy::Old,
                allow_direct: true,
                num_replicas: replicas,
                ..Default::default()
            },
        ];
        for config in streams {
            self.reconcile_stream(config).await?;
        }
        match self.js.get_object_store(names::UPLOADS_BUCKET).await {
            Ok(_) => {
                let name = format!("OBJ_{}", names::UPLOADS_BUCKET);
                let mut stream = self.js.get_stream(&name).await.map_err(failed("opening uploads bucket"))?;
                let mut wanted = stream.info().await.map_err(failed("reading uploads bucket"))?.config.clone();
                wanted.num_replicas = replicas;
                wanted.max_bytes = uploads_max_bytes;
                self.reconcile_stream(wanted).await?;
            }
            Err(_) => {
                self.js
                    .create_object_store(object_store::Config {
                        bucket: names::UPLOADS_BUCKET.into(),
                        description: Some("hexflow uploaded scan files".into()),
                        storage: StorageType::File,
                        num_replicas: replicas,
                        max_bytes: uploads_max_bytes,
                        ..Default::default()
                    })
                    .await
                    .map_err(failed("creating uploads bucket"))?;
            }
        }
        Ok(())
    }

    /// Creates the stream, or brings an existing one to `wanted` (replicas, limits, subjects).
    /// Fails with a message naming what differs when the server cannot change it in place.
    async fn reconcile_stream(&self, wanted: stream::Config) -> Result<(), BusError> {
        let mut stream =
            self.js.get_or_create_stream(wanted.clone()).await.map_err(failed("creating JetStream stream"))?;
        let current = stream.info().await.map_err(failed("reading JetStream stream"))?.config.clone();
        let fixed = stream_differences(&current, &wanted, true);
        if !fixed.is_empty() {
            return Err(BusError::Mismatch(format!(
                "stream {} has {}, which cannot be changed in place; it holds only transient state: delete it \
                 (nats stream rm {}) while no import runs, and start again",
                wanted.name,
                fixed.join(", "),
                wanted.name
            )));
        }
        let changes = stream_differences(&current, &wanted, false);
        if changes.is_empty() {
            return Ok(());
        }
        tracing::info!(stream = %wanted.name, changes = %changes.join(", "), "updating stream to match the configuration");
        self.js.update_stream(&wanted).await.map_err(|e| {
            let hint = if current.num_replicas != wanted.num_replicas {
                "HEXFLOW_NATS_REPLICAS must not exceed the cluster's JetStream nodes"
            } else {
                "or change the stream by hand"
            };
            BusError::Mismatch(format!(
                "stream {} has {}; the server refused to change it ({e}); {hint}",
                wanted.name,
                changes.join(", ")
            ))
        })?;
        Ok(())
    }
    /// Publishes a progress event. With `confirm`, waits for JetStream to store it (terminal and
    /// phase-change events); otherwise it is a plain publish that the stream still captures.
    pub async fn publish_progress(
        &self,
        event: &ProgressEvent,
        trace: Option<TraceContext>,
        confirm: bool,
    ) -> Result<(), BusError> {
        let subject = names::progress_subject(event.session_id);
        let payload: bytes::Bytes = serde_json::to_vec(event).expect("a progress event always serialises").into();
        let headers = trace.map(TraceContext::to_nats_headers).unwrap_or_default();
        if confirm {
            // A stream changing leader answers "no stream" or times out for a few seconds:
            // retried, so a broker node going away does not cost the import an attempt. A
            // repeated store of the same event is harmless (clients drop a seq they have seen).
            let publish = || async {
                self.js
                    .publish_with_headers(subject.clone(), headers.clone(), payload.clone())
                    .await
                    .map_err(failed("publishing progress"))?
                    .await
                    .map_err(failed("confirming progress"))
                    .map(drop)
            };
            publish
                .retry(retry_policy(Duration::from_secs(2), 8))
                .notify(|err, delay| tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "progress not stored; retrying"))
                .await?;
        } else {
            self.client.publish_with_headers(subject, headers, payload).await.map_err(failed("publishing progress"))?;
        }
        Ok(())
    }

    /// The latest progress event of an import (its snapshot), if the stream still has one.
    pub async fn last_progress(&self, import_id: Uuid) -> Result<Option<ProgressEvent>, BusError> {
        Ok(self.last_progress_entry(import_id).await?.map(|(event, _)| event))
    }

    /// The snapshot with its stream sequence, to publish after it only if nothing else did
    /// ([`Nats::publish_progress_after`]).
    pub async fn last_progress_entry(&self, import_id: Uuid) -> Result<Option<(ProgressEvent, u64)>, BusError> {
        let stream =
            self.js.get_stream_no_info(names::PROGRESS_STREAM).await.map_err(failed("opening progress stream"))?;
        match stream.get_last_raw_message_by_subject(&names::progress_subject(import_id)).await {
            Ok(message) => serde_json::from_slice(&message.payload)
                .map(|event| Some((event, message.sequence)))
                .map_err(|source| BusError::Malformed { step: "reading progress snapshot", source }),
            Err(err) if err.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(err) => Err(failed("reading progress snapshot")(err)),
        }
    }

    /// Publishes `event` (confirmed) only if the import's last stored event is still the one at
    /// stream sequence `after` (`Nats-Expected-Last-Subject-Sequence`); `None` publishes
    /// unconditionally (the snapshot expired). `Ok(false)` when another event was stored in
    /// between: of two workers re-publishing the same terminal event, one stores it.
    pub async fn publish_progress_after(&self, event: &ProgressEvent, after: Option<u64>) -> Result<bool, BusError> {
        let subject = names::progress_subject(event.session_id);
        let payload = serde_json::to_vec(event).expect("a progress event always serialises").into();
        let mut headers = async_nats::HeaderMap::new();
        if let Some(seq) = after {
            headers.insert(async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, seq.to_string().as_str());
        }
        let ack =
            self.js.publish_with_headers(subject, headers, payload).await.map_err(failed("publishing progress"))?;
        match ack.await {
            Ok(_) => Ok(true),
            Err(err) if err.kind() == jetstream::context::PublishErrorKind::WrongLastSequence => Ok(false),
            Err(err) => Err(failed("confirming progress")(err)),
        }
    }

    /// Records a cancel request (kept in the cancel stream, so a worker that picks the job up
    /// later still finds it) and tells the worker holding the job at once.
    pub async fn request_cancel(&self, import_id: Uuid, requested_by: &str) -> Result<(), BusError> {
        let body = serde_json::json!({ "importId": import_id, "requestedBy": requested_by, "timestamp": crate::events::now_ms() });
        self.js
            .publish(names::cancel_subject(import_id), body.to_string().into())
            .await
            .map_err(failed("publishing cancel request"))?
            .await
            .map_err(failed("confirming cancel request"))?;
        Ok(())
    }

    /// True when a cancel request for the import is on record.
    pub async fn cancel_requested(&self, import_id: Uuid) -> Result<bool, BusError> {
        let stream = self.js.get_stream_no_info(names::CANCEL_STREAM).await.map_err(failed("opening cancel stream"))?;
        match stream.get_last_raw_message_by_subject(&names::cancel_subject(import_id)).await {
            Ok(_) => Ok(true),
            Err(err) if err.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(false),
            Err(err) => Err(failed("reading cancel requests")(err)),
        }
    }
}

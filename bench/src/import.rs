//! One measured import: subscribe to the session's progress subject, upload the file over HTTP,
//! record every event with its arrival time until the terminal one, sample the services' memory.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use futures::StreamExt;
use serde::Serialize;
use shared::{Phase, ProgressEvent, Status, names};
use tokio_util::io::ReaderStream;
use uuid::Uuid;

use crate::{rss, stack::Stack};

/// An event and when it arrived, counted from the start of the upload.
pub struct Arrival {
    /// Time since the upload began.
    pub at: Duration,
    /// The event.
    pub event: ProgressEvent,
}

/// Time spent in one phase: from its first event to the first event of the next phase.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PhaseTime {
    /// `upload` (request start to 202) or a phase name.
    pub phase: String,
    /// Seconds.
    pub seconds: f64,
}

/// What one import measured.
pub struct Measured {
    /// `progress-on #1`, `progress-off #2`, ...
    pub label: String,
    /// The session id chosen for it.
    pub session_id: Uuid,
    /// Request start to 202.
    pub upload: Duration,
    /// Upload start to the terminal event.
    pub wall: Duration,
    /// Every event received, in arrival order; the last is terminal.
    pub events: Vec<Arrival>,
    /// Memory of the gateway and the worker.
    pub gateway: rss::Peak,
    /// Memory of the worker.
    pub worker: rss::Peak,
    /// The machine's 1-minute load average at the end: above ~2 on this 2-core machine means
    /// something besides the stack competed for the CPUs.
    pub load_average: f64,
}

impl Measured {
    /// Writes every event, with its arrival time in seconds from the upload's start (`at`), one
    /// JSON object a line, to `events-<label>.jsonl` under `dir`: what the ETA tables are read from.
    pub fn write_events(&self, dir: &std::path::Path) -> anyhow::Result<()> {
        let name: String = self.label.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
        let mut lines = String::new();
        for arrival in &self.events {
            let mut value = serde_json::to_value(&arrival.event)?;
            value["at"] = serde_json::json!(arrival.at.as_secs_f64());
            lines.push_str(&value.to_string());
            lines.push('\n');
        }
        let path = dir.join(format!("events-{name}.jsonl"));
        std::fs::write(&path, lines).with_context(|| format!("writing {}", path.display()))
    }

    /// The terminal event.
    pub fn terminal(&self) -> &ProgressEvent {
        // `import` returns only after pushing the terminal event.
        &self.events.last().expect("a measured import always has its terminal event").event
    }

    /// Data rows the worker read.
    pub fn rows(&self) -> u64 {
        self.terminal().summary.as_ref().map(|s| s.rows).unwrap_or(self.terminal().processed_rows)
    }

    /// Rows per second, from upload start to terminal event.
    pub fn rows_per_second(&self) -> f64 {
        self.rows() as f64 / self.wall.as_secs_f64()
    }

    /// Each step of the merge (the `processing` events, published only with progress events on),
    /// from its event to the next event.
    pub fn merge_steps(&self) -> Vec<PhaseTime> {
        let mut steps: Vec<PhaseTime> = Vec::new();
        for pair in self.events.windows(2).filter(|pair| pair[0].event.phase == Phase::Processing) {
            let seconds = (pair[1].at - pair[0].at).as_secs_f64();
            match steps.last_mut() {
                // A step that reports its own progress sends several events with one message.
                Some(last) if last.phase == pair[0].event.message => last.seconds += seconds,
                _ => steps.push(PhaseTime { phase: pair[0].event.message.clone(), seconds }),
            }
        }
        steps
    }

    /// Upload, then each phase from its first event to the next phase's first event.
    pub fn phases(&self) -> Vec<PhaseTime> {
        let mut firsts: Vec<(Phase, Duration)> = Vec::new();
        for a in &self.events {
            if firsts.last().is_none_or(|(p, _)| *p != a.event.phase)
                && !firsts.iter().any(|(p, _)| *p == a.event.phase)
            {
                firsts.push((a.event.phase, a.at));
            }
        }
        let mut out = vec![PhaseTime { phase: "upload".into(), seconds: self.upload.as_secs_f64() }];
        for pair in firsts.windows(2) {
            let (phase, start) = pair[0];
            let name = if phase == Phase::Queued { "queued (to worker pickup)" } else { phase.as_str() };
            out.push(PhaseTime { phase: name.into(), seconds: (pair[1].1 - start).as_secs_f64() });
        }
        out
    }
}

/// Uploads `file` with `scan_date` to the running gateway under a new session id and follows it
/// to the end.
pub async fn import(
    stack: &mut Stack,
    http: &reqwest::Client,
    file: &Path,
    scan_date: &str,
    label: String,
    limit: Duration,
) -> anyhow::Result<Measured> {
    let (Some(gateway), Some(worker)) = (&stack.gateway, &stack.worker) else {
        bail!("the services are not running");
    };
    let session_id = Uuid::new_v4();
    let nats = async_nats::connect(stack.nats.url.as_str()).await.context("connecting to nats-server")?;
    let mut subscription =
        nats.subscribe(names::progress_subject(session_id)).await.context("subscribing to progress")?;
    // The subscription must be registered on the server before the first event can be published.
    nats.flush().await.context("flushing the subscription")?;

    let sampler = rss::Sampler::start(vec![gateway.pid(), worker.pid()]);
    let started = Instant::now();
    // Shared, so a run that fails or times out can still say how far it got.
    let seen: Arc<Mutex<Vec<Arrival>>> = Arc::default();
    let collector = {
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Some(message) = subscription.next().await {
                let at = started.elapsed();
                let event: ProgressEvent = serde_json::from_slice(&message.payload)
                    .map_err(|e| anyhow::anyhow!("a progress event did not parse: {e}"))?;
                let terminal = event.is_terminal();
                let mut events = seen.lock().map_err(|_| anyhow::anyhow!("event list poisoned"))?;
                events.push(Arrival { at, event });
                if terminal {
                    return Ok(std::mem::take(&mut *events));
                }
            }
            bail!("the progress subscription ended before the terminal event")
        })
    };

    let target = Target { port: gateway.port, bytes_per_sec: stack.upload_bytes_per_sec };
    let upload = upload(http, target, file, scan_date, session_id, limit).await;
    let upload = match upload {
        Ok(d) => d,
        Err(e) => {
            collector.abort();
            let _ = sampler.finish().await;
            return Err(e);
        }
    };
    eprintln!("  {label}: uploaded in {:.1}s; importing as {session_id}", upload.as_secs_f64());
    let events = wait_for_terminal(stack, collector, limit.saturating_sub(started.elapsed())).await;
    let peaks = sampler.finish().await?;
    let events = match events {
        Ok(events) => events,
        Err(e) => {
            if let Ok(partial) = seen.lock() {
                eprintln!("  {label}: events seen before the failure:");
                for a in partial.iter() {
                    let e = &a.event;
                    eprintln!(
                        "    {:>7.1}s seq {:>4} {:<10} {:>5.1}% rows {:>8} eta {:?} {}",
                        a.at.as_secs_f64(),
                        e.seq,
                        e.phase.as_str(),
                        e.progress,
                        e.processed_rows,
                        e.eta_seconds,
                        e.message
                    );
                }
            }
            return Err(e);
        }
    };
    let wall = events.last().map(|a| a.at).unwrap_or_default();
    let measured = Measured {
        label,
        session_id,
        upload,
        wall,
        events,
        gateway: peaks.first().copied().unwrap_or_default(),
        worker: peaks.get(1).copied().unwrap_or_default(),
        load_average: load_average(),
    };
    let terminal = measured.terminal();
    if terminal.status != Status::Completed {
        let error = terminal.error.as_ref().map(|e| format!("[{}] {}", e.code, e.message)).unwrap_or_default();
        bail!("import {session_id} ended {}: {} {error}", terminal.status.as_str(), terminal.message);
    }
    Ok(measured)
}

/// Waits for the collector, checking every second that both services are still alive.
async fn wait_for_terminal(
    stack: &mut Stack,
    mut collector: tokio::task::JoinHandle<anyhow::Result<Vec<Arrival>>>,
    limit: Duration,
) -> anyhow::Result<Vec<Arrival>> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        tokio::select! {
            done = &mut collector => return done?,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        for service in [&mut stack.gateway, &mut stack.worker].into_iter().flatten() {
            if let Err(e) = service.check_alive() {
                collector.abort();
                return Err(e.context("a service died during the import"));
            }
        }
        if tokio::time::Instant::now() > deadline {
            collector.abort();
            bail!("no terminal progress event within {limit:?}");
        }
    }
}

/// Bytes read from the file per body chunk (the default 4 KiB costs a write per 4 KiB).
const UPLOAD_READ_BYTES: usize = 256 * 1024;

/// Where an upload goes, and how fast it may be sent.
#[derive(Clone, Copy)]
struct Target {
    port: u16,
    /// At most this many bytes a second, as over a network link; unbounded when `None`.
    bytes_per_sec: Option<u64>,
}

/// `chunks` sent at most `bytes_per_sec`: each one waits until the bytes before it have had
/// their time.
fn paced(
    chunks: impl futures::Stream<Item = std::io::Result<bytes::Bytes>>,
    bytes_per_sec: u64,
) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> {
    let started = tokio::time::Instant::now();
    let mut sent = 0u64;
    chunks.then(move |chunk| {
        let due = started + Duration::from_secs_f64(sent as f64 / bytes_per_sec as f64);
        sent += chunk.as_ref().map_or(0, |b| b.len() as u64);
        async move {
            tokio::time::sleep_until(due).await;
            chunk
        }
    })
}

/// POST /api/imports with the file streamed from disk; returns the time to the 202.
async fn upload(
    http: &reqwest::Client,
    target: Target,
    file: &Path,
    scan_date: &str,
    id: Uuid,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let f = tokio::fs::File::open(file).await.with_context(|| format!("opening {}", file.display()))?;
    let size = f.metadata().await?.len();
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "upload.csv".into());
    let chunks = ReaderStream::with_capacity(f, UPLOAD_READ_BYTES);
    let body = match target.bytes_per_sec {
        Some(rate) => reqwest::Body::wrap_stream(paced(chunks, rate)),
        None => reqwest::Body::wrap_stream(chunks),
    };
    let part = reqwest::multipart::Part::stream_with_length(body, size).file_name(name).mime_str("text/csv")?;
    let form = reqwest::multipart::Form::new()
        .text("sessionId", id.to_string())
        .text("scanDate", scan_date.to_owned())
        .part("file", part);
    let response = http
        .post(format!("http://127.0.0.1:{}/api/imports", target.port))
        .multipart(form)
        .timeout(limit)
        .send()
        .await
        .context("uploading the file")?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if status != reqwest::StatusCode::ACCEPTED {
        bail!("the upload was answered {status}, not 202: {body}");
    }
    Ok(started.elapsed())
}

/// The 1-minute load average from `/proc/loadavg` (0 when unreadable).
pub(crate) fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or_default()
}

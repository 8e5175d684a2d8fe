//! The progress event and the import job: the JSON objects that travel on NATS and Socket.IO.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The operation every progress event describes (`metadata.operation`).
pub const OPERATION: &str = "csv-import";

/// Steps of the pipeline shown as `metadata.currentStep` / `metadata.totalSteps`.
pub const TOTAL_STEPS: u32 = 4;

/// Where an import stands, as users see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Accepted and waiting for a worker.
    Queued,
    /// A worker is on it.
    Processing,
    /// Done; `summary` says what changed.
    Completed,
    /// Failed; `error` says why.
    Error,
    /// Stopped on request; nothing reached the final tables.
    Cancelled,
}

impl Status {
    /// The lower-case name stored in `imports.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Processing => "processing",
            Status::Completed => "completed",
            Status::Error => "error",
            Status::Cancelled => "cancelled",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "queued" => Status::Queued,
            "processing" => Status::Processing,
            "completed" => Status::Completed,
            "error" => Status::Error,
            "cancelled" => Status::Cancelled,
            _ => return None,
        })
    }

    /// True for the states an import never leaves.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Completed | Status::Error | Status::Cancelled)
    }
}

/// The step an import is in; each owns a band of the overall percentage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Waiting for a worker.
    Queued,
    /// Reading the header and checking the format (0–5 %).
    Parsing,
    /// Streaming rows into staging (5–70 %, by bytes consumed).
    Loading,
    /// Deduplicating and merging into the final tables (70–95 %).
    Processing,
    /// Cleaning up and recording the result (95–100 %).
    Finalizing,
    /// Terminal: completed.
    Complete,
    /// Terminal: failed.
    Error,
    /// Terminal: cancelled.
    Cancelled,
}

impl Phase {
    /// The band `[start, end]` of the overall percentage this phase covers.
    pub fn band(self) -> (f64, f64) {
        match self {
            Phase::Queued => (0.0, 0.0),
            Phase::Parsing => (0.0, 5.0),
            Phase::Loading => (5.0, 70.0),
            Phase::Processing => (70.0, 95.0),
            Phase::Finalizing => (95.0, 100.0),
            Phase::Complete => (100.0, 100.0),
            Phase::Error | Phase::Cancelled => (0.0, 100.0),
        }
    }

    /// Overall percentage for a fraction `0..=1` of this phase.
    pub fn overall(self, fraction: f64) -> f64 {
        let (lo, hi) = self.band();
        lo + (hi - lo) * fraction.clamp(0.0, 1.0)
    }

    /// The lower-case name stored in `imports.phase`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Queued => "queued",
            Phase::Parsing => "parsing",
            Phase::Loading => "loading",
            Phase::Processing => "processing",
            Phase::Finalizing => "finalizing",
            Phase::Complete => "complete",
            Phase::Error => "error",
            Phase::Cancelled => "cancelled",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Phase> {
        Phase::ALL.iter().copied().find(|p| p.as_str() == s)
    }

    /// The step shown as `metadata.currentStep` while the import is in this phase: 0 queued,
    /// then one per working phase, [`TOTAL_STEPS`] once it is over.
    pub fn step(self) -> u32 {
        match self {
            Phase::Queued => 0,
            Phase::Parsing => 1,
            Phase::Loading => 2,
            Phase::Processing => 3,
            Phase::Finalizing | Phase::Complete | Phase::Error | Phase::Cancelled => TOTAL_STEPS,
        }
    }

    /// Every phase, in pipeline order.
    pub const ALL: [Phase; 8] = [
        Phase::Queued,
        Phase::Parsing,
        Phase::Loading,
        Phase::Processing,
        Phase::Finalizing,
        Phase::Complete,
        Phase::Error,
        Phase::Cancelled,
    ];
}

/// Facts about the import that do not change while it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// Always [`OPERATION`].
    pub operation: String,
    /// The uploaded file's name, as given by the client.
    pub filename: String,
    /// Detected (or chosen) format name.
    pub format: String,
    /// Scan date, RFC 3339.
    pub scan_date: String,
    /// 1-based number of the current step.
    pub current_step: u32,
    /// Number of steps in the pipeline.
    pub total_steps: u32,
}

impl Metadata {
    /// The metadata of an import of `filename` (format name, RFC 3339 scan date) at step
    /// `current_step` of [`TOTAL_STEPS`].
    pub fn new(
        filename: impl Into<String>,
        format: impl Into<String>,
        scan_date: impl Into<String>,
        current_step: u32,
    ) -> Metadata {
        Metadata {
            operation: OPERATION.into(),
            filename: filename.into(),
            format: format.into(),
            scan_date: scan_date.into(),
            current_step,
            total_steps: TOTAL_STEPS,
        }
    }
}

/// What a completed import changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Findings seen for the first time.
    pub new: u64,
    /// Open findings whose details changed.
    pub updated: u64,
    /// Findings seen again unchanged (resolved ones the scanner reports fixed again included).
    pub unchanged: u64,
    /// Open findings of covered assets absent from this scan or marked fixed by the scanner,
    /// and findings first seen already marked fixed (recorded as resolved).
    pub resolved: u64,
    /// Resolved findings seen again.
    pub reopened: u64,
    /// Rows that repeated a finding key inside the file and were merged into it.
    pub skipped_duplicates: u64,
    /// Rows skipped as invalid (see the row errors).
    pub validation_errors: u64,
    /// Data rows read (blank records excluded).
    pub rows: u64,
    /// Wall time of the attempt that completed, in ms.
    pub duration_ms: u64,
    /// Rows per second over that attempt.
    pub rows_per_second: f64,
}

/// Where in the file an error points, and what was expected there.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetails {
    /// 1-based physical line.
    pub line: Option<u64>,
    /// Column name.
    pub column: Option<String>,
    /// The offending value (truncated).
    pub value: Option<String>,
    /// What would have been accepted.
    pub expected: Option<String>,
}

/// Why an import failed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorInfo {
    /// Stable machine-readable code (`TOO_MANY_INVALID_ROWS`, `LINE_TOO_LONG`, ...).
    pub code: String,
    /// Plain-text explanation.
    pub message: String,
    /// Position and expectation, when the error is about the file.
    pub details: ErrorDetails,
    /// What the user can do about it.
    pub recovery_suggestions: Vec<String>,
}

/// How far an import got before it stopped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartialResults {
    /// Rows read before the stop.
    pub processed_rows: u64,
    /// Bytes read before the stop.
    pub bytes_processed: u64,
    /// Invalid rows seen before the stop.
    pub validation_errors: u64,
}

/// One progress event: the snapshot of an import at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProgressEvent {
    /// The import id.
    pub session_id: Uuid,
    /// Strictly increasing per import, across attempts.
    pub seq: u64,
    /// Overall state.
    pub status: Status,
    /// Current step.
    pub phase: Phase,
    /// 0–100, never decreasing within one attempt.
    pub progress: f64,
    /// Human-readable, plain text.
    pub message: String,
    /// Data rows read so far.
    pub processed_rows: u64,
    /// Data rows in the file, once known.
    pub total_rows: Option<u64>,
    /// Bytes of the file consumed so far.
    pub bytes_processed: u64,
    /// Size of the file.
    pub total_bytes: u64,
    /// Estimated seconds left, from measured throughput.
    pub eta_seconds: Option<f64>,
    /// Measured rows per second.
    pub rows_per_second: f64,
    /// 1 on first delivery of the job; higher on redelivery.
    pub attempt: u32,
    /// ms since the epoch.
    pub timestamp: i64,
    /// Static facts about the import.
    pub metadata: Metadata,
    /// On completion.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub summary: Option<Summary>,
    /// On error.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<ErrorInfo>,
    /// On error or cancel.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub partial_results: Option<PartialResults>,
}

impl ProgressEvent {
    /// Event `seq` of import `session_id` in `status` and `phase`, stamped now, with nothing
    /// measured yet: no progress, rows, bytes, ETA or result, attempt 0. Callers fill in what
    /// they know with struct update syntax (`ProgressEvent { total_bytes, ..ProgressEvent::new(..) }`).
    pub fn new(session_id: Uuid, seq: u64, status: Status, phase: Phase, metadata: Metadata) -> ProgressEvent {
        ProgressEvent {
            session_id,
            seq,
            status,
            phase,
            progress: 0.0,
            message: String::new(),
            processed_rows: 0,
            total_rows: None,
            bytes_processed: 0,
            total_bytes: 0,
            eta_seconds: None,
            rows_per_second: 0.0,
            attempt: 0,
            timestamp: now_ms(),
            metadata,
            summary: None,
            error: None,
            partial_results: None,
        }
    }

    /// True when this is the import's last event.
    pub fn is_terminal(&self) -> bool {
        self.status.is_terminal()
    }
}

/// The job message on `hexflow.jobs.import`: everything a worker needs to run one import.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportJob {
    /// The import id (also the `Nats-Msg-Id`).
    pub import_id: Uuid,
    /// Name of the uploaded object in the uploads bucket.
    pub object_key: String,
    /// The uploaded file's name.
    pub filename: String,
    /// Format detected at upload (or chosen by the user).
    pub format: String,
    /// Scan date, RFC 3339.
    pub scan_date: String,
    /// User who uploaded it.
    pub owner: String,
    /// Tenant the findings belong to.
    pub tenant: String,
    /// W3C trace context of the upload request.
    pub traceparent: Option<String>,
    /// Set when the job was queued while the file was still arriving: the name its chunks are
    /// stored under (`$O.hexflow_uploads.C.<arriving>`) until the object's metadata is written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arriving: Option<String>,
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_bands_follow_the_design_weights() {
        assert_eq!(Phase::Loading.overall(0.0), 5.0);
        assert_eq!(Phase::Loading.overall(1.0), 70.0);
        assert_eq!(Phase::Processing.overall(0.5), 82.5);
        assert_eq!(Phase::Finalizing.overall(2.0), 100.0);
    }

    #[test]
    fn event_serialises_in_camel_case() {
        let ev = ProgressEvent {
            progress: 12.5,
            message: "loading".into(),
            processed_rows: 10,
            bytes_processed: 5,
            total_bytes: 50,
            rows_per_second: 1.0,
            attempt: 1,
            timestamp: 0,
            ..ProgressEvent::new(
                Uuid::nil(),
                3,
                Status::Processing,
                Phase::Loading,
                Metadata::new("a.csv", "nessus", "2026-01-01T00:00:00Z", Phase::Loading.step()),
            )
        };
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["sessionId"], "00000000-0000-0000-0000-000000000000");
        assert_eq!(v["processedRows"], 10);
        assert!(v["totalRows"].is_null());
        assert_eq!(v["metadata"]["scanDate"], "2026-01-01T00:00:00Z");
        assert_eq!((&v["metadata"]["operation"], &v["metadata"]["currentStep"]), (&"csv-import".into(), &2.into()));
        assert!(v.get("summary").is_none());
        let back: ProgressEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, ev);
    }
}

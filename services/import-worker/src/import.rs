//! The import in hand: what an attempt knows about the import it claimed, built once from the
//! job message and borrowed by every step (loading, early writing, merging, progress).

use formats::Format;
use shared::{ImportJob, Metadata, events::ErrorDetails, names};
use uuid::Uuid;

use crate::error::{JobError, Result};

/// One import, as the attempt holding it sees it.
#[derive(Debug, Clone)]
pub struct Import {
    /// The import id.
    pub id: Uuid,
    /// Tenant owning the findings.
    pub tenant: String,
    /// Format recorded at upload.
    pub format: Format,
    /// Scan date, RFC 3339: `last_seen` of findings without their own date.
    pub scan_date: String,
    /// The staging table (`import_staging_<id>`).
    pub staging: String,
    /// Name of the uploaded object.
    pub object_key: String,
    /// The upload's chunks, when the job was queued while the file was still arriving.
    pub arriving: Option<String>,
}

impl Import {
    /// The import of `job`; an `UNKNOWN_FORMAT` error when its format is not one this worker
    /// reads (a gateway newer than the worker).
    pub fn new(job: &ImportJob) -> Result<Import> {
        let format = Format::parse(&job.format).ok_or_else(|| {
            JobError::invalid(
                "UNKNOWN_FORMAT",
                format!("format {:?} is not one this worker knows", job.format),
                ErrorDetails::default(),
                &["Upgrade the workers to the gateway's version."],
            )
        })?;
        Ok(Import {
            id: job.import_id,
            tenant: job.tenant.clone(),
            format,
            scan_date: job.scan_date.clone(),
            staging: names::staging_table(job.import_id),
            object_key: job.object_key.clone(),
            arriving: job.arriving.clone(),
        })
    }

    /// Scanner family of the format (`tenable`, `qualys`, ...): findings of one tenant and
    /// scanner are merged one import at a time.
    pub fn scanner(&self) -> &'static str {
        self.format.scanner()
    }
}

/// The metadata of the events of `job`'s import at step `current_step`, with the file and format
/// names the job gives: also when the format is unknown to this worker, so it comes from the job
/// rather than from an [`Import`].
pub fn metadata(job: &ImportJob, current_step: u32) -> Metadata {
    Metadata::new(&job.filename, &job.format, &job.scan_date, current_step)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(format: &str) -> ImportJob {
        ImportJob {
            import_id: Uuid::now_v7(),
            object_key: "key".into(),
            filename: "scan.csv".into(),
            format: format.into(),
            scan_date: "2026-01-01T00:00:00Z".into(),
            owner: "alice".into(),
            tenant: "acme".into(),
            traceparent: None,
            arriving: None,
        }
    }

    #[test]
    fn the_import_of_a_job_names_its_staging_table_and_scanner() {
        let job = job("nessus");
        let import = Import::new(&job).unwrap();
        assert_eq!(import.staging, names::staging_table(job.import_id));
        assert_eq!((import.tenant.as_str(), import.scanner()), ("acme", Format::Nessus.scanner()));
    }

    #[test]
    fn a_format_this_worker_does_not_know_is_an_invalid_file() {
        match Import::new(&job("punchcards")) {
            Err(JobError::Invalid(info)) => assert_eq!(info.code, "UNKNOWN_FORMAT"),
            other => panic!("expected UNKNOWN_FORMAT, got {other:?}"),
        }
    }
}

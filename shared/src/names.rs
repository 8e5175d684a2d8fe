//! Every subject, stream, bucket and consumer name in one place.
//!
//! The names are the broker contract of `docs/events.md`; services and tests take them from here.

use uuid::Uuid;

/// Work-queue stream that holds one message per queued import.
pub const JOBS_STREAM: &str = "HEXFLOW_JOBS";
/// Subject of import jobs.
pub const JOBS_SUBJECT: &str = "hexflow.jobs.import";
/// Durable pull consumer shared by every import worker.
pub const WORKERS_CONSUMER: &str = "import-workers";
/// Stream that keeps the last progress event of every import (the snapshot).
pub const PROGRESS_STREAM: &str = "HEXFLOW_PROGRESS";
/// Stream that keeps the last cancel request of every import.
pub const CANCEL_STREAM: &str = "HEXFLOW_CANCEL";
/// Object Store bucket for uploaded files.
pub const UPLOADS_BUCKET: &str = "hexflow_uploads";

/// Prefix of progress subjects; the import id follows.
pub const PROGRESS_PREFIX: &str = "hexflow.progress";
/// Prefix of cancel subjects; the import id follows.
pub const CANCEL_PREFIX: &str = "hexflow.cancel";

/// `hexflow.progress.<importId>`: every progress event of one import.
pub fn progress_subject(import_id: Uuid) -> String {
    format!("{PROGRESS_PREFIX}.{import_id}")
}

/// `hexflow.cancel.<importId>`: a cancel request for one import.
pub fn cancel_subject(import_id: Uuid) -> String {
    format!("{CANCEL_PREFIX}.{import_id}")
}

/// The import id at the end of a progress or cancel subject, if it is one.
pub fn import_id_of_subject(subject: &str) -> Option<Uuid> {
    subject.rsplit('.').next().and_then(|s| Uuid::parse_str(s).ok())
}

/// Name of the per-import UNLOGGED staging table (created from `import_staging_template`).
pub fn staging_table(import_id: Uuid) -> String {
    format!("import_staging_{}", import_id.simple())
}

/// Socket.IO room of one import's progress.
pub fn progress_room(import_id: Uuid) -> String {
    format!("progress-{import_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_round_trip_the_import_id() {
        let id = Uuid::now_v7();
        assert_eq!(import_id_of_subject(&progress_subject(id)), Some(id));
        assert_eq!(import_id_of_subject(&cancel_subject(id)), Some(id));
        assert_eq!(import_id_of_subject("hexflow.progress.nope"), None);
    }
}

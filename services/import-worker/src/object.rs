//! Reading an uploaded object chunk by chunk with bounded memory. The object store's own reader
//! is fed by a push consumer that delivers the whole object as fast as the server can, so a file
//! read slower than that piles up in memory; here each chunk is requested when there is room
//! for it (a few chunks ahead, to overlap network and parsing), and decompressed here, off the
//! parser's thread.

use std::{io, time::Duration};

use bytes::Bytes;
use shared::{Nats, compression::Encoding, names};
use tokio::{io::AsyncRead, sync::mpsc};
use tokio_util::io::StreamReader;

use shared::backoff::Backoff;

use crate::error::{JobError, Result, StepExt};

/// Chunks fetched ahead of the reader.
const READ_AHEAD: usize = 4;

/// Attempts per chunk before the read fails (a broker restart takes a few seconds).
const FETCH_ATTEMPTS: u32 = 6;
/// Waits between those attempts: up to 0.5, 1, 2, 4, 8 s.
const FETCH_BACKOFF: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(8));
/// Waits before asking again for an upload a replica does not show yet: up to 0.4, 0.8, 1.6,
/// 3.2, 6.4 s.
const INFO_BACKOFF: Backoff = Backoff::new(Duration::from_millis(400), Duration::from_millis(6400));

/// One chunk: the first message of `subject` at or after `seq`, retried with backoff. A direct
/// get: the server sends the payload as it is, not base64 inside a JSON answer.
async fn fetch_with_retry(
    stream: &async_nats::jetstream::stream::Stream,
    subject: &str,
    seq: u64,
) -> Result<async_nats::jetstream::message::StreamMessage, async_nats::jetstream::stream::DirectGetError> {
    let mut attempt = 1;
    loop {
        match stream.direct_get_next_for_subject(subject, Some(seq)).await {
            Err(err) if attempt < FETCH_ATTEMPTS => {
                let delay = FETCH_BACKOFF.delay(attempt);
                tracing::warn!(error = %err, attempt, retry_in_ms = delay.as_millis() as u64, "reading a chunk of the upload failed");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// Opens the object `key` of the uploads bucket; the reader yields its bytes in order from byte
/// `skip` on (a resumed load): whole chunks before it are fetched but not handed on, then the
/// first bytes of the chunk it falls in.
pub async fn open(nats: &Nats, key: &str, skip: u64) -> Result<Box<dyn AsyncRead + Send + Unpin>> {
    let store = nats.uploads().await.step("opening uploads bucket")?;
    // In a cluster the answer may come from a replica that has not caught up with the upload
    // yet (the bucket allows direct reads): "not found" is believed after a few tries only.
    let mut tries = 0;
    let info = loop {
        match store.info(key).await {
            Ok(info) => break info,
            Err(e) if tries < 5 => {
                tries += 1;
                tracing::debug!(error = %e, tries, "upload not found yet; asking again");
                tokio::time::sleep(INFO_BACKOFF.delay(tries)).await;
            }
            Err(e) => {
                return Err(JobError::invalid(
                    "UPLOAD_MISSING",
                    format!("the uploaded file is no longer in the object store ({e})"),
                    Default::default(),
                    &["Upload the file again."],
                ));
            }
        }
    };
    let encoding = Encoding::of(&info.metadata).map_err(|e| {
        JobError::invalid(
            "UPLOAD_UNREADABLE",
            e.to_string(),
            Default::default(),
            &["Run one version of hexflow in every service, then upload the file again."],
        )
    })?;
    let stream =
        nats.js.get_stream(format!("OBJ_{}", names::UPLOADS_BUCKET)).await.step("opening the uploads stream")?;
    let subject = format!("$O.{}.C.{}", names::UPLOADS_BUCKET, info.nuid);
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(READ_AHEAD);
    let chunks = info.chunks;
    tokio::spawn(async move {
        let (mut next_seq, mut skip) = (1, skip);
        // Where the reading time goes: fetching chunks, decompressing them, or waiting for the
        // parser to take them.
        let (mut fetching, mut decoding, mut waiting) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        for _ in 0..chunks {
            let started = std::time::Instant::now();
            let chunk = fetch_with_retry(&stream, &subject, next_seq).await;
            fetching += started.elapsed();
            let pieces =
                chunk.map_err(|e| io::Error::other(format!("reading chunk of the upload: {e}"))).and_then(|message| {
                    next_seq = message.sequence + 1;
                    encoding.pieces(message.payload)
                });
            let pieces = match pieces {
                Ok(pieces) => pieces,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            for piece in pieces {
                // Whole pieces before the resume point are skipped without decoding.
                if skip >= piece.len {
                    skip -= piece.len;
                    continue;
                }
                let started = std::time::Instant::now();
                let item = piece.decode().map(|bytes| bytes.slice(skip as usize..));
                decoding += started.elapsed();
                skip = 0;
                let failed = item.is_err();
                let started = std::time::Instant::now();
                if tx.send(item).await.is_err() || failed {
                    return;
                }
                waiting += started.elapsed();
            }
        }
        tracing::info!(
            chunks,
            fetching_ms = fetching.as_millis() as u64,
            decoding_ms = decoding.as_millis() as u64,
            waiting_for_parser_ms = waiting.as_millis() as u64,
            "read the whole upload"
        );
    });
    let chunks = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    Ok(Box::new(StreamReader::new(Box::pin(chunks))))
}

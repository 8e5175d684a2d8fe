//! Reading an uploaded object chunk by chunk with bounded memory. The object store's own reader
//! is fed by a push consumer that delivers the whole object as fast as the server can, so a file
//! read slower than that piles up in memory; here each chunk is requested when there is room
//! for it (a few chunks ahead, to overlap network and parsing), and decompressed here, off the
//! parser's thread.

use std::{
    io,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use async_nats::jetstream::{
    object_store::{ObjectInfo, ObjectStore},
    stream::DirectGetErrorKind,
};
use bytes::Bytes;
use shared::{Nats, compression::Encoding, names, uploads};
use tokio::{io::AsyncRead, sync::mpsc};
use tokio_util::{io::StreamReader, sync::CancellationToken};

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

/// One chunk: the first message of `subject` at or after `seq`, retried with backoff (but for
/// "not found" when `arriving`: the chunk may not be stored yet). A direct get: the server sends
/// the payload as it is, not base64 inside a JSON answer.
async fn fetch_with_retry(
    stream: &async_nats::jetstream::stream::Stream,
    subject: &str,
    seq: u64,
    arriving: bool,
) -> Result<async_nats::jetstream::message::StreamMessage, async_nats::jetstream::stream::DirectGetError> {
    let mut attempt = 1;
    loop {
        match stream.direct_get_next_for_subject(subject, Some(seq)).await {
            Err(err) if attempt < FETCH_ATTEMPTS && !(arriving && err.kind() == DirectGetErrorKind::NotFound) => {
                let delay = FETCH_BACKOFF.delay(attempt);
                tracing::warn!(error = %err, attempt, retry_in_ms = delay.as_millis() as u64, "reading a chunk of the upload failed");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// An upload still arriving when its import started: the name its chunks are stored under, and
/// a flag the reader raises once the object's metadata says the file is whole.
#[derive(Debug, Clone)]
pub struct Arriving {
    /// The chunks' name (`$O.<bucket>.C.<nuid>`).
    pub nuid: String,
    /// Raised once the file is whole.
    pub whole: Arc<AtomicBool>,
}

/// How often the metadata of an arriving upload is read while its chunks keep coming.
const WHOLE_CHECK: Duration = Duration::from_millis(250);

/// Where the reader stands on the upload's chunks.
struct Chunks {
    stream: async_nats::jetstream::stream::Stream,
    subject: String,
    encoding: Encoding,
    /// The number of chunks, once the object's metadata is written.
    total: Option<usize>,
}

/// Opens the object `key` of the uploads bucket; the reader yields its bytes in order from byte
/// `skip` on (a resumed load): whole chunks before it are fetched but not handed on, then the
/// first bytes of the chunk it falls in. With `arriving` (the job was queued while the file was
/// still arriving), the chunks of that name are read as they are stored, until the object's
/// metadata says how many there are. The reader stops, its reads ending, once `stop` is
/// cancelled: a load that ends early would otherwise wait on chunks a slow client has not sent.
pub async fn open(
    nats: &Nats,
    key: &str,
    arriving: Option<Arriving>,
    skip: u64,
    stop: CancellationToken,
) -> Result<Box<dyn AsyncRead + Send + Unpin>> {
    let store = nats.uploads().await.step("opening uploads bucket")?;
    let stream =
        nats.js.get_stream(format!("OBJ_{}", names::UPLOADS_BUCKET)).await.step("opening the uploads stream")?;
    let chunks = match &arriving {
        Some(arriving) => match store.info(key).await {
            Ok(info) => stored(stream, &info)?,
            Err(_) => Chunks {
                stream,
                subject: uploads::chunk_subject(&arriving.nuid),
                encoding: Encoding::ZstdFrames,
                total: None,
            },
        },
        None => stored(stream, &stored_info(&store, key).await?)?,
    };
    let whole = arriving.map(|a| a.whole);
    if chunks.total.is_some()
        && let Some(flag) = &whole
    {
        flag.store(true, Ordering::Relaxed);
    }
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(READ_AHEAD);
    let store_key = key.to_owned();
    tokio::spawn(async move {
        let Chunks { stream, subject, encoding, mut total } = chunks;
        let (mut next_seq, mut skip, mut read) = (1, skip, 0usize);
        // Where the reading time goes: fetching chunks (waiting for an arriving upload
        // included), decompressing them, or waiting for the parser to take them.
        let (mut fetching, mut decoding, mut waiting) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let (mut last_chunk, mut last_check) = (Instant::now(), Instant::now());
        while total != Some(read) {
            if stop.is_cancelled() {
                return;
            }
            let started = Instant::now();
            // Whether the file is whole is asked now and then while chunks keep coming too,
            // since progress reports expect the load to speed up once the upload is over.
            if total.is_none() && last_check.elapsed() >= WHOLE_CHECK {
                last_check = Instant::now();
                match arrived(&store, &store_key, last_chunk).await {
                    Ok(known) => total = known,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
                if total.is_some()
                    && let Some(flag) = &whole
                {
                    flag.store(true, Ordering::Relaxed);
                }
                continue;
            }
            let chunk = match total {
                Some(_) => fetch_with_retry(&stream, &subject, next_seq, false)
                    .await
                    .map_err(|e| io::Error::other(format!("reading chunk of the upload: {e}"))),
                None => match fetch_with_retry(&stream, &subject, next_seq, true).await {
                    Ok(message) => Ok(message),
                    Err(err) if err.kind() == DirectGetErrorKind::NotFound => {
                        fetching += started.elapsed();
                        tokio::select! {
                            _ = tokio::time::sleep(ARRIVING_POLL) => {}
                            _ = stop.cancelled() => return,
                        }
                        // The metadata is asked for at once next time round.
                        last_check = Instant::now() - WHOLE_CHECK;
                        continue;
                    }
                    Err(err) => Err(io::Error::other(format!("reading chunk of the upload: {err}"))),
                },
            };
            fetching += started.elapsed();
            let pieces = chunk.and_then(|message| {
                next_seq = message.sequence + 1;
                encoding.pieces(message.payload)
            });
            read += 1;
            last_chunk = Instant::now();
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
                let started = Instant::now();
                let item = piece.decode().map(|bytes| bytes.slice(skip as usize..));
                decoding += started.elapsed();
                skip = 0;
                let failed = item.is_err();
                let started = Instant::now();
                if tx.send(item).await.is_err() || failed {
                    return;
                }
                waiting += started.elapsed();
            }
        }
        tracing::info!(
            chunks = read,
            fetching_ms = fetching.as_millis() as u64,
            decoding_ms = decoding.as_millis() as u64,
            waiting_for_parser_ms = waiting.as_millis() as u64,
            "read the whole upload"
        );
    });
    let chunks = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    Ok(Box::new(StreamReader::new(Box::pin(chunks))))
}

/// How often an arriving upload is asked for its next chunk while it has none.
const ARRIVING_POLL: Duration = Duration::from_millis(20);

/// The metadata of the stored object `key`. In a cluster the answer may come from a replica that
/// has not caught up with the upload yet (the bucket allows direct reads): "not found" is
/// believed after a few tries only.
async fn stored_info(store: &ObjectStore, key: &str) -> Result<ObjectInfo> {
    let mut tries = 0;
    loop {
        match store.info(key).await {
            Ok(info) => return Ok(info),
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
    }
}

/// The chunks of a stored object, or why it cannot be read.
fn stored(stream: async_nats::jetstream::stream::Stream, info: &ObjectInfo) -> Result<Chunks> {
    if let Some(reason) = info.metadata.get(uploads::INTERRUPTED_KEY) {
        return Err(interrupted(reason));
    }
    let encoding = Encoding::of(&info.metadata).map_err(|e| {
        JobError::invalid(
            "UPLOAD_UNREADABLE",
            e.to_string(),
            Default::default(),
            &["Run one version of hexflow in every service, then upload the file again."],
        )
    })?;
    Ok(Chunks { stream, subject: uploads::chunk_subject(&info.nuid), encoding, total: Some(info.chunks) })
}

/// While an arriving upload has no next chunk: its number of chunks once its metadata is
/// written; an error when its gateway gave up on it, or when neither a chunk nor the metadata
/// came for [`uploads::ARRIVING_STALL`] since `last_chunk`.
async fn arrived(store: &ObjectStore, key: &str, last_chunk: Instant) -> io::Result<Option<usize>> {
    match store.info(key).await {
        Ok(info) => match info.metadata.get(uploads::INTERRUPTED_KEY) {
            Some(reason) => Err(io::Error::other(interrupted(reason))),
            None => Ok(Some(info.chunks)),
        },
        Err(_) if last_chunk.elapsed() < uploads::ARRIVING_STALL => Ok(None),
        Err(_) => Err(io::Error::other(JobError::invalid(
            "UPLOAD_INTERRUPTED",
            format!(
                "the file stopped arriving: nothing was stored for {} s while it was being uploaded",
                uploads::ARRIVING_STALL.as_secs()
            ),
            Default::default(),
            &["Upload the file again."],
        ))),
    }
}

fn interrupted(reason: &str) -> JobError {
    JobError::invalid(
        "UPLOAD_INTERRUPTED",
        format!("the upload did not finish: {reason}"),
        Default::default(),
        &["Upload the file again."],
    )
}

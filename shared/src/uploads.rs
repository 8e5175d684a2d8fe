//! The uploads bucket (`hexflow_uploads`, a NATS Object Store): writing an upload compressed,
//! with its chunks pipelined, and removing uploads (by name, and the chunks no metadata names).
//!
//! An object written here is an ordinary object of the store: the crate's reader, `info` and
//! `delete` (and the `nats` CLI) see it as they see one written by `ObjectStore::put`; its
//! content is the file as a zstd stream.

use std::{collections::VecDeque, time::Duration};

use async_nats::{
    HeaderMap,
    jetstream::{
        context::PublishAckFuture,
        object_store::{ObjectInfo, ObjectOptions, ObjectStore},
        stream::LastRawMessageErrorKind,
    },
};
use base64::Engine;
use bytes::BytesMut;
use sha2::{Digest, Sha256};
use tokio::{
    io::{AsyncRead, AsyncReadExt},
    task::JoinHandle,
};

use crate::{
    bus::{BusError, Nats, failed},
    compression, names,
};

/// Chunks written and not yet acknowledged at once. `ObjectStore::put` waits for each chunk's
/// acknowledgement before reading the next one, so the gateway and the server take turns
/// (measured: 1.5 ms a chunk of 512 KiB, nearly the sum of both sides' work); with a few in
/// flight both work at once.
const CHUNKS_IN_FLIGHT: usize = 8;
/// Blocks of one upload handed to compression ahead of the chunks being written: the reading and
/// hashing stay on the request's task while compression takes another core.
const FRAMES_IN_FLIGHT: usize = 2;

/// How often an upload in progress stores a chunk at least, an empty one when no data came: the
/// sign, for a worker reading it as it arrives and for the sweep of orphaned chunks, that the
/// upload is alive however slowly its client sends.
pub const UPLOAD_HEARTBEAT: Duration = Duration::from_secs(5);
/// How long a reader of an arriving upload waits without a chunk or metadata before it takes the
/// upload for lost (its gateway stopped): six heartbeats.
pub const ARRIVING_STALL: Duration = Duration::from_secs(30);
/// The object metadata key that marks an upload its gateway gave up on, with the reason.
pub const INTERRUPTED_KEY: &str = "hexflow-interrupted";

/// A new name for an upload's chunks (`$O.<bucket>.C.<nuid>`), chosen before the first is written.
pub fn new_upload_nuid() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// What [`Nats::put_upload_chunks`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUpload {
    /// The file's bytes.
    pub size: u64,
    /// Bytes stored (compressed).
    pub stored_size: u64,
    /// Chunks stored.
    pub chunks: usize,
    /// SHA-256 of the file's bytes, in lowercase hex.
    pub sha256: String,
    /// SHA-256 of the stored bytes: the object's digest.
    digest: Vec<u8>,
}

impl Nats {
    /// The uploads bucket.
    pub async fn uploads(&self) -> Result<ObjectStore, BusError> {
        self.js.get_object_store(names::UPLOADS_BUCKET).await.map_err(failed("opening uploads bucket"))
    }

    /// Stores everything `data` yields as the chunks `nuid` of the uploads bucket: each read (at
    /// most `chunk_size` bytes) compressed as one zstd frame on a blocking thread, a few ahead of
    /// the chunks being written; whole frames packed into chunks of about `chunk_size` bytes (a
    /// frame that does not shrink goes alone, a few bytes over), several acknowledged at once.
    /// A chunk is stored at least every [`UPLOAD_HEARTBEAT`] (an empty one when no data came).
    /// No metadata names the chunks until
    /// [`Nats::commit_upload`]; [`Nats::discard_upload`] removes them.
    pub async fn put_upload_chunks(
        &self,
        nuid: &str,
        chunk_size: usize,
        mut data: impl AsyncRead + Unpin,
    ) -> Result<StoredUpload, BusError> {
        let mut chunks = ChunkWriter::new(self, chunk_subject(nuid), chunk_size);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut compressing: VecDeque<JoinHandle<std::io::Result<Vec<u8>>>> = VecDeque::new();
        let mut buffer = BytesMut::with_capacity(chunk_size);
        loop {
            // `read_buf` is cancel-safe: a read cut by the heartbeat has taken nothing.
            let n = match tokio::time::timeout(UPLOAD_HEARTBEAT, data.read_buf(&mut buffer)).await {
                Ok(n) => n,
                Err(_) => {
                    // The reader gets what has arrived so far, or a sign of life.
                    for frame in compressing.drain(..) {
                        chunks.write(compressed(frame).await?).await?;
                    }
                    chunks.keep_alive(UPLOAD_HEARTBEAT).await?;
                    continue;
                }
            }
            .map_err(failed("reading the upload"))?;
            if n == 0 && buffer.is_empty() {
                break;
            }
            if n > 0 && buffer.len() < chunk_size {
                continue;
            }
            let block = std::mem::replace(&mut buffer, BytesMut::with_capacity(chunk_size)).freeze();
            hasher.update(&block);
            size += block.len() as u64;
            compressing.push_back(tokio::spawn(compression::compress_on_a_core(block)));
            if compressing.len() > FRAMES_IN_FLIGHT
                && let Some(oldest) = compressing.pop_front()
            {
                chunks.write(compressed(oldest).await?).await?;
            }
            if n == 0 {
                break;
            }
        }
        for frame in compressing {
            chunks.write(compressed(frame).await?).await?;
        }
        let stored = chunks.finish().await?;
        let sha256: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Ok(StoredUpload { size, stored_size: stored.size, chunks: stored.chunks, sha256, digest: stored.digest })
    }

    /// Names the chunks `nuid` as the object `name` by writing its metadata
    /// ([`crate::compression`]): from here on the upload is whole for every reader.
    pub async fn commit_upload(
        &self,
        name: &str,
        description: Option<String>,
        nuid: &str,
        chunk_size: usize,
        stored: &StoredUpload,
    ) -> Result<(), BusError> {
        let metadata = [
            (compression::ENCODING_KEY.to_owned(), compression::ZSTD_FRAMES.to_owned()),
            (compression::DECODED_SIZE_KEY.to_owned(), stored.size.to_string()),
        ];
        let info = ObjectInfo {
            name: name.to_owned(),
            description,
            metadata: metadata.into(),
            headers: None,
            options: Some(ObjectOptions { link: None, max_chunk_size: Some(chunk_size) }),
            bucket: names::UPLOADS_BUCKET.to_owned(),
            nuid: nuid.to_owned(),
            size: stored.stored_size as usize,
            chunks: stored.chunks,
            modified: Some(async_nats::datetime::now()),
            digest: Some(format!("SHA-256={}", base64::engine::general_purpose::URL_SAFE.encode(&stored.digest))),
            deleted: false,
        };
        self.write_metadata(&info).await
    }

    /// Marks the object `name` as given up, with `reason` (a reader following it stops with that
    /// reason), then removes its chunks `nuid`.
    pub async fn interrupt_upload(&self, name: &str, nuid: &str, reason: &str) -> Result<(), BusError> {
        let info = ObjectInfo {
            name: name.to_owned(),
            description: None,
            metadata: [(INTERRUPTED_KEY.to_owned(), reason.to_owned())].into(),
            headers: None,
            options: None,
            bucket: names::UPLOADS_BUCKET.to_owned(),
            nuid: nuid.to_owned(),
            size: 0,
            chunks: 0,
            modified: Some(async_nats::datetime::now()),
            digest: None,
            deleted: false,
        };
        self.write_metadata(&info).await?;
        self.purge_upload_chunks(nuid).await
    }

    /// Removes an upload that was never handed on: the object `name`, if its metadata was
    /// written, and the chunks `nuid`. Idempotent.
    pub async fn discard_upload(&self, name: &str, nuid: &str) -> Result<(), BusError> {
        self.purge_upload(name).await?;
        self.purge_upload_chunks(nuid).await
    }

    /// The uploads bucket's stream, for what the object store's API does not offer (purging by
    /// subject, listing subjects, reading a subject's last message).
    async fn uploads_stream(&self) -> Result<async_nats::jetstream::stream::Stream<()>, BusError> {
        self.js
            .get_stream_no_info(format!("OBJ_{}", names::UPLOADS_BUCKET))
            .await
            .map_err(failed("opening the uploads stream"))
    }

    async fn purge_upload_chunks(&self, nuid: &str) -> Result<(), BusError> {
        let stream = self.uploads_stream().await?;
        stream.purge().filter(chunk_subject(nuid)).await.map_err(failed("purging the upload's chunks"))?;
        Ok(())
    }

    async fn write_metadata(&self, info: &ObjectInfo) -> Result<(), BusError> {
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_ROLLUP, "sub");
        let payload = serde_json::to_vec(info).expect("object metadata always serialises");
        self.js
            .publish_with_headers(meta_subject(&info.name), headers, payload.into())
            .await
            .map_err(failed("writing the upload's metadata"))?
            .await
            .map_err(failed("storing the upload's metadata"))?;
        Ok(())
    }

    /// Removes an uploaded object for good: its chunks, then its metadata subject (the object
    /// store's own delete leaves a `deleted` marker there forever). Idempotent: a missing or
    /// already deleted object, or one whose chunks are gone, is finished off the same way.
    pub async fn purge_upload(&self, object_key: &str) -> Result<(), BusError> {
        self.purge_upload_subject(&meta_subject(object_key)).await
    }

    /// [`Nats::purge_upload`] by metadata subject (`$O.<bucket>.M.<encoded name>`).
    pub async fn purge_upload_subject(&self, meta_subject: &str) -> Result<(), BusError> {
        let stream = self.uploads_stream().await?;
        let info = match stream.get_last_raw_message_by_subject(meta_subject).await {
            Ok(message) => serde_json::from_slice::<ObjectInfo>(&message.payload).ok(),
            Err(err) if err.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(()),
            Err(err) => return Err(failed("reading the upload's metadata")(err)),
        };
        // Chunks first: a failure in between leaves the metadata, from which a retry finds them.
        if let Some(nuid) = info.map(|i| i.nuid).filter(|n| !n.is_empty()) {
            stream.purge().filter(chunk_subject(&nuid)).await.map_err(failed("purging the upload's chunks"))?;
        }
        stream.purge().filter(meta_subject).await.map_err(failed("purging the upload's metadata"))?;
        Ok(())
    }

    /// Every object of the uploads bucket, deleted ones (markers) included: its metadata
    /// subject and what that subject holds.
    pub async fn upload_objects(&self) -> Result<Vec<(String, ObjectInfo)>, BusError> {
        use futures::TryStreamExt;
        let stream = self.uploads_stream().await?;
        let subjects: Vec<(String, usize)> = stream
            .info_with_subjects(format!("$O.{}.M.>", names::UPLOADS_BUCKET))
            .await
            .map_err(failed("listing the uploads"))?
            .try_collect()
            .await
            .map_err(failed("listing the uploads"))?;
        let mut objects = Vec::with_capacity(subjects.len());
        for (subject, _) in subjects {
            match stream.get_last_raw_message_by_subject(&subject).await {
                Ok(message) => {
                    if let Ok(info) = serde_json::from_slice(&message.payload) {
                        objects.push((subject, info));
                    }
                }
                Err(err) if err.kind() == LastRawMessageErrorKind::NoMessageFound => {}
                Err(err) => return Err(failed("reading an upload's metadata")(err)),
            }
        }
        Ok(objects)
    }

    /// Purges the chunks no object's metadata names whose newest chunk is older than
    /// `quiet_for`: what an upload leaves when its gateway stops before the metadata is written
    /// (and could not remove them, as it does on every refusal). An upload in progress writes a chunk at least every [`UPLOAD_HEARTBEAT`], so a
    /// `quiet_for` well above that never touches one. Returns how many uploads' chunks were purged.
    pub async fn purge_orphan_chunks(&self, quiet_for: Duration) -> Result<usize, BusError> {
        use futures::TryStreamExt;
        let stream = self.uploads_stream().await?;
        let prefix = format!("$O.{}.C.", names::UPLOADS_BUCKET);
        let chunks: Vec<(String, usize)> = stream
            .info_with_subjects(format!("{prefix}>"))
            .await
            .map_err(failed("listing the uploads' chunks"))?
            .try_collect()
            .await
            .map_err(failed("listing the uploads' chunks"))?;
        if chunks.is_empty() {
            return Ok(0);
        }
        let named: std::collections::HashSet<String> =
            self.upload_objects().await?.into_iter().map(|(_, info)| info.nuid).collect();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        let mut purged = 0;
        for (subject, _) in chunks {
            if subject.strip_prefix(&prefix).is_none_or(|nuid| named.contains(nuid)) {
                continue;
            }
            let newest = match stream.get_last_raw_message_by_subject(&subject).await {
                Ok(message) => message.time.unix_timestamp(),
                Err(err) if err.kind() == LastRawMessageErrorKind::NoMessageFound => continue,
                Err(err) => return Err(failed("reading an upload's last chunk")(err)),
            };
            if now - newest < quiet_for.as_secs() as i64 {
                continue;
            }
            stream.purge().filter(subject).await.map_err(failed("purging an upload's orphaned chunks"))?;
            purged += 1;
        }
        Ok(purged)
    }
}

/// A compressed frame from its blocking thread.
async fn compressed(task: JoinHandle<std::io::Result<Vec<u8>>>) -> Result<Vec<u8>, BusError> {
    task.await.map_err(failed("compressing the upload"))?.map_err(failed("compressing the upload"))
}

/// Packs frames into chunks and publishes them with a few acknowledgements outstanding,
/// hashing what is stored (the object's digest).
struct ChunkWriter<'a> {
    nats: &'a Nats,
    subject: String,
    chunk_size: usize,
    pending: BytesMut,
    in_flight: VecDeque<PublishAckFuture>,
    hasher: Sha256,
    size: u64,
    chunks: usize,
    last_published: std::time::Instant,
}

/// What [`ChunkWriter::finish`] stored.
struct StoredChunks {
    size: u64,
    chunks: usize,
    digest: Vec<u8>,
}

impl<'a> ChunkWriter<'a> {
    fn new(nats: &'a Nats, subject: String, chunk_size: usize) -> Self {
        ChunkWriter {
            nats,
            subject,
            chunk_size,
            pending: BytesMut::new(),
            in_flight: VecDeque::with_capacity(CHUNKS_IN_FLIGHT),
            hasher: Sha256::new(),
            size: 0,
            chunks: 0,
            last_published: std::time::Instant::now(),
        }
    }

    /// Publishes what is pending, or an empty chunk, unless a chunk went out within `every`.
    async fn keep_alive(&mut self, every: Duration) -> Result<(), BusError> {
        if self.last_published.elapsed() < every { Ok(()) } else { self.publish().await }
    }

    /// Adds a frame, publishing the chunk before it when the frame would not fit in it.
    async fn write(&mut self, frame: Vec<u8>) -> Result<(), BusError> {
        if !self.pending.is_empty() && self.pending.len() + frame.len() > self.chunk_size {
            self.publish().await?;
        }
        self.pending.extend_from_slice(&frame);
        Ok(())
    }

    async fn publish(&mut self) -> Result<(), BusError> {
        let payload = self.pending.split().freeze();
        self.hasher.update(&payload);
        self.size += payload.len() as u64;
        self.chunks += 1;
        if self.in_flight.len() == CHUNKS_IN_FLIGHT
            && let Some(oldest) = self.in_flight.pop_front()
        {
            oldest.await.map_err(failed("storing a chunk of the upload"))?;
        }
        let ack = self
            .nats
            .js
            .publish(self.subject.clone(), payload)
            .await
            .map_err(failed("writing a chunk of the upload"))?;
        self.in_flight.push_back(ack);
        self.last_published = std::time::Instant::now();
        Ok(())
    }

    /// Publishes what is left and waits for every acknowledgement.
    async fn finish(mut self) -> Result<StoredChunks, BusError> {
        if !self.pending.is_empty() {
            self.publish().await?;
        }
        for ack in self.in_flight.drain(..) {
            ack.await.map_err(failed("storing a chunk of the upload"))?;
        }
        Ok(StoredChunks { size: self.size, chunks: self.chunks, digest: self.hasher.finalize().to_vec() })
    }
}

/// The subject of the chunks `nuid` of the uploads bucket.
pub fn chunk_subject(nuid: &str) -> String {
    format!("$O.{}.C.{nuid}", names::UPLOADS_BUCKET)
}

/// The metadata subject of the object `name`: the object store names it by the name in URL-safe
/// base64 with padding (async-nats `object_store::encode_object_name`).
fn meta_subject(name: &str) -> String {
    format!("$O.{}.M.{}", names::UPLOADS_BUCKET, base64::engine::general_purpose::URL_SAFE.encode(name))
}

//! How an upload's bytes are stored in the uploads bucket: each block of the file (at most one
//! chunk's worth) compressed as one zstd frame, whole frames packed into each chunk. Scan exports
//! repeat their texts on every row, so the broker stores and sends about a tenth of the bytes
//! (a 1,064 MiB export becomes about 80 MiB), which is most of its work for an upload. The whole
//! object is a valid zstd stream (`nats object get … | zstd -d` gives the file back), and each
//! frame says how many bytes it holds, so a resumed read skips frames without decompressing them.
//!
//! Objects written before uploads were compressed (no [`ENCODING_KEY`] in their metadata) are
//! read as they are.

use std::{
    cell::RefCell,
    io,
    sync::{Arc, LazyLock},
};

use bytes::Bytes;
use tokio::sync::Semaphore;

/// The object metadata key that says how the chunks are encoded.
pub const ENCODING_KEY: &str = "hexflow-encoding";
/// The value of [`ENCODING_KEY`] for chunks of zstd frames.
pub const ZSTD_FRAMES: &str = "zstd-frames";
/// The object metadata key holding the file's own size (the object's `size` is what is stored).
pub const DECODED_SIZE_KEY: &str = "hexflow-decoded-size";

/// zstd's fastest standard level: about 0.5 GB/s per core, a twelfth of the size on scan exports.
const LEVEL: i32 = 1;
/// Largest block a frame may hold when read back: what the gateway writes (a chunk's worth) with
/// a wide margin, so a corrupt frame header cannot make the reader allocate gigabytes.
const MAX_FRAME_BYTES: u64 = 16 * 1024 * 1024;

thread_local! {
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
}

/// Compressions running at once in this process, over all uploads: one per core, so many
/// concurrent uploads neither pile threads on the CPU nor keep a compression context (about
/// 1.3 MiB each) on every blocking thread they would start.
static COMPRESSING: LazyLock<Arc<Semaphore>> = LazyLock::new(|| {
    Arc::new(Semaphore::new(std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)))
});

/// Compresses `block` on a blocking thread once a core is free for it (see [`compress_block`]).
pub async fn compress_on_a_core(block: Bytes) -> io::Result<Vec<u8>> {
    let permit = COMPRESSING.clone().acquire_owned().await.map_err(io::Error::other)?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        compress_block(&block)
    })
    .await
    .map_err(io::Error::other)?
}

/// Compresses one block of the file as a frame that records its own size. CPU-bound (about a
/// millisecond for 512 KiB).
fn compress_block(block: &[u8]) -> io::Result<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let compressor = match slot.as_mut() {
            Some(compressor) => compressor,
            None => slot.insert(zstd::bulk::Compressor::new(LEVEL)?),
        };
        compressor.compress(block)
    })
}

/// How an object's chunks hold the file's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The chunks are the file's bytes.
    Raw,
    /// Each chunk is one or more zstd frames (see the module docs).
    ZstdFrames,
}

impl Encoding {
    /// The encoding an object's metadata names; [`Encoding::Raw`] when it names none. An
    /// encoding this build does not know is an error naming it.
    pub fn of(metadata: &std::collections::HashMap<String, String>) -> io::Result<Self> {
        match metadata.get(ENCODING_KEY).map(String::as_str) {
            None => Ok(Encoding::Raw),
            Some(ZSTD_FRAMES) => Ok(Encoding::ZstdFrames),
            Some(other) => Err(io::Error::other(format!(
                "the upload is stored as {other:?}, which this worker cannot read (expected {ZSTD_FRAMES:?}); \
                 run the same version of hexflow in every service"
            ))),
        }
    }

    /// Splits a stored chunk into the pieces of the file it holds, in order, without
    /// decompressing anything.
    pub fn pieces(self, chunk: Bytes) -> io::Result<Vec<Piece>> {
        match self {
            Encoding::Raw => Ok(vec![Piece { len: chunk.len() as u64, bytes: chunk, compressed: false }]),
            Encoding::ZstdFrames => {
                let mut pieces = Vec::new();
                let mut rest = chunk;
                while !rest.is_empty() {
                    let frame_len = zstd::zstd_safe::find_frame_compressed_size(&rest).map_err(|code| {
                        corrupt(&format!("no whole zstd frame ({})", zstd::zstd_safe::get_error_name(code)))
                    })?;
                    let len = match zstd::zstd_safe::get_frame_content_size(&rest) {
                        Ok(Some(len)) if len <= MAX_FRAME_BYTES => len,
                        Ok(Some(len)) => return Err(corrupt(&format!("a frame claims {len} bytes"))),
                        Ok(None) | Err(_) => return Err(corrupt("a frame does not record its size")),
                    };
                    pieces.push(Piece { len, bytes: rest.split_to(frame_len), compressed: true });
                }
                Ok(pieces)
            }
        }
    }
}

/// A contiguous piece of the file, as stored.
#[derive(Debug, Clone)]
pub struct Piece {
    /// The file's bytes it holds.
    pub len: u64,
    bytes: Bytes,
    compressed: bool,
}

impl Piece {
    /// The file's bytes (decompressed when stored compressed; CPU-bound, about half a
    /// millisecond for 512 KiB).
    pub fn decode(self) -> io::Result<Bytes> {
        if !self.compressed {
            return Ok(self.bytes);
        }
        let decoded = zstd::bulk::decompress(&self.bytes, self.len as usize)?;
        if decoded.len() as u64 != self.len {
            return Err(corrupt(&format!(
                "a frame held {} bytes instead of the {} it records",
                decoded.len(),
                self.len
            )));
        }
        Ok(Bytes::from(decoded))
    }
}

fn corrupt(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("the stored upload is corrupt: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(encoding: Option<&str>) -> std::collections::HashMap<String, String> {
        encoding.map(|e| (ENCODING_KEY.to_owned(), e.to_owned())).into_iter().collect()
    }

    #[test]
    fn frames_packed_in_a_chunk_come_back_as_the_blocks_they_hold() {
        let blocks: Vec<Vec<u8>> = (0..3u8)
            .map(|i| format!("{i},host-{i},\"a text, with commas\"\n").repeat(1000 + usize::from(i)).into_bytes())
            .collect();
        let chunk: Vec<u8> = blocks.iter().flat_map(|b| compress_block(b).unwrap()).collect();
        assert!(chunk.len() * 10 < blocks.iter().map(Vec::len).sum::<usize>(), "repeated rows compress");
        let pieces = Encoding::ZstdFrames.pieces(Bytes::from(chunk)).unwrap();
        assert_eq!(
            pieces.iter().map(|p| p.len).collect::<Vec<_>>(),
            blocks.iter().map(|b| b.len() as u64).collect::<Vec<_>>()
        );
        for (piece, block) in pieces.into_iter().zip(&blocks) {
            assert_eq!(piece.decode().unwrap(), block.as_slice());
        }
    }

    #[test]
    fn incompressible_and_empty_blocks_round_trip() {
        let noise: Vec<u8> = (0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for block in [noise.as_slice(), b""] {
            let pieces = Encoding::ZstdFrames.pieces(Bytes::from(compress_block(block).unwrap())).unwrap();
            assert_eq!(pieces.len(), 1);
            assert_eq!(pieces[0].len, block.len() as u64);
            assert_eq!(pieces[0].clone().decode().unwrap(), block);
        }
    }

    #[test]
    fn a_chunk_cut_inside_a_frame_is_refused_as_corrupt() {
        let frame = compress_block(&b"asset,check_id\n".repeat(500)).unwrap();
        let err = Encoding::ZstdFrames.pieces(Bytes::from(frame[..frame.len() - 3].to_vec())).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("corrupt"), "{err}");
    }

    #[test]
    fn the_encoding_comes_from_the_metadata_and_an_unknown_one_is_named() {
        assert_eq!(Encoding::of(&metadata(None)).unwrap(), Encoding::Raw);
        assert_eq!(Encoding::of(&metadata(Some(ZSTD_FRAMES))).unwrap(), Encoding::ZstdFrames);
        let err = Encoding::of(&metadata(Some("brotli"))).unwrap_err();
        assert!(err.to_string().contains("\"brotli\""), "{err}");
        let raw = Encoding::Raw.pieces(Bytes::from_static(b"a,b\n")).unwrap();
        assert_eq!((raw.len(), raw[0].len), (1, 4));
    }
}

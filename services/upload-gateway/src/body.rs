//! Reading an upload's bytes: a size-limited, hashing, coalescing `AsyncRead` over the multipart
//! field, so the object store gets large chunks and memory stays flat whatever the file size.
//!
//! A failed read (limit passed, client gone) ends the stream early instead of returning an
//! error: the object store then writes its metadata, and the caller deletes the object, which
//! also removes its chunks. An error mid-put would leave chunks no metadata points to.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Buf, Bytes, BytesMut};
use futures::Stream;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, ReadBuf};

/// Bytes buffered before they are handed on (the object store writes one chunk per read).
pub const COALESCE_BYTES: usize = 512 * 1024;

/// Why an upload stream ended early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cut {
    /// More than the limit arrived.
    LimitExceeded,
    /// The client's stream failed (disconnect, malformed multipart).
    Failed(String),
}

/// An `AsyncRead` over a stream of byte chunks that counts, hashes and limits what passes.
pub struct FieldReader<S> {
    inner: S,
    buffer: BytesMut,
    eof: bool,
    cut: Option<Cut>,
    total: u64,
    limit: u64,
    hasher: Sha256,
}

impl<S, E> FieldReader<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    /// Wraps `inner`, refusing more than `limit` bytes in all.
    pub fn new(inner: S, limit: u64) -> Self {
        FieldReader { inner, buffer: BytesMut::new(), eof: false, cut: None, total: 0, limit, hasher: Sha256::new() }
    }

    fn take(&mut self, item: Option<Result<Bytes, E>>) {
        match item {
            Some(Ok(chunk)) => {
                self.total += chunk.len() as u64;
                if self.total > self.limit {
                    self.cut = Some(Cut::LimitExceeded);
                    self.eof = true;
                    return;
                }
                self.hasher.update(&chunk);
                self.buffer.extend_from_slice(&chunk);
            }
            Some(Err(e)) => {
                self.cut = Some(Cut::Failed(e.to_string()));
                self.eof = true;
            }
            None => self.eof = true,
        }
    }

    /// Reads until `want` bytes are buffered or the field ends; the bytes stay buffered, to be
    /// read again. Used to check the first bytes before storing.
    pub async fn fill(&mut self, want: usize) {
        use futures::StreamExt;
        while self.buffer.len() < want && !self.eof {
            let item = self.inner.next().await;
            self.take(item);
        }
    }

    /// The bytes buffered and not yet read.
    pub fn buffered(&self) -> &[u8] {
        &self.buffer
    }

    /// Why the stream ended early, if it did.
    pub fn cut(&self) -> Option<&Cut> {
        self.cut.as_ref()
    }

    /// True once the whole field has been received.
    pub fn at_eof(&self) -> bool {
        self.eof
    }

    /// Bytes received so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Hex SHA-256 of everything received (call after the last read).
    pub fn sha256_hex(&self) -> String {
        self.hasher.clone().finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl<S, E> AsyncRead for FieldReader<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        while this.buffer.len() < COALESCE_BYTES && !this.eof {
            match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Ready(item) => this.take(item),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = this.buffer.len().min(buf.remaining());
        buf.put_slice(&this.buffer[..n]);
        this.buffer.advance(n);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn chunks(n: usize, size: usize) -> impl Stream<Item = Result<Bytes, String>> + Unpin {
        futures::stream::iter((0..n).map(move |i| Ok(Bytes::from(vec![i as u8; size]))))
    }

    #[tokio::test]
    async fn coalesces_small_chunks_and_hashes_everything() {
        let mut reader = FieldReader::new(chunks(100, 16 * 1024), u64::MAX);
        assert_eq!(reader.cut(), None);
        reader.fill(10).await;
        assert_eq!(reader.buffered().len(), 16 * 1024);
        let mut buf = vec![0; 1024 * 1024];
        let first = reader.read(&mut buf).await.unwrap();
        assert_eq!(first, COALESCE_BYTES, "reads are coalesced to large chunks");
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).await.unwrap();
        assert_eq!(first + rest.len(), 100 * 16 * 1024);
        assert_eq!(reader.total(), 100 * 16 * 1024);
        assert_eq!(reader.sha256_hex().len(), 64);
    }

    #[tokio::test]
    async fn ends_early_and_says_so_past_the_limit() {
        let mut reader = FieldReader::new(chunks(10, 1000), 5_000);
        let mut sink = Vec::new();
        reader.read_to_end(&mut sink).await.unwrap();
        assert_eq!(sink.len(), 5_000);
        assert_eq!(reader.cut(), Some(&Cut::LimitExceeded));
    }
}

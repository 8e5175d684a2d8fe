//! Reading an upload's bytes: a size-limited, coalescing `AsyncRead` over the multipart field, so
//! the object store gets large chunks and memory stays flat whatever the file size. (The object
//! store hashes what it stores; its digest is the upload's SHA-256, so nothing hashes twice.)
//!
//! A failed read (limit passed, client gone) ends the stream early instead of returning an
//! error: the object store then writes its metadata, and the caller deletes the object, which
//! also removes its chunks. An error mid-put would leave chunks no metadata points to.

use std::{
    future::Future,
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::{Buf, Bytes, BytesMut};
use futures::Stream;
use tokio::{
    io::{AsyncRead, ReadBuf},
    time::Sleep,
};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

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

/// An `AsyncRead` over a stream of byte chunks that counts and limits what passes.
pub struct FieldReader<S> {
    inner: S,
    buffer: BytesMut,
    eof: bool,
    cut: Option<Cut>,
    total: u64,
    limit: u64,
    cancelled: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    idle: Option<(Duration, Pin<Box<Sleep>>)>,
    /// True while the last poll of `inner` was pending: the idle clock runs only then, so time
    /// spent by the object store (not reading) never counts as the client's silence.
    waiting: bool,
}

impl<S, E> FieldReader<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    /// Wraps `inner`, refusing more than `limit` bytes in all.
    pub fn new(inner: S, limit: u64) -> Self {
        FieldReader {
            inner,
            buffer: BytesMut::new(),
            eof: false,
            cut: None,
            total: 0,
            limit,
            cancelled: None,
            idle: None,
            waiting: false,
        }
    }

    /// Ends the stream early, as a [`Cut::Failed`], once `token` is cancelled (the request was
    /// dropped: it timed out, or the client went away while sending slowly).
    pub fn cancel_on(mut self, token: CancellationToken) -> Self {
        self.cancelled = Some(Box::pin(token.cancelled_owned()));
        self
    }

    /// Ends the stream early, as a [`Cut::Failed`], when no data arrives for `limit` (a client
    /// that stalls mid-upload would otherwise hold its connection until the request timeout).
    pub fn idle_timeout(mut self, limit: Duration) -> Self {
        self.idle = Some((limit, Box::pin(tokio::time::sleep(limit))));
        self
    }

    /// Takes the next chunk of the field, or notices the cancellation or a stall.
    fn poll_next_item(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(cancelled) = self.cancelled.as_mut()
            && cancelled.as_mut().poll(cx).is_ready()
        {
            self.cut = Some(Cut::Failed("the request was dropped (timed out, or the client went away)".into()));
            self.eof = true;
            return Poll::Ready(());
        }
        if !self.waiting
            && let Some((limit, sleep)) = self.idle.as_mut()
        {
            sleep.as_mut().reset(tokio::time::Instant::now() + *limit);
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(item) => {
                self.waiting = false;
                self.take(item);
                Poll::Ready(())
            }
            Poll::Pending => {
                self.waiting = true;
                if let Some((limit, sleep)) = self.idle.as_mut()
                    && sleep.as_mut().poll(cx).is_ready()
                {
                    self.cut = Some(Cut::Failed(format!("no data for {} s", limit.as_secs())));
                    self.eof = true;
                    return Poll::Ready(());
                }
                Poll::Pending
            }
        }
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
        while self.buffer.len() < want && !self.eof {
            std::future::poll_fn(|cx| self.poll_next_item(cx)).await;
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
}

impl<S, E> AsyncRead for FieldReader<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        while this.buffer.len() < COALESCE_BYTES && !this.eof {
            if this.poll_next_item(cx).is_pending() {
                return Poll::Pending;
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
    use futures::StreamExt;
    use tokio::io::AsyncReadExt;

    fn chunks(n: usize, size: usize) -> impl Stream<Item = Result<Bytes, String>> + Unpin {
        futures::stream::iter((0..n).map(move |i| Ok(Bytes::from(vec![i as u8; size]))))
    }

    #[tokio::test]
    async fn coalesces_small_chunks_and_counts_everything() {
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
    }

    #[tokio::test]
    async fn ends_early_and_says_so_past_the_limit() {
        let mut reader = FieldReader::new(chunks(10, 1000), 5_000);
        let mut sink = Vec::new();
        reader.read_to_end(&mut sink).await.unwrap();
        assert_eq!(sink.len(), 5_000);
        assert_eq!(reader.cut(), Some(&Cut::LimitExceeded));
    }

    #[tokio::test]
    async fn a_stream_silent_past_the_idle_timeout_ends_as_failed() {
        let first: Result<Bytes, String> = Ok(Bytes::from_static(b"a,b\n"));
        let stalled = futures::stream::iter([first]).chain(futures::stream::pending());
        let mut reader = FieldReader::new(stalled, u64::MAX).idle_timeout(std::time::Duration::from_millis(50));
        let mut sink = Vec::new();
        tokio::time::timeout(std::time::Duration::from_secs(5), reader.read_to_end(&mut sink)).await.unwrap().unwrap();
        assert_eq!(sink, b"a,b\n");
        assert!(matches!(reader.cut(), Some(Cut::Failed(why)) if why.contains("no data")));
    }

    #[tokio::test]
    async fn a_cancelled_request_ends_a_stalled_stream_as_failed() {
        let token = CancellationToken::new();
        let stalled = futures::stream::pending::<Result<Bytes, String>>();
        let mut reader = FieldReader::new(stalled, u64::MAX).cancel_on(token.clone());
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            token.cancel();
        });
        let mut sink = Vec::new();
        tokio::time::timeout(std::time::Duration::from_secs(5), reader.read_to_end(&mut sink)).await.unwrap().unwrap();
        assert!(matches!(reader.cut(), Some(Cut::Failed(_))));
    }
}

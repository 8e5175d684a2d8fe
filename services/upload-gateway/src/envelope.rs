//! A bound on the multipart envelope: each part's headers (`Content-Disposition` with the
//! filename, `Content-Type`) at most [`MAX_PART_HEADER_BYTES`].
//!
//! The multipart parser buffers a part's headers until their blank line, with no limit of its
//! own, and axum offers no way to give it one: a request whose "filename" runs for a gigabyte
//! would be held in memory whole before any check of ours could see it. This middleware watches
//! the raw body on its way to the parser and fails the stream as soon as one part's headers pass
//! the bound, so the parser answers an error instead of buffering on.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
};

use axum::{body::Body, extract::Request, http::header};
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};

/// Largest headers of one part (the filename alone may be 255 characters, up to 1 KiB in UTF-8).
pub const MAX_PART_HEADER_BYTES: usize = 16 * 1024;

/// Set when a request's part headers passed the bound (the parser only says that the stream
/// failed); in the request's extensions.
#[derive(Clone, Debug, Default)]
pub struct Overflow(Arc<AtomicBool>);

impl Overflow {
    /// True once the bound was passed.
    pub fn happened(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Middleware: wraps the body of a `multipart/form-data` request in a [`PartHeaderLimit`].
pub async fn bound_part_headers(mut request: Request) -> Request {
    let boundary = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).and_then(boundary_of);
    let Some(boundary) = boundary else { return request };
    let overflow = Overflow::default();
    request.extensions_mut().insert(overflow.clone());
    request.map(|body| Body::from_stream(PartHeaderLimit::new(body.into_data_stream(), &boundary, overflow)))
}

/// The `boundary` parameter of a `multipart/form-data` content type.
fn boundary_of(content_type: &str) -> Option<String> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params
        .split(';')
        .find_map(|param| {
            let (name, value) = param.split_once('=')?;
            name.trim().eq_ignore_ascii_case("boundary").then(|| value.trim().trim_matches('"').to_owned())
        })
        .filter(|b| !b.is_empty() && b.len() <= 200)
}

/// Where the scan stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// In a part's content (or the preamble): looking for the next delimiter line.
    Content,
    /// In a part's headers, this many bytes so far: looking for their blank line.
    Headers(usize),
}

/// A body stream that fails once a part's headers pass [`MAX_PART_HEADER_BYTES`].
pub struct PartHeaderLimit<S> {
    inner: S,
    /// `--<boundary>\r\n`: the line that starts a part's headers.
    delimiter: Vec<u8>,
    scan: Scan,
    /// The end of the previous chunk, so a delimiter split between two chunks is still found.
    tail: BytesMut,
    overflow: Overflow,
}

impl<S> PartHeaderLimit<S> {
    /// Watches `inner`, a multipart body with this `boundary`; sets `overflow` when it fails.
    pub fn new(inner: S, boundary: &str, overflow: Overflow) -> Self {
        PartHeaderLimit {
            inner,
            delimiter: format!("--{boundary}\r\n").into_bytes(),
            scan: Scan::Content,
            tail: BytesMut::new(),
            overflow,
        }
    }

    /// Advances the scan over `chunk`; false once a part's headers are too long.
    fn feed(&mut self, chunk: &[u8]) -> bool {
        let mut data = std::mem::take(&mut self.tail);
        data.extend_from_slice(chunk);
        let mut at = 0;
        loop {
            match self.scan {
                Scan::Content => match memchr::memmem::find(&data[at..], &self.delimiter) {
                    Some(found) => {
                        at += found + self.delimiter.len();
                        self.scan = Scan::Headers(0);
                    }
                    None => {
                        let keep = (self.delimiter.len() - 1).min(data.len() - at);
                        self.tail = data.split_off(data.len() - keep);
                        return true;
                    }
                },
                Scan::Headers(seen) => match memchr::memmem::find(&data[at..], b"\r\n\r\n") {
                    Some(found) if seen + found <= MAX_PART_HEADER_BYTES => {
                        at += found + 4;
                        self.scan = Scan::Content;
                    }
                    Some(_) => return false,
                    None => {
                        let rest = data.len() - at;
                        // The kept tail (at most 3 bytes) is counted again next time: harmless.
                        if seen + rest > MAX_PART_HEADER_BYTES {
                            return false;
                        }
                        self.scan = Scan::Headers(seen + rest);
                        self.tail = data.split_off(data.len() - rest.min(3));
                        return true;
                    }
                },
            }
        }
    }
}

impl<S, E> Stream for PartHeaderLimit<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Into<axum::BoxError>,
{
    type Item = Result<Bytes, axum::BoxError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.overflow.happened() {
            return Poll::Ready(None);
        }
        match self.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                if self.feed(&chunk) {
                    Poll::Ready(Some(Ok(chunk)))
                } else {
                    self.overflow.0.store(true, Ordering::Relaxed);
                    let message = format!("a part's headers are longer than {MAX_PART_HEADER_BYTES} bytes");
                    Poll::Ready(Some(Err(io::Error::new(io::ErrorKind::InvalidData, message).into())))
                }
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(err.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(body: &[u8], piece: usize) -> bool {
        let mut limit =
            PartHeaderLimit::new(futures::stream::empty::<Result<Bytes, io::Error>>(), "XyZ", Overflow::default());
        body.chunks(piece).all(|chunk| limit.feed(chunk))
    }

    fn part(headers: &str, content: &str) -> String {
        format!("--XyZ\r\n{headers}\r\n\r\n{content}\r\n")
    }

    #[test]
    fn ordinary_parts_pass_whatever_the_chunking() {
        let body = format!(
            "{}{}--XyZ--\r\n",
            part("Content-Disposition: form-data; name=\"scanDate\"", "2026-01-01"),
            part("Content-Disposition: form-data; name=\"file\"; filename=\"a.csv\"", &"x,y\r\n".repeat(10_000)),
        );
        for piece in [1, 2, 3, 7, 64, 4096, body.len()] {
            assert!(scan(body.as_bytes(), piece), "chunks of {piece}");
        }
    }

    #[test]
    fn a_part_whose_headers_run_past_the_bound_fails_whatever_the_chunking() {
        let name = "n".repeat(MAX_PART_HEADER_BYTES);
        let body = part(&format!("Content-Disposition: form-data; name=\"file\"; filename=\"{name}\""), "x");
        for piece in [1, 5, 1000, body.len()] {
            assert!(!scan(body.as_bytes(), piece), "chunks of {piece}");
        }
        // Still failing when the blank line never comes.
        let endless = format!("--XyZ\r\nContent-Disposition: {}", "z".repeat(2 * MAX_PART_HEADER_BYTES));
        assert!(!scan(endless.as_bytes(), 512));
    }

    #[test]
    fn large_content_is_not_mistaken_for_headers() {
        let body = part("Content-Disposition: form-data; name=\"file\"; filename=\"a.csv\"", &"y".repeat(1 << 20));
        assert!(scan(body.as_bytes(), 8192));
    }

    #[test]
    fn the_boundary_is_read_from_the_content_type() {
        assert_eq!(boundary_of("multipart/form-data; boundary=abc").as_deref(), Some("abc"));
        assert_eq!(boundary_of("Multipart/Form-Data; charset=utf-8; boundary=\"a b\"").as_deref(), Some("a b"));
        assert_eq!(boundary_of("multipart/form-data"), None);
        assert_eq!(boundary_of("text/plain; boundary=abc"), None);
    }
}

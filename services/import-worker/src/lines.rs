//! Byte offsets of line starts, for resume points. The format reader counts physical lines by
//! LF (a record starts on the line of its first byte) but does not say where a line starts in
//! the file; this reader sits under it, sees every byte in order, and remembers where the
//! lines it has read ahead of the parser start, until the parser has passed them. Transcoding
//! (Windows-1252) happens above it, and LF and CR are the same byte in both encodings, so the
//! offsets are those of the raw file.
//!
//! A lone CR (not followed by LF) also ends a record, so a record may start in mid-line: once
//! one is seen, no offset is given any more.

use std::{cell::RefCell, collections::VecDeque, io::Read, rc::Rc};

/// Where the lines read so far start.
#[derive(Debug)]
pub struct LineIndex {
    /// Bytes seen (file offset of the next byte).
    pos: u64,
    /// Number of the line the next byte belongs to.
    line: u64,
    /// Line starts not yet passed by the parser: (line, offset).
    starts: VecDeque<(u64, u64)>,
    prev_cr: bool,
    lone_cr: bool,
}

impl LineIndex {
    /// An index whose first byte is at `offset`, the start of line `line`.
    pub fn new(offset: u64, line: u64) -> Self {
        LineIndex { pos: offset, line, starts: VecDeque::from([(line, offset)]), prev_cr: false, lone_cr: false }
    }

    /// An index that never gives an offset (the file cannot be resumed).
    pub fn disabled() -> Self {
        LineIndex { lone_cr: true, ..LineIndex::new(0, 1) }
    }

    fn observe(&mut self, buf: &[u8]) {
        if self.prev_cr && buf.first().is_some_and(|b| *b != b'\n') {
            self.lone_cr = true;
        }
        for i in memchr::memchr2_iter(b'\n', b'\r', buf) {
            if buf[i] == b'\n' {
                self.line += 1;
                if !self.lone_cr {
                    self.starts.push_back((self.line, self.pos + i as u64 + 1));
                }
            } else if buf.get(i + 1).is_some_and(|n| *n != b'\n') {
                self.lone_cr = true;
            }
        }
        if !buf.is_empty() {
            self.prev_cr = buf.last() == Some(&b'\r');
        }
        self.pos += buf.len() as u64;
        if self.lone_cr {
            self.starts.clear();
        }
    }

    /// Forgets the starts of lines before `line` (the parser has passed them).
    pub fn discard_before(&mut self, line: u64) {
        while self.starts.front().is_some_and(|(l, _)| *l < line) {
            self.starts.pop_front();
        }
    }

    /// Offset where `line` starts, if known (and no lone CR was seen).
    pub fn offset_of(&mut self, line: u64) -> Option<u64> {
        self.discard_before(line);
        match self.starts.front() {
            Some((l, offset)) if *l == line && !self.lone_cr => Some(*offset),
            _ => None,
        }
    }

    /// Offset of the end of what was read, when the whole file was read without a lone CR.
    pub fn end(&self) -> Option<u64> {
        (!self.lone_cr).then_some(self.pos)
    }
}

/// A reader that feeds a shared [`LineIndex`] with what passes through it.
pub struct Indexed<R> {
    inner: R,
    index: Rc<RefCell<LineIndex>>,
}

impl<R> Indexed<R> {
    /// Wraps `inner`, whose bytes the index describes.
    pub fn new(inner: R, index: Rc<RefCell<LineIndex>>) -> Self {
        Indexed { inner, index }
    }
}

impl<R: Read> Read for Indexed<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.index.borrow_mut().observe(&buf[..n]);
        Ok(n)
    }
}

/// Offset where the line after `header_line` starts in `prefix`, when the header and what is
/// before it hold no quoted line break and no lone CR (so a resumed read can give the parser
/// these bytes and then the file from any later line start); `None` otherwise.
pub fn header_end(prefix: &[u8], header_line: u64) -> Option<usize> {
    let mut index = LineIndex::new(0, 1);
    index.observe(prefix);
    let end = index.offset_of(header_line + 1)? as usize;
    let head = &prefix[..end];
    let quotes = head.iter().filter(|b| **b == b'"').count();
    (quotes % 2 == 0).then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index_of(text: &[u8], reads: usize) -> LineIndex {
        let mut index = LineIndex::new(0, 1);
        for chunk in text.chunks(reads) {
            index.observe(chunk);
        }
        index
    }

    #[test]
    fn line_starts_are_found_across_reads_of_any_size() {
        let text = b"h1,h2\r\na,b\r\n\r\nc,\"d\r\ne\"\r\nf,g";
        for reads in 1..text.len() {
            let mut index = index_of(text, reads);
            assert_eq!(index.offset_of(2), Some(7), "reads of {reads}");
            assert_eq!(index.offset_of(4), Some(14));
            assert_eq!(index.offset_of(6), Some(24));
            assert_eq!(index.offset_of(3), None, "passed");
            assert_eq!(index.end(), Some(text.len() as u64));
        }
    }

    #[test]
    fn a_lone_cr_gives_no_offsets() {
        for reads in 1..8 {
            let mut index = index_of(b"h1,h2\ra,b\nc,d\n", reads);
            assert_eq!(index.offset_of(2), None);
            assert_eq!(index.end(), None);
        }
    }

    #[test]
    fn an_index_can_start_in_the_middle_of_a_file() {
        let mut index = LineIndex::new(100, 7);
        index.observe(b"a,b\nc,d\n");
        assert_eq!(index.offset_of(7), Some(100));
        assert_eq!(index.offset_of(8), Some(104));
    }

    #[test]
    fn the_header_ends_at_the_next_line_unless_a_quote_spans_it() {
        assert_eq!(header_end(b"# preamble\nh1,h2\na,b\n", 2), Some(17));
        assert_eq!(header_end(b"h1,\"h\n2\"\na,b\n", 1), None);
        assert_eq!(header_end(b"h1,h2", 1), None);
    }
}

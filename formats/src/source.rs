//! [`Source`]: the `Read` adapter between the raw upload and the CSV parser.
//!
//! It skips the BOM, enforces the physical-line and record size caps *before* the CSV
//! parser buffers anything (so a 10 GB line never reaches memory), notices a file that ends
//! inside a quoted cell (the csv crate silently accepts that), records empty lines (which the
//! csv crate skips without a trace), and transcodes Windows-1252 and UTF-16 to UTF-8.
//!
//! To know what is quoted it runs the same small state machine as csv-core: a quote opens a
//! quoted cell only at the start of a cell, and `""` inside one is an escaped quote.
//! Physical lines end at LF, CRLF or a lone CR (old Mac exports), as records do for csv-core,
//! so a line number in an error points at the line an editor shows.
//!
//! Windows-1252 keeps ASCII where it is, so its raw bytes are scanned and then transcoded;
//! UTF-16 spreads each ASCII character over two bytes, so it is decoded first and the UTF-8
//! is scanned (its caps count UTF-8 bytes).

use std::collections::VecDeque;
use std::io::{self, Read};

use crate::encoding::{TextEncoding, Utf16Decoder, cp1252_to_utf8};

/// Raw bytes read from the inner reader at a time.
const CHUNK: usize = 64 * 1024;

/// Why the source refused to go on; carried inside an `io::Error` through the csv crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SourceError {
    #[error("line {line} is longer than {limit} bytes")]
    LineTooLong { line: u64, limit: usize },
    #[error("record at line {line} is longer than {limit} bytes")]
    RecordTooLong { line: u64, limit: usize },
    #[error("file ends inside a quoted cell opened at line {line}")]
    UnterminatedQuote { line: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quote {
    /// At the start of a cell.
    Start,
    /// Inside an unquoted cell.
    Unquoted,
    /// Inside a quoted cell.
    Quoted,
    /// Just after a quote inside a quoted cell (closing, or the first of `""`).
    Closing,
}

/// The adapter. See the module docs.
pub(crate) struct Source<R> {
    inner: R,
    bom_left: usize,
    /// Windows-1252: transcode the scanned bytes.
    transcode: bool,
    /// UTF-16: decode before scanning.
    utf16: Option<Utf16Decoder>,
    /// UTF-16 decoded to UTF-8, before it is scanned (kept to reuse its allocation).
    decoded: Vec<u8>,
    delimiter: u8,
    max_line: usize,
    max_record: usize,
    state: Quote,
    /// Current physical line, 1-based.
    line: u64,
    line_bytes: usize,
    /// No byte of the current record seen yet (outside quotes).
    at_record_start: bool,
    /// The previous byte was a CR outside quotes (so an LF completes a CRLF record end).
    after_cr: bool,
    /// The previous byte was a CR, quoted or not (so an LF completes a CRLF line end).
    line_after_cr: bool,
    record_bytes: usize,
    record_line: u64,
    quote_line: u64,
    /// Runs of empty lines seen outside quoted cells: (first line, count).
    blank_runs: VecDeque<(u64, u64)>,
    /// Start lines of records scanned but not yet taken (csv's own line numbers are wrong
    /// after empty lines, with CRLF and with lone CRs, so the physical lines are counted here).
    record_lines: VecDeque<u64>,
    raw: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    pending_error: Option<SourceError>,
    eof: bool,
}

impl<R: Read> Source<R> {
    /// A source over `inner` in `encoding`; `bom` says whether `inner` starts with the BOM of
    /// that encoding (skipped).
    pub(crate) fn new(
        inner: R,
        bom: bool,
        encoding: TextEncoding,
        delimiter: u8,
        max_line: usize,
        max_record: usize,
    ) -> Source<R> {
        Source {
            inner,
            bom_left: if bom { encoding.bom_len() } else { 0 },
            transcode: encoding == TextEncoding::Windows1252,
            utf16: encoding.is_utf16().then(|| Utf16Decoder::new(encoding == TextEncoding::Utf16Be)),
            decoded: Vec::new(),
            delimiter,
            max_line,
            max_record,
            state: Quote::Start,
            line: 1,
            line_bytes: 0,
            at_record_start: true,
            after_cr: false,
            line_after_cr: false,
            record_bytes: 0,
            record_line: 1,
            quote_line: 1,
            blank_runs: VecDeque::new(),
            record_lines: VecDeque::new(),
            raw: vec![0; CHUNK],
            out: Vec::with_capacity(CHUNK),
            out_pos: 0,
            pending_error: None,
            eof: false,
        }
    }

    /// The physical line the source has read up to (for I/O error messages).
    pub(crate) fn line(&self) -> u64 {
        self.line
    }

    /// Takes the first recorded empty line that comes before `line`, if any.
    pub(crate) fn pop_blank_before(&mut self, line: u64) -> Option<u64> {
        let (first, count) = self.blank_runs.front_mut()?;
        if *first >= line {
            return None;
        }
        let taken = *first;
        *first += 1;
        *count -= 1;
        if *count == 0 {
            self.blank_runs.pop_front();
        }
        Some(taken)
    }

    fn push_blank(&mut self, line: u64) {
        match self.blank_runs.back_mut() {
            Some((first, count)) if *first + *count == line => *count += 1,
            _ => self.blank_runs.push_back((line, 1)),
        }
    }

    /// Takes the start line of the next record the CSV parser will yield.
    pub(crate) fn pop_record_line(&mut self) -> Option<u64> {
        self.record_lines.pop_front()
    }

    /// Runs the state machine over `chunk`; on a violation returns how many bytes are
    /// fine to deliver and the error to raise after them. Runs of bytes that change nothing but
    /// the size counters (inside a cell, up to the next quote, delimiter or line end) are
    /// skipped with `memchr`; every other byte goes through [`Source::step`].
    fn scan(&mut self, chunk: &[u8]) -> Result<(), (usize, SourceError)> {
        let mut i = 0;
        while i < chunk.len() {
            let rest = &chunk[i..];
            let run = match self.state {
                Quote::Quoted => memchr::memchr3(b'"', b'\n', b'\r', rest).unwrap_or(rest.len()),
                Quote::Unquoted => memchr::memchr3(self.delimiter, b'\n', b'\r', rest).unwrap_or(rest.len()),
                Quote::Start | Quote::Closing => 0,
            };
            if run > 0 {
                self.skip(i, run)?;
                i += run;
            } else {
                self.step(i, chunk[i])?;
                i += 1;
            }
        }
        Ok(())
    }

    /// Counts `len` bytes at `at` that neither end a line nor change the quoting state, with
    /// the same size checks (and the same error position) as [`Source::step`] byte by byte.
    fn skip(&mut self, at: usize, len: usize) -> Result<(), (usize, SourceError)> {
        self.after_cr = false;
        self.line_after_cr = false;
        let to_line_limit = self.max_line.saturating_sub(self.line_bytes);
        let to_record_limit = self.max_record.saturating_sub(self.record_bytes);
        if to_line_limit < len && to_line_limit <= to_record_limit {
            let limit = self.max_line;
            return Err((at + to_line_limit, SourceError::LineTooLong { line: self.line, limit }));
        }
        if to_record_limit < len {
            let (line, limit) = (self.record_line, self.max_record);
            return Err((at + to_record_limit, SourceError::RecordTooLong { line, limit }));
        }
        self.line_bytes += len;
        self.record_bytes += len;
        Ok(())
    }

    /// One byte through the state machine; `at` is its index, for the error position.
    fn step(&mut self, at: usize, b: u8) -> Result<(), (usize, SourceError)> {
        let d = self.delimiter;
        let in_quotes = self.state == Quote::Quoted;
        let eol = b == b'\n' || b == b'\r';
        self.state = match (self.state, b) {
            (Quote::Start, b'"') => {
                self.quote_line = self.line;
                Quote::Quoted
            }
            (Quote::Start, _) if b == d || eol => Quote::Start,
            (Quote::Start, _) => Quote::Unquoted,
            (Quote::Unquoted, _) if b == d || eol => Quote::Start,
            (Quote::Unquoted, _) => Quote::Unquoted,
            (Quote::Quoted, b'"') => Quote::Closing,
            (Quote::Quoted, _) => Quote::Quoted,
            (Quote::Closing, b'"') => Quote::Quoted,
            (Quote::Closing, _) if b == d || eol => Quote::Start,
            (Quote::Closing, _) => Quote::Unquoted,
        };
        // Records, as csv-core sees them: outside quotes CR, LF or CRLF ends a record,
        // and a terminator at the start of a record is an empty line it skips.
        if !in_quotes {
            if eol {
                let lf_of_crlf = b == b'\n' && self.after_cr;
                if !lf_of_crlf {
                    if self.at_record_start {
                        self.push_blank(self.line);
                    }
                    self.at_record_start = true;
                    self.record_bytes = 0;
                }
            } else if self.at_record_start {
                self.at_record_start = false;
                self.record_line = self.line;
                self.record_lines.push_back(self.line);
            }
        }
        self.after_cr = b == b'\r' && !in_quotes;
        self.record_bytes += 1;
        if eol {
            // CR, LF and CRLF each end one physical line.
            if !(b == b'\n' && self.line_after_cr) {
                self.line += 1;
            }
            self.line_after_cr = b == b'\r';
            self.line_bytes = 0;
            return Ok(());
        }
        self.line_after_cr = false;
        self.line_bytes += 1;
        if self.line_bytes > self.max_line {
            let limit = self.max_line;
            return Err((at, SourceError::LineTooLong { line: self.line, limit }));
        }
        if self.record_bytes > self.max_record {
            let (line, limit) = (self.record_line, self.max_record);
            return Err((at, SourceError::RecordTooLong { line, limit }));
        }
        Ok(())
    }

    /// Reads and processes the next raw chunk into `out`.
    fn fill(&mut self) -> io::Result<()> {
        self.out.clear();
        self.out_pos = 0;
        if let Some(e) = self.pending_error.take() {
            return Err(io::Error::other(e));
        }
        let mut raw = std::mem::take(&mut self.raw);
        let n = loop {
            match self.inner.read(&mut raw) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.raw = raw;
                    return Err(e);
                }
            }
        };
        if n == 0 {
            self.raw = raw;
            self.eof = true;
            let mut decoded = std::mem::take(&mut self.decoded);
            decoded.clear();
            if let Some(decoder) = &mut self.utf16 {
                decoder.finish(&mut decoded);
                self.deliver(&decoded);
            }
            self.decoded = decoded;
            if self.state == Quote::Quoted && self.pending_error.is_none() {
                let line = self.quote_line;
                return Err(io::Error::other(SourceError::UnterminatedQuote { line }));
            }
            return Ok(());
        }
        let skip = self.bom_left.min(n);
        self.bom_left -= skip;
        let chunk = &raw[skip..n];
        if let Some(decoder) = &mut self.utf16 {
            let mut decoded = std::mem::take(&mut self.decoded);
            decoded.clear();
            decoder.decode(chunk, &mut decoded);
            self.deliver(&decoded);
            self.decoded = decoded;
        } else {
            self.deliver(chunk);
        }
        self.raw = raw;
        Ok(())
    }

    /// Scans `chunk` and appends what may be delivered of it to `out` (transcoded when the
    /// file is Windows-1252); a violation is kept to be raised after the good bytes.
    fn deliver(&mut self, mut chunk: &[u8]) {
        if let Err((ok_len, e)) = self.scan(chunk) {
            chunk = &chunk[..ok_len];
            self.pending_error = Some(e);
        }
        if self.transcode {
            cp1252_to_utf8(chunk, &mut self.out);
        } else {
            self.out.extend_from_slice(chunk);
        }
    }
}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.out_pos < self.out.len() {
                let n = buf.len().min(self.out.len() - self.out_pos);
                buf[..n].copy_from_slice(&self.out[self.out_pos..self.out_pos + n]);
                self.out_pos += n;
                return Ok(n);
            }
            if self.eof && self.pending_error.is_none() {
                return Ok(0);
            }
            self.fill()?;
        }
    }
}

/// The driver of the fuzz targets (`tests/it/fuzz/`), for the one that needs the private state.
#[cfg(test)]
#[path = "../tests/it/fuzz/driver.rs"]
mod fuzz_driver;

/// The physical lines of `bytes`, as line numbers count them: split at LF, CRLF and a lone CR
/// (an old Mac's line end). Reading never builds this list; it says what the numbers mean.
pub fn physical_lines(bytes: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        if bytes[i] == b'\n' || bytes[i] == b'\r' {
            lines.push(&bytes[start..i]);
            if bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
                i += 1;
            }
            start = i + 1;
        }
        i += 1;
    }
    lines.push(&bytes[start..]);
    lines
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::sample::select;

    use super::*;
    use crate::encoding::BOM;

    /// Everything the state machine keeps, to compare two sources.
    fn snapshot(src: &Source<&[u8]>) -> String {
        format!(
            "{:?} line={} line_bytes={} record_bytes={} record_line={} quote_line={} start={} cr={} line_cr={} blanks={:?} records={:?}",
            src.state,
            src.line,
            src.line_bytes,
            src.record_bytes,
            src.record_line,
            src.quote_line,
            src.at_record_start,
            src.after_cr,
            src.line_after_cr,
            src.blank_runs,
            src.record_lines
        )
    }

    /// Feeds `input` in chunks of `chunk_len()` bytes to a source that skips runs and to one
    /// that steps through each byte: both must stop at the same byte with the same error, and
    /// hold the same state after every chunk.
    fn skipping_equals_stepping(
        input: &[u8],
        delimiter: u8,
        max_line: usize,
        max_record: usize,
        mut chunk_len: impl FnMut() -> usize,
    ) -> Result<(), String> {
        let mut fast = Source::new(&b""[..], false, TextEncoding::Utf8, delimiter, max_line, max_record);
        let mut slow = Source::new(&b""[..], false, TextEncoding::Utf8, delimiter, max_line, max_record);
        let case =
            || format!("{:?} delimiter {:?} limits {max_line}/{max_record}", String::from_utf8_lossy(input), delimiter);
        let mut from = 0;
        while from < input.len() {
            let to = (from + chunk_len()).min(input.len());
            let chunk = &input[from..to];
            let fast_result = fast.scan(chunk);
            let slow_result = chunk.iter().enumerate().try_for_each(|(i, &b)| slow.step(i, b));
            if fast_result != slow_result {
                return Err(format!("{}: skipping gave {fast_result:?}, stepping {slow_result:?}", case()));
            }
            if fast_result.is_err() {
                // The stream stops at the error: what the state holds after it is never read.
                break;
            }
            let (fast_state, slow_state) = (snapshot(&fast), snapshot(&slow));
            if fast_state != slow_state {
                return Err(format!("{}: skipping left {fast_state}, stepping {slow_state}", case()));
            }
            from = to;
        }
        Ok(())
    }

    #[test]
    fn skipping_runs_gives_exactly_what_stepping_each_byte_gives() {
        let alphabet = b"ab,;\"\"\n\n\r xyz";
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..3000 {
            let len = (next() % 200) as usize;
            let input: Vec<u8> = (0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]).collect();
            let delimiter = if next() % 2 == 0 { b',' } else { b';' };
            let (max_line, max_record) = (1 + (next() % 40) as usize, 1 + (next() % 80) as usize);
            if let Err(e) =
                skipping_equals_stepping(&input, delimiter, max_line, max_record, || 1 + (next() % 50) as usize)
            {
                panic!("{e}");
            }
        }
    }

    /// Bytes that move the state machine, mostly, and any byte now and then.
    const STRUCTURE: &[u8] = b"\"\",;\t|\r\n\nab ";
    const DELIMITERS: &[u8] = b",;\t|";

    /// Hands out at most `.1` bytes per read, so the BOM and runs are cut across reads.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.1).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    /// Extends the test above to every byte, delimiter and chunking, and checks what the source
    /// delivers: the input itself (minus the BOM), no line over the cap, and the right error.
    #[test]
    fn fuzz_source_skips_like_it_steps_and_delivers_no_line_over_the_cap() {
        let byte = prop_oneof![4 => select(STRUCTURE), 1 => any::<u8>()];
        let caps = (1usize..60, 1usize..160);
        let chunks = prop::collection::vec(1usize..64, 1..8);
        let flags = (any::<bool>(), any::<bool>());
        let strategy = (prop::collection::vec(byte, 0..400), select(DELIMITERS), caps, chunks, flags);
        super::fuzz_driver::fuzz(
            "source",
            10_000,
            strategy,
            |(input, delimiter, (max_line, max_record), chunks, (bom, transcode))| {
                let mut chunk = chunks.iter().cycle().copied();
                skipping_equals_stepping(&input, delimiter, max_line, max_record, || chunk.next().unwrap_or(1))
                    .map_err(TestCaseError::fail)?;

                let file = if bom { [BOM, input.as_slice()].concat() } else { input.clone() };
                let encoding = if transcode { TextEncoding::Windows1252 } else { TextEncoding::Utf8 };
                let mut src = Source::new(Trickle(&file, chunks[0]), bom, encoding, delimiter, max_line, max_record);
                let mut out = Vec::new();
                let result = src.read_to_end(&mut out);
                let error =
                    result.as_ref().err().and_then(|e| e.get_ref()).and_then(|e| e.downcast_ref::<SourceError>());
                if transcode {
                    prop_assert!(std::str::from_utf8(&out).is_ok(), "transcoded output is not UTF-8");
                } else {
                    prop_assert!(input.starts_with(&out), "the output is not the input");
                    let longest = physical_lines(&out).into_iter().map(<[u8]>::len).max().unwrap_or(0);
                    prop_assert!(longest <= max_line, "a {}-byte line passed the {} cap", longest, max_line);
                }
                let long_line = physical_lines(&input).iter().position(|l| l.len() > max_line).map(|i| i as u64 + 1);
                match (error, long_line) {
                    (None, _) => {
                        prop_assert!(result.is_ok(), "an I/O error from a slice: {:?}", result);
                        prop_assert_eq!(long_line, None, "a line over the cap was delivered");
                        prop_assert!(transcode || out == input, "the output is cut short");
                    }
                    (Some(SourceError::LineTooLong { line, limit }), long) => {
                        prop_assert_eq!((Some(*line), *limit), (long, max_line));
                    }
                    (Some(SourceError::RecordTooLong { line, limit }), long) => {
                        prop_assert!(*limit == max_record && long.is_none_or(|l| *line <= l), "{:?}", error);
                    }
                    (Some(SourceError::UnterminatedQuote { .. }), long) => prop_assert_eq!(long, None),
                }
                let records: Vec<u64> = std::iter::from_fn(|| src.pop_record_line()).collect();
                let blanks: Vec<u64> = std::iter::from_fn(|| src.pop_blank_before(u64::MAX)).collect();
                for lines in [&records, &blanks] {
                    prop_assert!(lines.windows(2).all(|w| w[0] <= w[1]), "lines out of order: {:?}", lines);
                }
                Ok(())
            },
        );
    }

    fn drain(src: &mut Source<&[u8]>) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        src.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn strips_bom_and_records_blank_lines_outside_quotes() {
        let input = b"\xEF\xBB\xBFa,b\n\n\"x\n\ny\",2\r\n\r\n\n1,2\n".as_slice();
        let mut src = Source::new(input, true, TextEncoding::Utf8, b',', 100, 1000);
        assert_eq!(drain(&mut src).unwrap(), b"a,b\n\n\"x\n\ny\",2\r\n\r\n\n1,2\n");
        let blanks: Vec<u64> = std::iter::from_fn(|| src.pop_blank_before(u64::MAX)).collect();
        assert_eq!(blanks, [2, 6, 7]);
        let records: Vec<u64> = std::iter::from_fn(|| src.pop_record_line()).collect();
        assert_eq!(records, [1, 3, 8]);
    }

    #[test]
    fn long_line_is_refused_after_the_good_lines() {
        let mut input = b"a,b\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 50));
        let mut src = Source::new(input.as_slice(), false, TextEncoding::Utf8, b',', 20, 1000);
        let mut buf = [0u8; 1024];
        let n = src.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"a,b\n"));
        let err = src.read(&mut buf).unwrap_err();
        let inner = err.get_ref().and_then(|e| e.downcast_ref::<SourceError>());
        assert_eq!(inner, Some(&SourceError::LineTooLong { line: 2, limit: 20 }));
    }

    #[test]
    fn unterminated_quote_and_escaped_quotes() {
        let mut ok = Source::new(b"a,\"b\"\"c\"\nd\"e,f".as_slice(), false, TextEncoding::Utf8, b',', 99, 999);
        assert!(drain(&mut ok).is_ok());
        let mut bad = Source::new(b"a,b\n1,\"open\n\n".as_slice(), false, TextEncoding::Utf8, b',', 99, 999);
        let err = drain(&mut bad).unwrap_err();
        let inner = err.get_ref().and_then(|e| e.downcast_ref::<SourceError>());
        assert_eq!(inner, Some(&SourceError::UnterminatedQuote { line: 2 }));
    }

    #[test]
    fn lone_crs_end_lines_and_crlf_ends_one() {
        let input = b"a,b\r\r\"x\ry\",2\r\n1,2\r\r\n3,4\n\r5,6".as_slice();
        let mut src = Source::new(input, false, TextEncoding::Utf8, b',', 100, 1000);
        assert_eq!(drain(&mut src).unwrap(), input);
        let records: Vec<u64> = std::iter::from_fn(|| src.pop_record_line()).collect();
        assert_eq!(records, [1, 3, 5, 7, 9]);
        let blanks: Vec<u64> = std::iter::from_fn(|| src.pop_blank_before(u64::MAX)).collect();
        assert_eq!(blanks, [2, 6, 8]);
    }

    #[test]
    fn a_cr_only_file_is_capped_per_line_not_as_one_line() {
        let line = b"xxxxxxxxxx\r";
        let input: Vec<u8> = line.repeat(50);
        let mut src = Source::new(input.as_slice(), false, TextEncoding::Utf8, b',', 20, 1000);
        assert_eq!(drain(&mut src).unwrap(), input);
        assert_eq!(src.line(), 51);
    }

    #[test]
    fn decodes_utf16_in_both_byte_orders_and_skips_its_bom() {
        let text = "h\t\"caf\u{e9}\r\n\u{1F600}\"\r\n\r\n2\t\u{20AC}\r\n";
        for (encoding, bom, unit) in [
            (TextEncoding::Utf16Le, [0xFF, 0xFE], u16::to_le_bytes as fn(u16) -> [u8; 2]),
            (TextEncoding::Utf16Be, [0xFE, 0xFF], u16::to_be_bytes),
        ] {
            let bytes: Vec<u8> = bom.into_iter().chain(text.encode_utf16().flat_map(unit)).collect();
            for chunk in [1, 3, 4, 7, bytes.len()] {
                let mut src = Source::new(Trickle(&bytes, chunk), true, encoding, b'\t', 100, 1000);
                let mut out = Vec::new();
                src.read_to_end(&mut out).unwrap();
                assert_eq!(String::from_utf8(out).unwrap(), text, "{encoding} in {chunk}-byte reads");
                let records: Vec<u64> = std::iter::from_fn(|| src.pop_record_line()).collect();
                assert_eq!(records, [1, 4], "{encoding} in {chunk}-byte reads");
                assert_eq!(src.pop_blank_before(u64::MAX), Some(3));
            }
        }
    }

    #[test]
    fn transcodes_windows_1252() {
        let mut src = Source::new(b"caf\xE9,\x80\n".as_slice(), false, TextEncoding::Windows1252, b',', 99, 999);
        assert_eq!(String::from_utf8(drain(&mut src).unwrap()).unwrap(), "café,€\n");
    }
}

//! Inputs for the fuzz targets: arbitrary bytes, bytes made mostly of CSV punctuation, and
//! near-valid CSV made by mutating the heads of the real corpus and of the project's fixtures
//! (so real headers of every format, real preambles, real quoting). Every input is bounded.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use formats::{Format, Sniffed};
use proptest::prelude::*;
use proptest::sample::select;

use crate::support::{corpus_dir, fixtures_dir, sniff_bytes};

/// Physical lines kept from each seed file: its header and a few records.
const SEED_LINES: usize = 40;
/// Bytes kept from each seed file at most.
const SEED_BYTES: usize = 12 * 1024;

/// Bytes that change the parse: quotes, the four delimiters, line ends, a BOM, Windows-1252
/// and UTF-8 letters, a NUL, and cells each format validates.
const TOKENS: &[&[u8]] = &[
    b"\"",
    b"\"\"",
    b",",
    b";",
    b"\t",
    b"|",
    b"\r",
    b"\n",
    b"\r\n",
    b"\n\n",
    b"\xEF\xBB\xBF",
    b"\xE9",
    b"\xC3\xA9",
    b"\x80",
    b"\xC3",
    b"\0",
    b" ",
    b"\",\"",
    b"=cmd|' /C calc'!A0",
    b"CVE-2024-3400",
    b"443/tcp",
    b"99999",
    b"10.0",
    b"critical",
    b"n/a",
    b"2024-02-30",
];

/// Header words, so that CSV-like bytes sometimes hold a header.
const WORDS: &[&str] =
    &["a", "Host", "Port", "Name", "Risk", "QID", "Title", "IP", "asset", "check_id", "title", "severity"];

/// A byte string shown escaped, so a failing input can be pasted into a regression test.
#[derive(Clone)]
pub struct Bytes(pub Vec<u8>);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}

fn csv_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries {
        let path = entry.expect("listing a seed folder").path();
        if path.is_dir() {
            csv_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "csv") {
            out.push(path);
        }
    }
}

/// Every corpus and fixture file, whole, in a stable order.
fn seed_files() -> &'static [Vec<u8>] {
    static FILES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    FILES.get_or_init(|| {
        let mut paths = Vec::new();
        csv_files(&corpus_dir(), &mut paths);
        csv_files(&fixtures_dir(), &mut paths);
        paths.sort();
        assert!(paths.len() >= 20, "too few seed files under {}", corpus_dir().display());
        paths.iter().map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).collect()
    })
}

/// The head of every seed file: its first [`SEED_LINES`] lines, at most [`SEED_BYTES`].
pub fn seeds() -> &'static [Vec<u8>] {
    static HEADS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    HEADS.get_or_init(|| {
        seed_files()
            .iter()
            .map(|bytes| {
                let end = bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').nth(SEED_LINES - 1);
                let end = end.map_or(bytes.len(), |(i, _)| i + 1).min(SEED_BYTES);
                bytes[..end].to_vec()
            })
            .collect()
    })
}

/// A real header of each format as the sniffer reads it from a seed file: names and delimiter.
pub fn headers() -> &'static [(Format, Vec<String>, u8)] {
    static HEADERS: OnceLock<Vec<(Format, Vec<String>, u8)>> = OnceLock::new();
    HEADERS.get_or_init(|| {
        let mut out: Vec<(Format, Vec<String>, u8)> = Vec::new();
        for bytes in seed_files() {
            let s: Sniffed = sniff_bytes(bytes, None).expect("every seed file sniffs");
            if !out.iter().any(|(f, h, _)| *f == s.format && *h == s.header) {
                out.push((s.format, s.header, s.delimiter));
            }
        }
        assert!(Format::ALL.iter().all(|f| out.iter().any(|(g, _, _)| g == f)), "a format has no seed header");
        out
    })
}

/// One edit: (kind, position, argument, byte); positions and arguments wrap around.
type Mutation = (u8, u32, u32, u8);

/// Applies `mutations` to `seed`: set a byte, insert a [`TOKENS`] entry, delete a span,
/// duplicate a span elsewhere, truncate, swap one delimiter for another everywhere, flip the
/// case of a span (header names), or insert a run of one byte (to cross line caps).
pub fn mutate(seed: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];
    let mut v = seed.to_vec();
    for &(kind, at, arg, byte) in mutations {
        let at = at as usize % (v.len() + 1);
        let arg = arg as usize;
        match kind % 8 {
            0 => {
                if let Some(b) = v.get_mut(at) {
                    *b = byte;
                }
            }
            1 => {
                v.splice(at..at, TOKENS[arg % TOKENS.len()].iter().copied());
            }
            2 => {
                let end = (at + 1 + arg % 64).min(v.len());
                v.drain(at..end);
            }
            3 => {
                let end = (at + 1 + arg % 256).min(v.len());
                let piece = v[at..end].to_vec();
                let to = (arg / 256) % (v.len() + 1);
                v.splice(to..to, piece);
            }
            4 => v.truncate(at),
            5 => {
                let (from, to) = (DELIMITERS[arg % 4], DELIMITERS[usize::from(byte) % 4]);
                v.iter_mut().filter(|b| **b == from).for_each(|b| *b = to);
            }
            6 => {
                let end = (at + 1 + arg % 32).min(v.len());
                v[at..end].iter_mut().filter(|b| b.is_ascii_alphabetic()).for_each(|b| *b ^= 0x20);
            }
            _ => {
                v.splice(at..at, std::iter::repeat_n(byte, arg % 700));
            }
        }
    }
    v
}

/// Any bytes, up to 2 KiB.
pub fn arbitrary_bytes() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..2048).prop_map(Bytes)
}

/// Bytes mostly drawn from [`TOKENS`] and short words, up to about 2 KiB.
pub fn csv_like_bytes() -> impl Strategy<Value = Bytes> {
    let piece = prop_oneof![
        3 => select(TOKENS).prop_map(<[u8]>::to_vec),
        2 => select(WORDS).prop_map(|w| w.as_bytes().to_vec()),
        1 => any::<u8>().prop_map(|b| vec![b]),
    ];
    prop::collection::vec(piece, 0..256).prop_map(|pieces| Bytes(pieces.concat()))
}

/// A seed head with up to eight mutations.
pub fn mutated_seed() -> impl Strategy<Value = Bytes> {
    let mutation = (any::<u8>(), any::<u32>(), any::<u32>(), any::<u8>());
    (0..seeds().len(), prop::collection::vec(mutation, 0..8))
        .prop_map(|(i, mutations)| Bytes(mutate(&seeds()[i], &mutations)))
}

/// The mix every byte-level target draws from: mostly near-valid CSV.
pub fn any_input() -> impl Strategy<Value = Bytes> {
    prop_oneof![1 => arbitrary_bytes(), 1 => csv_like_bytes(), 4 => mutated_seed()]
}

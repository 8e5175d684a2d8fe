//! Text encodings: UTF-8 (with or without BOM), Windows-1252, and UTF-16 with a BOM (what
//! Excel saves as "Unicode text"); how a prefix is classified as one of them, as binary, or
//! as broken; and the decoders that turn each into UTF-8.

use std::fmt;

/// The character encoding of an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TextEncoding {
    /// UTF-8 (a BOM, if any, is reported in [`crate::Sniffed::bom`]).
    Utf8,
    /// Windows-1252 (a superset of Latin-1 in 0xA0–0xFF), transcoded to UTF-8 on read.
    Windows1252,
    /// UTF-16 little-endian, recognised by its BOM (`FF FE`), transcoded to UTF-8 on read.
    Utf16Le,
    /// UTF-16 big-endian, recognised by its BOM (`FE FF`), transcoded to UTF-8 on read.
    Utf16Be,
}

impl TextEncoding {
    /// Whether this is one of the UTF-16 encodings.
    pub fn is_utf16(self) -> bool {
        matches!(self, TextEncoding::Utf16Le | TextEncoding::Utf16Be)
    }

    /// Length of this encoding's byte order mark.
    pub(crate) fn bom_len(self) -> usize {
        if self.is_utf16() { 2 } else { BOM.len() }
    }
}

/// `UTF-8`, `Windows-1252`, `UTF-16LE`, `UTF-16BE`.
impl fmt::Display for TextEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TextEncoding::Utf8 => "UTF-8",
            TextEncoding::Windows1252 => "Windows-1252",
            TextEncoding::Utf16Le => "UTF-16LE",
            TextEncoding::Utf16Be => "UTF-16BE",
        })
    }
}

/// The UTF-8 byte order mark.
pub(crate) const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The encoding a byte order mark at the start of `bytes` announces, if any.
pub(crate) fn bom_encoding(bytes: &[u8]) -> Option<TextEncoding> {
    if bytes.starts_with(BOM) {
        Some(TextEncoding::Utf8)
    } else if bytes.starts_with(b"\xFF\xFE") {
        Some(TextEncoding::Utf16Le)
    } else if bytes.starts_with(b"\xFE\xFF") {
        Some(TextEncoding::Utf16Be)
    } else {
        None
    }
}

/// Streams UTF-16 into UTF-8, chunk by chunk: a byte or a surrogate cut by a chunk's end is
/// held for the next one. Decoding never fails: an unpaired surrogate (or an odd last byte)
/// becomes U+FFFD, as the WHATWG decoder does, so a bad cell is reported by its row.
#[derive(Debug)]
pub(crate) struct Utf16Decoder {
    big_endian: bool,
    odd_byte: Option<u8>,
    high: Option<u16>,
}

impl Utf16Decoder {
    pub(crate) fn new(big_endian: bool) -> Utf16Decoder {
        Utf16Decoder { big_endian, odd_byte: None, high: None }
    }

    /// Appends the UTF-8 form of `bytes` (continuing the previous chunk) to `out`.
    pub(crate) fn decode(&mut self, mut bytes: &[u8], out: &mut Vec<u8>) {
        if let Some(first) = self.odd_byte.take() {
            let Some((&second, rest)) = bytes.split_first() else {
                self.odd_byte = Some(first);
                return;
            };
            self.unit([first, second], out);
            bytes = rest;
        }
        let mut pairs = bytes.chunks_exact(2);
        for pair in &mut pairs {
            self.unit([pair[0], pair[1]], out);
        }
        self.odd_byte = pairs.remainder().first().copied();
    }

    /// At the end of the stream: whatever is held is a broken character.
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) {
        if self.odd_byte.take().is_some() | self.high.take().is_some() {
            push_char(char::REPLACEMENT_CHARACTER, out);
        }
    }

    fn unit(&mut self, pair: [u8; 2], out: &mut Vec<u8>) {
        let u = if self.big_endian { u16::from_be_bytes(pair) } else { u16::from_le_bytes(pair) };
        match u {
            0xD800..=0xDBFF => {
                if self.high.replace(u).is_some() {
                    push_char(char::REPLACEMENT_CHARACTER, out);
                }
            }
            0xDC00..=0xDFFF => {
                let c = self.high.take().map(|h| 0x10000 + ((u32::from(h) - 0xD800) << 10) + (u32::from(u) - 0xDC00));
                push_char(c.and_then(char::from_u32).unwrap_or(char::REPLACEMENT_CHARACTER), out);
            }
            _ => {
                if self.high.take().is_some() {
                    push_char(char::REPLACEMENT_CHARACTER, out);
                }
                match u8::try_from(u) {
                    Ok(b) if b.is_ascii() => out.push(b),
                    _ => push_char(char::from_u32(u32::from(u)).unwrap_or(char::REPLACEMENT_CHARACTER), out),
                }
            }
        }
    }
}

fn push_char(c: char, out: &mut Vec<u8>) {
    out.extend_from_slice(c.encode_utf8(&mut [0u8; 4]).as_bytes());
}

/// Decodes a UTF-16 prefix (BOM removed) strictly, for the sniffer. `complete` says whether it
/// is the whole file: if not, a byte or a high surrogate cut by its end is dropped. `Err` holds
/// the offset (in `bytes`) of the first unit that is not text: an unpaired surrogate, a NUL
/// (binary data, not a CSV), or a last odd byte.
pub(crate) fn decode_utf16_prefix(bytes: &[u8], big_endian: bool, complete: bool) -> Result<String, Utf16Broken> {
    let unit = |p: &[u8]| if big_endian { u16::from_be_bytes([p[0], p[1]]) } else { u16::from_le_bytes([p[0], p[1]]) };
    let mut units: Vec<u16> = bytes.chunks_exact(2).map(unit).collect();
    if !complete && units.last().is_some_and(|u| (0xD800..=0xDBFF).contains(u)) {
        units.pop();
    } else if complete && bytes.len() % 2 == 1 {
        return Err(Utf16Broken::Invalid(bytes.len() - 1));
    }
    let mut text = String::with_capacity(units.len());
    let mut at = 0;
    for c in char::decode_utf16(units.iter().copied()) {
        match c {
            Ok('\0') => return Err(Utf16Broken::Nul(at * 2)),
            Ok(c) => {
                at += c.len_utf16();
                text.push(c);
            }
            Err(_) => return Err(Utf16Broken::Invalid(at * 2)),
        }
    }
    Ok(text)
}

/// Why a UTF-16 prefix is not text; the offset of the first bad unit.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Utf16Broken {
    /// A NUL character: binary data.
    Nul(usize),
    /// An unpaired surrogate or a lone last byte.
    Invalid(usize),
}

/// Windows-1252 code points for bytes 0x80–0x9F. The five bytes Windows-1252 leaves
/// undefined (0x81, 0x8D, 0x8F, 0x90, 0x9D) map to the C1 control with the same number,
/// as the WHATWG Encoding Standard does, so decoding never fails and never loses a byte.
const CP1252_HIGH: [char; 32] = [
    '\u{20AC}', '\u{0081}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}', '\u{2021}', '\u{02C6}',
    '\u{2030}', '\u{0160}', '\u{2039}', '\u{0152}', '\u{008D}', '\u{017D}', '\u{008F}', '\u{0090}', '\u{2018}',
    '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}', '\u{2014}', '\u{02DC}', '\u{2122}', '\u{0161}',
    '\u{203A}', '\u{0153}', '\u{009D}', '\u{017E}', '\u{0178}',
];

/// The character a Windows-1252 byte stands for.
pub(crate) fn cp1252_char(b: u8) -> char {
    match b {
        0x80..=0x9F => CP1252_HIGH[usize::from(b - 0x80)],
        _ => char::from(b),
    }
}

/// Appends the UTF-8 form of Windows-1252 `bytes` to `out`.
pub(crate) fn cp1252_to_utf8(bytes: &[u8], out: &mut Vec<u8>) {
    let mut buf = [0u8; 4];
    for &b in bytes {
        if b.is_ascii() {
            out.push(b);
        } else {
            out.extend_from_slice(cp1252_char(b).encode_utf8(&mut buf).as_bytes());
        }
    }
}

/// What the bytes of a prefix (BOM already removed) turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Classified {
    /// Valid UTF-8; the text (a multi-byte sequence cut at the end of an incomplete prefix is
    /// dropped).
    Utf8(String),
    /// Not UTF-8 but plausible Windows-1252; the decoded text.
    Windows1252(String),
    /// Contains NUL bytes or many control bytes; offset of the first offending byte.
    Binary(usize),
    /// Neither valid UTF-8 nor plausible Windows-1252; offset of the first invalid byte.
    Invalid(usize),
}

/// True for C0 control bytes other than tab, LF, CR and form feed.
fn is_suspicious_control(b: u8) -> bool {
    (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0C)) || b == 0x7F
}

/// Classifies a prefix. `complete` says whether it is the whole file.
pub(crate) fn classify(bytes: &[u8], complete: bool, had_bom: bool) -> Classified {
    if let Some(pos) = bytes.iter().position(|&b| b == 0) {
        return Classified::Binary(pos);
    }
    let controls: Vec<usize> =
        bytes.iter().enumerate().filter(|(_, b)| is_suspicious_control(**b)).map(|(i, _)| i).take(64).collect();
    // A stray control byte or two happens in text exports; a run of them means binary.
    if controls.len() >= 8 && controls.len() * 200 >= bytes.len().min(64 * 200) {
        return Classified::Binary(controls[0]);
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => Classified::Utf8(s.to_owned()),
        Err(e) if e.error_len().is_none() && !complete => {
            // A multi-byte sequence cut by the end of the prefix, not an error.
            let valid = &bytes[..e.valid_up_to()];
            Classified::Utf8(String::from_utf8_lossy(valid).into_owned())
        }
        Err(e) => {
            // A BOM or any valid multi-byte sequence says "UTF-8", so a bad byte is an error;
            // so are control bytes, which Windows-1252 text does not contain either.
            if had_bom || !controls.is_empty() || has_multibyte_utf8(bytes) {
                Classified::Invalid(e.valid_up_to())
            } else {
                let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 8);
                cp1252_to_utf8(bytes, &mut out);
                Classified::Windows1252(String::from_utf8_lossy(&out).into_owned())
            }
        }
    }
}

/// Whether `bytes` contains at least one well-formed multi-byte UTF-8 sequence.
fn has_multibyte_utf8(bytes: &[u8]) -> bool {
    let mut i = 0;
    while i < bytes.len() {
        let len = match bytes[i] {
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => 0,
        };
        if len > 0
            && let Some(seq) = bytes.get(i..i + len)
            && std::str::from_utf8(seq).is_ok()
        {
            return true;
        }
        i += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_1252_decodes_latin1_and_the_c1_block() {
        let mut out = Vec::new();
        cp1252_to_utf8(b"caf\xE9 \xFCber \x80 \x93q\x94 \x81", &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "café über € \u{201C}q\u{201D} \u{81}");
    }

    fn utf16(text: &str, big_endian: bool) -> Vec<u8> {
        let bytes = |u: u16| if big_endian { u.to_be_bytes() } else { u.to_le_bytes() };
        text.encode_utf16().flat_map(bytes).collect()
    }

    #[test]
    fn utf16_decodes_the_same_whatever_the_chunking() {
        let text = "host\tcafé €\t😀\r\n";
        for big_endian in [false, true] {
            let bytes = utf16(text, big_endian);
            for chunk in 1..=bytes.len() {
                let mut decoder = Utf16Decoder::new(big_endian);
                let mut out = Vec::new();
                bytes.chunks(chunk).for_each(|c| decoder.decode(c, &mut out));
                decoder.finish(&mut out);
                assert_eq!(String::from_utf8(out).unwrap(), text, "chunks of {chunk}, big endian {big_endian}");
            }
            assert_eq!(decode_utf16_prefix(&bytes, big_endian, true).unwrap(), text);
            // A cut emoji at the end of a partial prefix is left for later.
            let cut = &bytes[..bytes.len() - 6];
            assert_eq!(decode_utf16_prefix(cut, big_endian, false).unwrap(), "host\tcafé €\t");
        }
    }

    #[test]
    fn broken_utf16_is_replaced_when_streamed_and_refused_when_sniffed() {
        let lone_high = [b'a', 0, 0x00, 0xD8, b'b', 0];
        let mut decoder = Utf16Decoder::new(false);
        let mut out = Vec::new();
        decoder.decode(&lone_high, &mut out);
        decoder.decode(b"c", &mut out);
        decoder.finish(&mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "a\u{FFFD}b\u{FFFD}");
        assert_eq!(decode_utf16_prefix(&lone_high, false, true), Err(Utf16Broken::Invalid(2)));
        assert_eq!(decode_utf16_prefix(&[b'a', 0, 0, 0], false, true), Err(Utf16Broken::Nul(2)));
        assert_eq!(decode_utf16_prefix(&[b'a', 0, b'b'], false, true), Err(Utf16Broken::Invalid(2)));
        assert_eq!(bom_encoding(b"\xFF\xFEa\0"), Some(TextEncoding::Utf16Le));
        assert_eq!(bom_encoding(b"\xFE\xFF\0a"), Some(TextEncoding::Utf16Be));
        assert_eq!(bom_encoding(b"a,b"), None);
    }

    #[test]
    fn classification() {
        assert_eq!(classify("héllo".as_bytes(), true, false), Classified::Utf8("héllo".into()));
        // A cut multi-byte sequence at the end of an incomplete prefix is ignored...
        assert_eq!(classify(b"ab\xC3", false, false), Classified::Utf8("ab".into()));
        // ...but not at the end of the whole file, where it reads as Windows-1252 Ã.
        assert_eq!(classify(b"ab\xC3", true, false), Classified::Windows1252("abÃ".into()));
        assert_eq!(classify(b"\xC3\xA9,\xE9", true, false), Classified::Invalid(3));
        assert_eq!(classify(b"a\xE9", true, true), Classified::Invalid(1));
        assert_eq!(classify(b"a\x01\xE9", true, false), Classified::Invalid(2));
        assert_eq!(classify(b"\x89PNG\r\n\x1a\n\0\0", true, false), Classified::Binary(8));
        let noisy: Vec<u8> = (0..100u8).map(|i| if i % 3 == 0 { 1 } else { b'a' }).collect();
        assert_eq!(classify(&noisy, true, false), Classified::Binary(0));
    }
}

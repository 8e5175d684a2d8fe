//! Text encodings: UTF-8 (with or without BOM) and Windows-1252, and how a prefix is
//! classified as one of them, as binary, or as broken.

/// The character encoding of an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TextEncoding {
    /// UTF-8 (a BOM, if any, is reported in [`crate::Sniffed::bom`]).
    Utf8,
    /// Windows-1252 (a superset of Latin-1 in 0xA0–0xFF), transcoded to UTF-8 on read.
    Windows1252,
}

/// The UTF-8 byte order mark.
pub(crate) const BOM: &[u8] = b"\xEF\xBB\xBF";

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

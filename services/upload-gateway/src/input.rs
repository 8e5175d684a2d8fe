//! Bounds on everything a client sends besides the file's bytes: the filename, the small form
//! fields, and how much of a bad value an error message repeats.
//!
//! Every bound is checked while the value arrives, before it is buffered whole, stored or echoed:
//! a 200 MB `scanDate` is refused after its first kilobyte, and a megabyte-long filename never
//! reaches the object's metadata (NATS refuses metadata over its max payload only after every
//! chunk of the file has been written).

use std::time::Duration;

use axum::extract::multipart::Field;

use crate::error::{ApiError, Result};

/// Longest filename kept, in characters (what common file systems allow in one path component).
pub const MAX_FILENAME_CHARS: usize = 255;
/// Largest value of a form field other than the file (`format`, `scanDate`, `sessionId`).
pub const MAX_FIELD_BYTES: usize = 256;
/// How much of a bad value an error message quotes.
pub const QUOTE_CHARS: usize = 40;

/// A bad value as error messages and logs show it: debug-quoted, cut to [`QUOTE_CHARS`]
/// characters with an ellipsis when longer.
pub fn quote(raw: &str) -> String {
    match raw.char_indices().nth(QUOTE_CHARS) {
        Some((cut, _)) => format!("{:?}…", &raw[..cut]),
        None => format!("{raw:?}"),
    }
}

/// A library's error message (which may embed what the client sent), cut to 200 characters.
pub fn brief(text: &str) -> String {
    cut(text, 200)
}

/// `text` cut to `max_chars` characters, with an ellipsis when it was longer.
pub fn cut(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// The filename as stored and shown: its last path component, without control characters,
/// trimmed; `upload.csv` when nothing is left. Longer than [`MAX_FILENAME_CHARS`] is refused.
pub fn normalise_filename(raw: Option<&str>) -> Result<String> {
    let Some(raw) = raw else { return Ok("upload.csv".into()) };
    let base = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = base.chars().filter(|c| !c.is_control() && !is_invisible_format(*c)).collect();
    let clean = clean.trim();
    if clean.chars().count() > MAX_FILENAME_CHARS {
        return Err(ApiError::BadRequest {
            message: format!(
                "the filename {} is longer than {MAX_FILENAME_CHARS} characters; rename the file",
                quote(clean)
            ),
        });
    }
    Ok(if clean.is_empty() || clean == "." || clean == ".." { "upload.csv".into() } else { clean.to_owned() })
}

/// Bidirectional overrides and zero-width characters, which make a name display as another.
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// The refusal of a request whose client stopped sending for `idle`.
pub fn stalled(idle: Duration) -> ApiError {
    ApiError::BadRequest { message: format!("no data for {} s; send the request again", idle.as_secs()) }
}

/// Reads a small text field, refusing it as soon as more than [`MAX_FIELD_BYTES`] arrived, or
/// when nothing arrives for `idle`.
pub async fn small_text(mut field: Field<'_>, idle: Duration) -> Result<String> {
    let name = field.name().unwrap_or_default().to_owned();
    let mut bytes = Vec::new();
    loop {
        let chunk = tokio::time::timeout(idle, field.chunk()).await.map_err(|_| stalled(idle))?;
        let chunk = chunk.map_err(|e| ApiError::BadRequest {
            message: format!(
                "field {} could not be read ({}); send the request again",
                quote(&name),
                brief(&e.to_string())
            ),
        })?;
        let Some(chunk) = chunk else { break };
        if bytes.len() + chunk.len() > MAX_FIELD_BYTES {
            return Err(ApiError::BadRequest {
                message: format!("field {name} is longer than {MAX_FIELD_BYTES} bytes; expected a short value"),
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes).map_err(|_| ApiError::BadRequest { message: format!("field {name} is not UTF-8 text") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_cut_to_a_short_prefix() {
        assert_eq!(quote("abc"), "\"abc\"");
        let long = "x".repeat(10_000);
        let quoted = quote(&long);
        assert!(quoted.len() < 50, "{quoted}");
        assert!(quoted.ends_with('…'));
        assert_eq!(quote(&"é".repeat(100)).chars().count(), QUOTE_CHARS + 3);
    }

    #[test]
    fn filenames_keep_their_last_component_without_controls() {
        assert_eq!(normalise_filename(None).unwrap(), "upload.csv");
        assert_eq!(normalise_filename(Some("../../etc/passwd")).unwrap(), "passwd");
        assert_eq!(normalise_filename(Some("C:\\scans\\week 1.csv")).unwrap(), "week 1.csv");
        assert_eq!(normalise_filename(Some(" a\u{0}b\r\n\u{202E}vsc.exe ")).unwrap(), "abvsc.exe");
        assert_eq!(normalise_filename(Some("..")).unwrap(), "upload.csv");
        assert_eq!(normalise_filename(Some(&"é".repeat(MAX_FILENAME_CHARS))).unwrap().chars().count(), 255);
    }

    #[test]
    fn a_filename_past_the_limit_is_refused_quoting_a_prefix_only() {
        let err = normalise_filename(Some(&"n".repeat(100_000))).unwrap_err();
        assert!(matches!(err, ApiError::BadRequest { .. }));
        assert!(err.to_string().len() < 200, "{err}");
    }
}

//! The browser page and its `socket.io-client`, embedded in the binary at build time from `web/`
//! (so the binary serves them from any working directory), or read from `HEXFLOW_WEB_DIR` when
//! a developer wants edits to show without a rebuild.

use std::path::Path;

use axum::{
    Router,
    http::{HeaderMap, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};

/// The page's Content-Security-Policy: its scripts and styles are files of its own origin (it has
/// no inline script or style), it talks only to its origin (the API and Socket.IO, `ws:`/`wss:`
/// included under `'self'`), and no other site may frame it.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// Middleware: the security headers, on every response of the public port.
pub async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, header::HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, header::HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, header::HeaderValue::from_static("no-referrer"));
    response
}

/// The files of `web/`, in the binary.
#[derive(rust_embed::Embed)]
#[folder = "../../web"]
struct Embedded;

/// The page's routes: the embedded files, or the files of `dir` when one is given.
pub fn router(dir: Option<&Path>) -> Router {
    match dir {
        Some(dir) => {
            if dir.join("index.html").is_file() {
                tracing::info!(dir = %dir.display(), "serving the page from HEXFLOW_WEB_DIR instead of the embedded copy");
            } else {
                tracing::warn!(dir = %dir.display(), "HEXFLOW_WEB_DIR has no index.html: the page will answer 404");
            }
            Router::new().fallback_service(tower_http::services::ServeDir::new(dir))
        }
        None => Router::new().fallback(embedded),
    }
}

/// Serves one embedded file, with an ETag so browsers revalidate instead of downloading again.
async fn embedded(uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() || path.ends_with('/') { format!("{path}index.html") } else { path.to_owned() };
    let Some(file) = Embedded::get(&path) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()[..12]));
    if headers.get(header::IF_NONE_MATCH).is_some_and(|seen| seen.as_bytes() == etag.as_bytes()) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    (
        [
            (header::CONTENT_TYPE, file.metadata.mimetype().to_owned()),
            (header::ETAG, etag),
            (header::CACHE_CONTROL, "no-cache".to_owned()),
        ],
        file.data,
    )
        .into_response()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::Embedded;

    #[test]
    fn the_page_has_no_inline_script_or_style_for_its_policy_to_block() {
        let page = String::from_utf8(Embedded::get("index.html").unwrap().data.into_owned()).unwrap();
        for tag in page.split("<script").skip(1) {
            assert!(tag.split('>').next().unwrap().contains("src="), "inline script in index.html: <script{tag}");
        }
        assert!(!page.contains("<style") && !page.contains(" style="), "inline style in index.html");
        assert!(!page.contains(" onclick=") && !page.contains(" onload="), "inline handler in index.html");
    }

    #[test]
    fn the_page_and_its_socket_io_client_are_embedded() {
        assert!(Embedded::get("index.html").is_some());
        assert!(Embedded::get("js/main.js").is_some());
        assert!(Embedded::get("vendor/socket.io-client/socket.io.esm.min.js").is_some());
    }

    #[test]
    fn the_vendored_socket_io_client_is_the_installed_one() {
        let installed =
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../node_modules/socket.io-client/dist/socket.io.esm.min.js");
        let installed = std::fs::read(installed).expect("npm ci installs socket.io-client (scripts/setup.sh)");
        let vendored = Embedded::get("vendor/socket.io-client/socket.io.esm.min.js").expect("embedded");
        assert!(
            installed == vendored.data.as_ref(),
            "web/vendor/socket.io-client differs from node_modules: copy node_modules/socket.io-client/dist/socket.io.esm.min.js there"
        );
    }
}

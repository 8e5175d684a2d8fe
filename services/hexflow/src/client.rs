//! `hexflow import FILE`: upload a scan export and follow its import in the terminal.

use std::{
    io::Write,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::Value;
use shared::{ProgressEvent, Status};
use tokio_util::io::ReaderStream;

/// Arguments of `hexflow import`.
#[derive(clap::Args, Debug, Clone)]
pub struct ImportArgs {
    /// The scan export to import.
    pub file: PathBuf,
    /// Format (default: detected from the header).
    #[arg(long)]
    pub format: Option<String>,
    /// Scan date, YYYY-MM-DD or RFC 3339 (default: now).
    #[arg(long = "scan-date")]
    pub scan_date: Option<String>,
    /// The hexflow server.
    #[arg(long, env = "HEXFLOW_SERVER", default_value = "http://127.0.0.1:8989")]
    pub server: String,
    /// Bearer token, when the server requires one.
    #[arg(long, env = "HEXFLOW_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificate(s) (PEM) to trust besides the system's, for a server behind a private CA.
    #[arg(long = "ca-cert", env = "HEXFLOW_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
}

/// Bytes read from the file per body chunk (the default 4 KiB costs a write per 4 KiB).
const UPLOAD_READ_BYTES: usize = 256 * 1024;

/// Uploads the file, draws progress until the import ends, prints the summary. Returns the
/// process exit code: 0 completed, 1 error, 2 cancelled.
pub async fn run(args: ImportArgs) -> anyhow::Result<i32> {
    let client = http_client(args.ca_cert.as_deref())?;
    let server = args.server.trim_end_matches('/').to_owned();
    let file = tokio::fs::File::open(&args.file).await.with_context(|| format!("opening {}", args.file.display()))?;
    let size = file.metadata().await?.len();
    let name = args.file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "upload.csv".into());
    let part = reqwest::multipart::Part::stream_with_length(
        reqwest::Body::wrap_stream(ReaderStream::with_capacity(file, UPLOAD_READ_BYTES)),
        size,
    )
    .file_name(name.clone())
    .mime_str("text/csv")?;
    let mut form = reqwest::multipart::Form::new().part("file", part);
    if let Some(f) = &args.format {
        form = form.text("format", f.clone());
    }
    if let Some(d) = &args.scan_date {
        form = form.text("scanDate", d.clone());
    }
    eprintln!("Uploading {name} ({})…", human_bytes(size));
    let response = with_token(client.post(format!("{server}/api/imports")), &args.token)
        .multipart(form)
        .send()
        .await
        .map_err(|err| connect_error(err, &server))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!(
            "upload refused ({status}): {} [{}]",
            body["error"]["message"].as_str().unwrap_or("no details"),
            body["error"]["code"].as_str().unwrap_or("?")
        );
    }
    let id = body["sessionId"].as_str().context("the server answered without a sessionId")?.to_owned();
    eprintln!("Queued as {id} (format {})", body["format"].as_str().unwrap_or("?"));

    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let started = Instant::now();
    let mut asked = false;
    loop {
        let event: ProgressEvent = with_token(client.get(format!("{server}/api/imports/{id}")), &args.token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        draw(&event, started.elapsed());
        if event.is_terminal() {
            eprintln!();
            return Ok(report(&event));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = &mut ctrl_c, if !asked => {
                asked = true;
                eprint!("\nCancel import {id}? [y/N] ");
                let answer = tokio::task::spawn_blocking(|| { let mut s = String::new(); std::io::stdin().read_line(&mut s).map(|_| s) }).await??;
                if answer.trim().eq_ignore_ascii_case("y") {
                    with_token(client.post(format!("{server}/api/imports/{id}/cancel")), &args.token).send().await?;
                    eprintln!("Cancel requested; waiting for the worker to stop…");
                } else {
                    eprintln!("Still watching (the import goes on even if you quit).");
                }
            }
        }
    }
}

/// The HTTP client: the system trust store (and `SSL_CERT_FILE`), plus the certificates of
/// `ca_cert` when given.
fn http_client(ca_cert: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder();
    if let Some(path) = ca_cert {
        for cert in read_ca_certs(path)? {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().with_context(|| match ca_cert {
        Some(path) => format!("setting up HTTPS with the CA certificates of {}", path.display()),
        None => "setting up the HTTP client".to_owned(),
    })
}

/// Every certificate of a PEM file (a CA bundle may hold several).
fn read_ca_certs(path: &Path) -> anyhow::Result<Vec<reqwest::Certificate>> {
    let pem = std::fs::read(path).with_context(|| format!("reading the CA certificate file {}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .with_context(|| format!("{}: a certificate in it is not valid PEM", path.display()))?;
    if certs.is_empty() {
        bail!("{}: no PEM certificate in it (expected -----BEGIN CERTIFICATE----- blocks)", path.display());
    }
    Ok(certs)
}

/// Says what failed on the first request; a TLS failure names the server and the way out.
fn connect_error(err: reqwest::Error, server: &str) -> anyhow::Error {
    if server.starts_with("https://") && is_tls_failure(&err) {
        let cause = std::iter::successors(std::error::Error::source(&err), |e| e.source())
            .last()
            .map(ToString::to_string)
            .unwrap_or_default();
        return anyhow::anyhow!(
            "TLS connection to {server} failed: {cause}\n\
             If the server's certificate comes from a private CA, pass that CA with --ca-cert FILE \
             (or HEXFLOW_CA_CERT)"
        );
    }
    anyhow::Error::new(err).context(format!("connecting to {server}"))
}

/// rustls' errors are not reachable through reqwest's types, so their text decides.
fn is_tls_failure(err: &reqwest::Error) -> bool {
    err.is_connect()
        && std::iter::successors(std::error::Error::source(err), |e| e.source()).any(|e| {
            let text = e.to_string().to_ascii_lowercase();
            ["certificate", "tls", "handshake", "alert"].iter().any(|word| text.contains(word))
        })
}

fn with_token(request: reqwest::RequestBuilder, token: &Option<String>) -> reqwest::RequestBuilder {
    match token {
        Some(t) => request.bearer_auth(t),
        None => request,
    }
}

fn draw(e: &ProgressEvent, elapsed: Duration) {
    const WIDTH: usize = 30;
    let filled = ((e.progress / 100.0) * WIDTH as f64).round() as usize;
    let bar: String = "█".repeat(filled.min(WIDTH)) + &"░".repeat(WIDTH - filled.min(WIDTH));
    let eta = e.eta_seconds.map(|s| format_eta(s.round() as u64)).unwrap_or_else(|| "–".into());
    eprint!(
        "\r\x1b[2K{bar} {:>5.1}% {:<10} {:>9} rows {:>8.0} rows/s ETA {eta:<8} {:>5.1}s",
        e.progress,
        e.phase.as_str(),
        e.processed_rows,
        e.rows_per_second,
        elapsed.as_secs_f64()
    );
    let _ = std::io::stderr().flush();
}

/// `45s`, `1m 30s`, `61m 5s`.
pub fn format_eta(secs: u64) -> String {
    if secs < 60 { format!("{secs}s") } else { format!("{}m {}s", secs / 60, secs % 60) }
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

fn report(e: &ProgressEvent) -> i32 {
    match e.status {
        Status::Completed => {
            if let Some(s) = &e.summary {
                println!(
                    "completed: {} rows in {:.1}s ({:.0} rows/s)\n  new {}  updated {}  unchanged {}  resolved {}  reopened {}\n  duplicates merged {}  invalid rows skipped {}",
                    s.rows,
                    s.duration_ms as f64 / 1000.0,
                    s.rows_per_second,
                    s.new,
                    s.updated,
                    s.unchanged,
                    s.resolved,
                    s.reopened,
                    s.skipped_duplicates,
                    s.validation_errors
                );
            }
            0
        }
        Status::Cancelled => {
            println!("cancelled: {}", e.message);
            2
        }
        _ => {
            let err = e.error.clone().unwrap_or_default();
            println!("error [{}]: {}", err.code, err.message);
            for s in &err.recovery_suggestions {
                println!("  - {s}");
            }
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two self-signed CA certificates (P-256, valid until 2126), as a CA bundle holds them.
    const BUNDLE: &str = "\
# a comment, as bundles have
-----BEGIN CERTIFICATE-----
MIIBjjCCATWgAwIBAgIUBP+lGFmDuhd8FGLVyK+G7UMdmeQwCgYIKoZIzj0EAwIw
HDEaMBgGA1UEAwwRaGV4ZmxvdyB0ZXN0IENBIGEwIBcNMjYxMTMwMDAwNDU1WhgP
MjEyNjExMDYwMDA0NTVaMBwxGjAYBgNVBAMMEWhleGZsb3cgdGVzdCBDQSBhMFkw
EwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEpxwpM8CqjYCRyIrS0fCOb9E4zqRdzLMj
Oc64c6doaZP6mPimLM+fMkNXXvwZRc9uqi6BBO1LJAYWQOQu/PrqC6NTMFEwHQYD
VR0OBBYEFLt4ttUH0NX5PLLdKc9OpkNVDilZMB8GA1UdIwQYMBaAFLt4ttUH0NX5
PLLdKc9OpkNVDilZMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDRwAwRAIg
XgZslXMIA6nhyvKKOFf6lmQPgSctjRE3Ublmws3L5bsCICf2vAj/8F6kK+iQ8kxR
8DtnEpSOGooi00rcQg1ntEh2
-----END CERTIFICATE-----
-----BEGIN CERTIFICATE-----
MIIBjjCCATWgAwIBAgIUO8Sdi5ZraT9hVVspTSKhfT+e848wCgYIKoZIzj0EAwIw
HDEaMBgGA1UEAwwRaGV4ZmxvdyB0ZXN0IENBIGIwIBcNMjYxMTMwMDAwNDU1WhgP
MjEyNjExMDYwMDA0NTVaMBwxGjAYBgNVBAMMEWhleGZsb3cgdGVzdCBDQSBiMFkw
EwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEBUS6LKefIZNgaWOsfzorr/uVyQNHwSeE
6JsLK2tctkPpwrrmyrKLYl6Vuvn2jK0cQDYbXjYlyZCM2GbPjDY3HKNTMFEwHQYD
VR0OBBYEFOfjOMBrbsVj1MS/a5pwYNzg1IwVMB8GA1UdIwQYMBaAFOfjOMBrbsVj
1MS/a5pwYNzg1IwVMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDRwAwRAIg
ETb7GFzCh71eNDEQHuI9vKY3tYKiwuQyZx2ZDVd8kwMCIB6Kb68Kivat7T8CH5QM
uix1q7gc/2l8FME5WjJrat8B
-----END CERTIFICATE-----
";

    /// `contents` in a file of its own, removed when the guard drops.
    struct TempFile(PathBuf);

    impl TempFile {
        fn with(contents: &str) -> TempFile {
            let path = std::env::temp_dir().join(format!("hexflow-ca-{}.pem", uuid::Uuid::new_v4().simple()));
            std::fs::write(&path, contents).unwrap();
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn eta_is_formatted_like_the_page() {
        assert_eq!(super::format_eta(45), "45s");
        assert_eq!(super::format_eta(90), "1m 30s");
        assert_eq!(super::format_eta(3665), "61m 5s");
    }

    #[test]
    fn every_certificate_of_a_ca_bundle_is_trusted() {
        let bundle = TempFile::with(BUNDLE);

        assert_eq!(read_ca_certs(&bundle.0).unwrap().len(), 2);
        http_client(Some(&bundle.0)).expect("a client trusting both");
    }

    #[test]
    fn a_missing_or_non_pem_ca_file_is_refused_naming_the_file() {
        let missing = std::env::temp_dir().join("hexflow-no-such-ca.pem");
        let key = TempFile::with("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n");
        let der = TempFile::with("0\u{82}\u{1}\u{8e}0\u{82}");

        for path in [&missing, &key.0, &der.0] {
            let refused = format!("{:#}", http_client(Some(path)).unwrap_err());
            assert!(refused.contains(&path.display().to_string()), "{refused}");
        }
        assert!(format!("{:#}", read_ca_certs(&key.0).unwrap_err()).contains("no PEM certificate"));
    }
}

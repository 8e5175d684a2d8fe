//! The client's HTTPS setup: the system trust store plus the CA certificates the user names,
//! and an error that says what to do when the server's certificate is not trusted.

use std::path::Path;

use anyhow::{Context, bail};

/// The HTTP client: the system trust store (and `SSL_CERT_FILE`), plus the certificates of
/// `ca_cert` when given.
pub(super) fn http_client(ca_cert: Option<&Path>) -> anyhow::Result<reqwest::Client> {
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
pub(super) fn connect_error(err: reqwest::Error, server: &str) -> anyhow::Error {
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

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

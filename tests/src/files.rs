//! Test inputs written on the fly: generic-format scans with chosen findings, and large
//! Nessus-style exports.

use std::{io::Write, path::Path};

/// Directory of the scanner corpus (`HEXFLOW_CORPUS_DIR`, default `../shared/corpus` from the
/// workspace root).
pub fn corpus_dir() -> std::path::PathBuf {
    std::env::var_os("HEXFLOW_CORPUS_DIR")
        .map(Into::into)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus"))
}

/// The project's own fixtures.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// One finding of a generic-format file.
#[derive(Debug, Clone)]
pub struct Row {
    /// Asset.
    pub asset: String,
    /// Check id.
    pub check_id: String,
    /// Port.
    pub port: u16,
    /// Severity word.
    pub severity: &'static str,
    /// Plugin output (changing it makes the finding "updated").
    pub output: String,
}

impl Row {
    /// A medium finding on tcp.
    pub fn new(asset: &str, check_id: &str, port: u16) -> Row {
        Row { asset: asset.into(), check_id: check_id.into(), port, severity: "medium", output: String::new() }
    }
}

/// Header of the generic hexflow format.
pub const GENERIC_HEADER: &str = "asset,check_id,title,severity,port,protocol,cves,cvss,description,solution,output";

/// A generic-format file with the given findings.
pub fn generic_csv(rows: &[Row]) -> Vec<u8> {
    let mut out = Vec::new();
    writeln!(out, "{GENERIC_HEADER}").unwrap();
    for r in rows {
        writeln!(
            out,
            "{},{},\"Check {} title\",{},{},tcp,CVE-2024-{:04},5.0,\"Description of {}\",Upgrade,\"{}\"",
            r.asset,
            r.check_id,
            r.check_id,
            r.severity,
            r.port,
            r.port,
            r.check_id,
            r.output.replace('"', "\"\"")
        )
        .unwrap();
    }
    out
}

/// A generic-format file of ten findings, eight of them on port 99999 (out of range): most of
/// its rows are invalid.
pub fn mostly_invalid_ports_csv() -> Vec<u8> {
    let rows: Vec<_> = (0..10).map(|i| Row::new(&format!("h{i}"), "C1", if i < 8 { 0 } else { 80 })).collect();
    String::from_utf8(generic_csv(&rows))
        .expect("generic_csv writes UTF-8")
        .replace(",0,tcp", ",99999,tcp")
        .into_bytes()
}

/// Writes a Nessus-style export of about `target_bytes` to `path`: many hosts and plugins,
/// multi-line descriptions and outputs, one row per CVE for some plugins. Returns the data rows.
pub fn write_nessus_file(path: &Path, target_bytes: u64) -> u64 {
    let file = std::fs::File::create(path).unwrap();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    writeln!(
        out,
        "Plugin ID,CVE,CVSS,Risk,Host,Protocol,Port,Name,Synopsis,Description,Solution,See Also,Plugin Output"
    )
    .unwrap();
    let filler =
        "The remote host is affected by a vulnerability, which may allow an attacker to \"\"escalate\"\" privileges.\n";
    let mut written = 0u64;
    let mut rows = 0u64;
    let mut i = 0u64;
    while written < target_bytes {
        let host = format!("10.{}.{}.{}", (i / 65536) % 256, (i / 256) % 256, i % 256 % 250 + 1);
        let plugin = 10000 + (i * 7919) % 3000;
        let cves = (plugin % 3) + 1;
        for c in 0..cves {
            let line = format!(
                "{plugin},CVE-20{:02}-{:05},{}.{},{},{host},tcp,{},\"Plugin {plugin} name, with comma\",\"Synopsis of {plugin}\",\"{}\",\"Apply the patch for {plugin}.\",https://example.com/{plugin},\"Output line one for {host}\nPort {} is open\n{}\"\n",
                10 + c,
                plugin % 99991,
                plugin % 10,
                plugin % 10,
                ["Low", "Medium", "High", "Critical"][(plugin % 4) as usize],
                (plugin % 1000) + 1,
                filler.repeat(3 + (plugin % 4) as usize),
                (plugin % 1000) + 1,
                "x".repeat(40 + (i % 200) as usize),
            );
            out.write_all(line.as_bytes()).unwrap();
            written += line.len() as u64;
            rows += 1;
        }
        i += 1;
    }
    out.flush().unwrap();
    rows
}

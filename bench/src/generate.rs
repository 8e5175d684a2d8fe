//! `bench generate`: a Nessus Professional CSV export of realistic shape, deterministic from a
//! seed. 10k hosts, 5k plugins with fixed texts, one row per CVE for plugins that list several
//! (same host, plugin and port), plugin output of varying length.

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::PathBuf,
    time::Instant,
};

use anyhow::Context;

use crate::text::{self, Rng};

/// The header of a Nessus Professional export, exactly as the scanner writes it.
pub const HEADER: [&str; 13] = [
    "Plugin ID",
    "CVE",
    "CVSS",
    "Risk",
    "Host",
    "Protocol",
    "Port",
    "Name",
    "Synopsis",
    "Description",
    "Solution",
    "See Also",
    "Plugin Output",
];

/// Hosts (distinct IPs) in the scan.
pub const HOSTS: u64 = 10_000;
/// Distinct plugins in the scan.
pub const PLUGINS: u64 = 5_000;
/// Step between the plugins of one host; prime and coprime to [`PLUGINS`], so a host never gets
/// the same plugin twice (each finding key host + plugin + port appears once).
const PLUGIN_STEP: u64 = 2_003;

/// Arguments of `bench generate`.
#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    /// Data rows to write (the header not counted).
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: u64,
    /// Where to write the CSV.
    #[arg(long, default_value = "/tmp/hexflow-bench/nessus_1m.csv")]
    pub out: PathBuf,
    /// Seed of the generator: the same seed gives the same file, byte for byte.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// One scanner plugin and its fixed texts.
struct Plugin {
    id: String,
    cves: Vec<String>,
    cvss: String,
    risk: &'static str,
    protocol: &'static str,
    port: &'static str,
    name: String,
    synopsis: String,
    description: String,
    solution: String,
    see_also: String,
}

/// What the generator wrote.
#[derive(Debug, Clone, Copy)]
pub struct Generated {
    /// Data rows.
    pub rows: u64,
    /// Distinct findings (host + plugin + port).
    pub findings: u64,
    /// File size in bytes.
    pub bytes: u64,
}

/// Writes the file and prints its size and the time taken.
pub fn run(args: &GenerateArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let generated = generate(args)?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "wrote {} ({} rows, {} findings, {:.1} MiB) in {secs:.1}s ({:.0} rows/s)",
        args.out.display(),
        generated.rows,
        generated.findings,
        generated.bytes as f64 / (1024.0 * 1024.0),
        generated.rows as f64 / secs
    );
    Ok(())
}

/// Streams `args.rows` data rows to `args.out`.
pub fn generate(args: &GenerateArgs) -> anyhow::Result<Generated> {
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file = File::create(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let mut rng = Rng::new(args.seed);
    let plugins: Vec<Plugin> = (0..PLUGINS).map(|i| plugin(i, &mut rng)).collect();
    let hosts: Vec<String> = (0..HOSTS).map(host_ip).collect();
    // Where each host starts in the plugin cycle, so hosts do not all share the same plugins.
    let offsets: Vec<u64> = (0..HOSTS).map(|_| rng.below(PLUGINS)).collect();

    let mut out = csv::Writer::from_writer(BufWriter::with_capacity(1 << 20, file));
    out.write_record(HEADER).context("writing the header")?;
    let (mut rows, mut findings) = (0u64, 0u64);
    while rows < args.rows {
        let host = (findings % HOSTS) as usize;
        let nth = findings / HOSTS;
        anyhow::ensure!(nth < PLUGINS, "more rows than {HOSTS} hosts × {PLUGINS} plugins can give");
        let plugin = &plugins[((offsets[host] + nth * PLUGIN_STEP) % PLUGINS) as usize];
        let output = text::plugin_output(&mut rng, &plugin.name, &hosts[host], plugin.port);
        let cves: &[String] = if plugin.cves.is_empty() { &[String::new()] } else { &plugin.cves };
        for cve in cves.iter().take((args.rows - rows) as usize) {
            out.write_record([
                plugin.id.as_str(),
                cve,
                &plugin.cvss,
                plugin.risk,
                &hosts[host],
                plugin.protocol,
                plugin.port,
                &plugin.name,
                &plugin.synopsis,
                &plugin.description,
                &plugin.solution,
                &plugin.see_also,
                &output,
            ])
            .context("writing a row")?;
            rows += 1;
        }
        findings += 1;
    }
    let mut inner = out.into_inner().map_err(|e| anyhow::anyhow!("flushing {}: {}", args.out.display(), e.error()))?;
    inner.flush().with_context(|| format!("flushing {}", args.out.display()))?;
    drop(inner);
    let bytes = std::fs::metadata(&args.out)?.len();
    Ok(Generated { rows, findings, bytes })
}

/// `10.a.b.c`, distinct for every host index below 62,500.
fn host_ip(i: u64) -> String {
    format!("10.{}.{}.{}", 16 + i / 62_500, (i / 250) % 250, i % 250 + 1)
}

/// Risk factors, weighted like a real scan (many informational plugins).
const RISKS: [(&str, u64, f64, f64); 5] = [
    ("None", 30, 0.0, 0.0),
    ("Low", 10, 1.0, 3.9),
    ("Medium", 32, 4.0, 6.9),
    ("High", 20, 7.0, 8.9),
    ("Critical", 8, 9.0, 10.0),
];

/// Ports and protocols plugins report on.
const PORTS: [(&str, &str); 14] = [
    ("tcp", "0"),
    ("tcp", "22"),
    ("tcp", "80"),
    ("tcp", "443"),
    ("tcp", "445"),
    ("tcp", "3389"),
    ("tcp", "8080"),
    ("tcp", "8443"),
    ("tcp", "3306"),
    ("tcp", "5432"),
    ("tcp", "25"),
    ("udp", "53"),
    ("udp", "161"),
    ("udp", "123"),
];

fn plugin(i: u64, rng: &mut Rng) -> Plugin {
    let mut pick = rng.below(100);
    let (risk, _, lo, hi) = *RISKS
        .iter()
        .find(|(_, weight, _, _)| {
            let hit = pick < *weight;
            pick = pick.saturating_sub(*weight);
            hit
        })
        .unwrap_or(&RISKS[0]);
    let informational = risk == "None";
    let cvss = if informational { String::new() } else { format!("{:.1}", lo + (hi - lo) * rng.unit()) };
    // 70 % of the plugins with a risk list CVEs; most list one or two, some up to five.
    let cve_count = match (informational, rng.below(100)) {
        (true, _) | (false, 70..) => 0,
        (false, 0..35) => 1,
        (false, 35..53) => 2,
        (false, 53..62) => 3,
        (false, 62..67) => 4,
        (false, _) => 5,
    };
    let year = 2014 + rng.below(12);
    let cves = (0..cve_count).map(|_| format!("CVE-{year}-{}", 1000 + rng.below(48_000))).collect();
    let (protocol, port) = PORTS[rng.below(PORTS.len() as u64) as usize];
    let texts = text::plugin_texts(rng, informational);
    Plugin {
        id: (10_000 + i * 37).to_string(),
        cves,
        cvss,
        risk,
        protocol,
        port,
        name: texts.name,
        synopsis: texts.synopsis,
        description: texts.description,
        solution: texts.solution,
        see_also: texts.see_also,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(rows: u64, seed: u64, name: &str) -> (Generated, Vec<u8>) {
        let out = std::env::temp_dir().join(format!("hexflow-bench-test-{}-{name}.csv", std::process::id()));
        let generated = generate(&GenerateArgs { rows, out: out.clone(), seed }).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        std::fs::remove_file(&out).unwrap();
        (generated, bytes)
    }

    #[test]
    fn the_file_has_the_header_and_exactly_the_rows_asked_for() {
        let (generated, bytes) = write(5_000, 7, "rows");
        assert_eq!(generated.rows, 5_000);
        let mut reader = csv::Reader::from_reader(bytes.as_slice());
        assert_eq!(reader.headers().unwrap().iter().collect::<Vec<_>>(), HEADER);
        let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(records.len(), 5_000);
        for r in &records {
            assert_eq!(r.len(), 13);
            assert!((300..=800).contains(&r[9].len()), "description of {} chars", r[9].len());
            assert!((50..=600).contains(&r[12].len()), "output of {} chars", r[12].len());
        }
        assert!(records.iter().any(|r| r[9].contains('"') && r[9].contains(',') && r[9].contains('\n')));
        assert!(records.iter().any(|r| r[12].contains('\n')));
    }

    #[test]
    fn the_same_seed_gives_the_same_bytes() {
        assert_eq!(write(500, 3, "a").1, write(500, 3, "b").1);
        assert_ne!(write(500, 3, "c").1, write(500, 4, "d").1);
    }

    #[test]
    fn finding_keys_repeat_only_for_the_cves_of_one_plugin() {
        let (generated, bytes) = write(20_000, 11, "keys");
        let mut reader = csv::Reader::from_reader(bytes.as_slice());
        let mut keys = std::collections::HashMap::<(String, String, String), Vec<String>>::new();
        for r in reader.records().map(Result::unwrap) {
            keys.entry((r[4].into(), r[0].into(), r[6].into())).or_default().push(r[1].into());
        }
        assert_eq!(keys.len() as u64, generated.findings);
        assert!(keys.values().any(|cves| cves.len() > 1));
        for cves in keys.values().filter(|c| c.len() > 1) {
            assert!(cves.iter().all(|c| c.starts_with("CVE-")));
        }
    }
}

//! `bench generate`: a Nessus Professional CSV export of realistic shape, deterministic from a
//! seed: 10k hosts (by default), 5k plugins with fixed texts, one row per CVE for plugins that
//! list several (same host, plugin and port), plugin output of varying length; and, when asked,
//! next week's scan of it with the lifecycle counts it must give (`weeks`).

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::PathBuf,
    time::Instant,
};

use anyhow::Context;

use crate::{
    text::{self, Rng},
    weeks::{self, Counts, Expected, Fate, Mix},
};

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
    /// Hosts scanned; findings are spread over them evenly (findings per host = findings / hosts).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub hosts: u64,
    /// Percent of the plugins with a risk that list CVEs. The scanner writes one row per CVE, so
    /// their findings repeat the key on consecutive rows; 0 makes every row a finding of its own.
    #[arg(long = "cve-percent", default_value_t = 70, value_parser = clap::value_parser!(u64).range(0..=100))]
    pub cve_percent: u64,
    /// Longest plugin output, in characters (50 or more).
    #[arg(long = "output-max", default_value_t = 600, value_parser = clap::value_parser!(u64).range(50..=100_000))]
    pub output_max: u64,
    /// Also write next week's scan of the file (`<stem>.next-week.csv`) and the lifecycle counts
    /// `bench e2e` expects (`<stem>.expected.json`): GONE,CHANGED,NEW percentages of the findings.
    #[arg(long = "next-week", value_name = "GONE,CHANGED,NEW", value_parser = Mix::parse)]
    pub next_week: Option<Mix>,
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

/// Writes the file (and next week's, when asked) and prints their size and the time taken.
pub fn run(args: &GenerateArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let scan = Scan::new(args);
    let first = scan.first_file(args.rows)?;
    let generated = scan.write(&args.out, first.iter().map(|&(finding, rows)| (finding, rows, 0)))?;
    report(&args.out, generated, started);
    if let Some(mix) = args.next_week {
        let started = Instant::now();
        let (next_path, _) = weeks::sidecars(&args.out);
        let next = scan.next_week(&first, mix);
        let written = scan.write(&next_path, next.iter().copied())?;
        report(&next_path, written, started);
        let expected = scan.expected(&first, &next, mix);
        expected.write(&args.out)?;
        println!("expected lifecycle counts: {}", serde_json::to_string(&expected)?);
    }
    Ok(())
}

fn report(path: &std::path::Path, generated: Generated, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    println!(
        "wrote {} ({} rows, {} findings, {:.1} MiB) in {secs:.1}s ({:.0} rows/s)",
        path.display(),
        generated.rows,
        generated.findings,
        generated.bytes as f64 / (1024.0 * 1024.0),
        generated.rows as f64 / secs
    );
}

/// Writes the first file of `args` only (used by tests).
pub fn generate(args: &GenerateArgs) -> anyhow::Result<Generated> {
    let scan = Scan::new(args);
    let first = scan.first_file(args.rows)?;
    scan.write(&args.out, first.iter().map(|&(finding, rows)| (finding, rows, 0)))
}

/// The scanned estate: plugins with fixed texts, hosts, and the order findings come in. Finding
/// `f` is host `f mod hosts` with the host's `f / hosts`-th plugin; its output is drawn from a
/// generator of its own, so a finding reads the same in every file it is written to.
struct Scan {
    seed: u64,
    plugins: Vec<Plugin>,
    hosts: Vec<String>,
    /// Where each host starts in the plugin cycle, so hosts do not all share the same plugins.
    offsets: Vec<u64>,
    output_max: usize,
}

impl Scan {
    fn new(args: &GenerateArgs) -> Scan {
        let mut rng = Rng::new(args.seed);
        let plugins = (0..PLUGINS).map(|i| plugin(i, &mut rng, args.cve_percent)).collect();
        let hosts = (0..args.hosts).map(host_ip).collect();
        let offsets = (0..args.hosts).map(|_| rng.below(PLUGINS)).collect();
        Scan { seed: args.seed, plugins, hosts, offsets, output_max: args.output_max as usize }
    }

    fn host_of(&self, finding: u64) -> usize {
        (finding % self.hosts.len() as u64) as usize
    }

    fn plugin_of(&self, finding: u64) -> anyhow::Result<&Plugin> {
        let host = self.host_of(finding);
        let nth = finding / self.hosts.len() as u64;
        anyhow::ensure!(nth < PLUGINS, "more findings than {} hosts × {PLUGINS} plugins can give", self.hosts.len());
        Ok(&self.plugins[((self.offsets[host] + nth * PLUGIN_STEP) % PLUGINS) as usize])
    }

    /// Rows of finding `f` when written whole: one per CVE, or one.
    fn rows_of(&self, finding: u64) -> anyhow::Result<u64> {
        Ok(self.plugin_of(finding)?.cves.len().max(1) as u64)
    }

    /// The findings of the first file and the rows each gets (the last may be cut short).
    fn first_file(&self, rows: u64) -> anyhow::Result<Vec<(u64, u64)>> {
        let (mut out, mut written) = (Vec::new(), 0);
        while written < rows {
            let finding = out.len() as u64;
            let take = self.rows_of(finding)?.min(rows - written);
            out.push((finding, take));
            written += take;
        }
        Ok(out)
    }

    /// Next week's findings: the first file's without the gone ones (changed ones with output
    /// variant 1), then the new ones after them.
    fn next_week(&self, first: &[(u64, u64)], mix: Mix) -> Vec<(u64, u64, u64)> {
        let mut out: Vec<(u64, u64, u64)> = first
            .iter()
            .filter_map(|&(finding, rows)| match mix.fate(self.seed, finding) {
                Fate::Gone => None,
                Fate::Changed => Some((finding, rows, 1)),
                Fate::Kept => Some((finding, rows, 0)),
            })
            .collect();
        let new = (first.len() as f64 * mix.new / 100.0).round() as u64;
        let start = first.len() as u64;
        out.extend((start..start + new).map(|finding| (finding, self.rows_of(finding).unwrap_or(1), 0)));
        out
    }

    /// The counts of the four imports of `bench e2e`.
    fn expected(&self, first: &[(u64, u64)], next: &[(u64, u64, u64)], mix: Mix) -> Expected {
        let rows =
            |n: u64, findings: usize| Counts { rows: n, skipped_duplicates: n - findings as u64, ..Counts::default() };
        let first_rows: u64 = first.iter().map(|f| f.1).sum();
        let next_rows: u64 = next.iter().map(|f| f.1).sum();
        let covered = |findings: &mut dyn Iterator<Item = u64>| {
            let mut hosts = vec![false; self.hosts.len()];
            findings.for_each(|f| hosts[self.host_of(f)] = true);
            hosts
        };
        let covered_next = covered(&mut next.iter().map(|f| f.0));
        let covered_first = covered(&mut first.iter().map(|f| f.0));
        let count = |fate: Fate| first.iter().filter(|f| mix.fate(self.seed, f.0) == fate).count() as u64;
        let changed = count(Fate::Changed);
        let gone_resolved =
            first.iter().filter(|f| mix.fate(self.seed, f.0) == Fate::Gone && covered_next[self.host_of(f.0)]).count()
                as u64;
        let gone = count(Fate::Gone);
        let added: Vec<u64> = next.iter().map(|f| f.0).filter(|&f| f >= first.len() as u64).collect();
        let total = first.len() as u64;
        Expected {
            mix,
            first: Counts { new: total, ..rows(first_rows, first.len()) },
            identical: Counts { unchanged: total, ..rows(first_rows, first.len()) },
            next_week: Counts {
                new: added.len() as u64,
                updated: changed,
                unchanged: total - gone - changed,
                resolved: gone_resolved,
                ..rows(next_rows, next.len())
            },
            back_again: Counts {
                updated: changed,
                reopened: gone_resolved,
                unchanged: total - changed - gone_resolved,
                resolved: added.iter().filter(|&&f| covered_first[self.host_of(f)]).count() as u64,
                ..rows(first_rows, first.len())
            },
        }
    }

    /// The plugin output of `finding`; variant 1 (changed next week) always differs from 0.
    fn output(&self, finding: u64, variant: u64) -> anyhow::Result<String> {
        let plugin = self.plugin_of(finding)?;
        let host = &self.hosts[self.host_of(finding)];
        let draw = |variant: u64| {
            let mut rng = Rng::new(self.seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ (finding << 2 | variant));
            text::plugin_output(&mut rng, &plugin.name, host, plugin.port, self.output_max)
        };
        let mut output = draw(variant);
        if variant > 0 && output == draw(0) {
            // A short output can be the plugin's fixed sentence alone.
            output.push_str(" (version changed)");
        }
        Ok(output)
    }

    /// Writes `findings` (finding, rows, output variant) as a Nessus export at `path`.
    fn write(
        &self,
        path: &std::path::Path,
        findings: impl Iterator<Item = (u64, u64, u64)>,
    ) -> anyhow::Result<Generated> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut out = csv::Writer::from_writer(BufWriter::with_capacity(1 << 20, file));
        out.write_record(HEADER).context("writing the header")?;
        let (mut rows, mut count) = (0u64, 0u64);
        for (finding, take, variant) in findings {
            let plugin = self.plugin_of(finding)?;
            let host = &self.hosts[self.host_of(finding)];
            let output = self.output(finding, variant)?;
            let cves: &[String] = if plugin.cves.is_empty() { &[String::new()] } else { &plugin.cves };
            for cve in cves.iter().take(take as usize) {
                out.write_record([
                    plugin.id.as_str(),
                    cve,
                    &plugin.cvss,
                    plugin.risk,
                    host,
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
            count += 1;
        }
        let mut inner = out.into_inner().map_err(|e| anyhow::anyhow!("flushing {}: {}", path.display(), e.error()))?;
        inner.flush().with_context(|| format!("flushing {}", path.display()))?;
        drop(inner);
        let bytes = std::fs::metadata(path)?.len();
        Ok(Generated { rows, findings: count, bytes })
    }
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

fn plugin(i: u64, rng: &mut Rng, cve_percent: u64) -> Plugin {
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
    // `cve_percent` % of the plugins with a risk list CVEs (70 % by default); most list one or
    // two, some up to five.
    let listed = rng.below(100) < cve_percent;
    let cve_count = match (informational || !listed, rng.below(100)) {
        (true, _) => 0,
        (false, 0..50) => 1,
        (false, 50..76) => 2,
        (false, 76..89) => 3,
        (false, 89..96) => 4,
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

    fn args(rows: u64, out: PathBuf, seed: u64) -> GenerateArgs {
        GenerateArgs { rows, out, seed, hosts: 10_000, cve_percent: 70, output_max: 600, next_week: None }
    }

    fn write(rows: u64, seed: u64, name: &str) -> (Generated, Vec<u8>) {
        let out = std::env::temp_dir().join(format!("hexflow-bench-test-{}-{name}.csv", std::process::id()));
        let generated = generate(&args(rows, out.clone(), seed)).unwrap();
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

    /// A finding's key: host, plugin, port.
    type Key = (String, String, String);
    /// What the merge compares of a finding: CVEs, output.
    type Details = (Vec<String>, String);
    /// Findings of a file by key.
    type Findings = std::collections::BTreeMap<Key, Details>;
    /// Known findings by key: open?, details.
    type Known = std::collections::BTreeMap<Key, (bool, Details)>;

    fn findings_of(path: &std::path::Path) -> (u64, Findings) {
        let mut reader = csv::Reader::from_path(path).unwrap();
        let (mut rows, mut out) = (0, Findings::new());
        for r in reader.records().map(Result::unwrap) {
            rows += 1;
            let entry = out.entry((r[4].into(), r[0].into(), r[6].into())).or_insert((vec![], r[12].into()));
            if !r[1].is_empty() {
                entry.0.push(r[1].into());
            }
        }
        (rows, out)
    }

    /// The lifecycle rules of DESIGN.md, applied to findings held in memory: the counts an
    /// import of `path` gives on top of `known` (key → open?, details).
    fn import(known: &mut Known, path: &std::path::Path) -> Counts {
        let (rows, incoming) = findings_of(path);
        let mut counts = Counts { rows, skipped_duplicates: rows - incoming.len() as u64, ..Counts::default() };
        let hosts: std::collections::HashSet<&String> = incoming.keys().map(|k| &k.0).collect();
        for (key, (open, _)) in known.iter_mut() {
            if *open && hosts.contains(&key.0) && !incoming.contains_key(key) {
                *open = false;
                counts.resolved += 1;
            }
        }
        for (key, details) in incoming {
            match known.insert(key, (true, details.clone())) {
                None => counts.new += 1,
                Some((false, _)) => counts.reopened += 1,
                Some((true, before)) if before == details => counts.unchanged += 1,
                Some(_) => counts.updated += 1,
            }
        }
        counts
    }

    #[test]
    fn next_weeks_expected_counts_are_those_of_the_lifecycle() {
        let dir = std::env::temp_dir().join(format!("hexflow-bench-weeks-{}", std::process::id()));
        let out = dir.join("scan.csv");
        let mix = Mix { gone: 5.0, changed: 10.0, new: 5.0 };
        for (hosts, cve_percent) in [(200, 70), (50, 0)] {
            let a = GenerateArgs {
                hosts,
                cve_percent,
                output_max: 200,
                next_week: Some(mix),
                ..args(20_000, out.clone(), 9)
            };
            run(&a).unwrap();
            let expected = Expected::read(&out).unwrap();
            let (next, _) = weeks::sidecars(&out);
            let mut known = Known::default();
            assert_eq!(import(&mut known, &out), expected.first, "first, {hosts} hosts");
            assert_eq!(import(&mut known, &out), expected.identical, "identical, {hosts} hosts");
            assert_eq!(import(&mut known, &next), expected.next_week, "next week, {hosts} hosts");
            assert_eq!(import(&mut known, &out), expected.back_again, "back again, {hosts} hosts");
            let n = expected.next_week;
            assert!(n.new > 0 && n.updated > 0 && n.resolved > 0 && n.unchanged > n.updated, "{n:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_finding_reads_the_same_in_both_weeks_unless_it_changed() {
        let dir = std::env::temp_dir().join(format!("hexflow-bench-same-{}", std::process::id()));
        let out = dir.join("scan.csv");
        let mix = Mix { gone: 0.0, changed: 0.0, new: 0.0 };
        run(&GenerateArgs { next_week: Some(mix), ..args(3_000, out.clone(), 5) }).unwrap();
        let (next, _) = weeks::sidecars(&out);
        assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&next).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

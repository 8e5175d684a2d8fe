//! The figures of `bench realtime`, from the load clients' records: delivered events, latency
//! percentiles, throttle violations, lost terminal events, order, gateway memory and CPU, checked
//! against the targets, as text or as one JSON object.

use std::{collections::HashMap, path::PathBuf};

use anyhow::Context;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    realtime::{Peer, Published, RealtimeArgs},
    rss::Peak,
};

/// Largest p99 publish-to-client latency, in ms.
const TARGET_P99_MS: f64 = 20.0;
/// Largest gateway resident set: 200 MB (10^6 bytes), in KiB.
const TARGET_RSS_KIB: u64 = 200_000_000 / 1024;

/// `progress-status`: the snapshot a joining socket gets.
const STATUS: u8 = 0;
/// `progress-update`: throttled.
const UPDATE: u8 = 1;
/// `progress-complete`: terminal.
const COMPLETE: u8 = 2;

/// One event as a client received it.
#[derive(Debug, Clone, Copy)]
pub struct Record {
    /// Global client number.
    pub client: u32,
    /// 0 status, 1 update, 2 complete, 3 error, 4 cancelled.
    pub kind: u8,
    /// Index of the event's `sessionId` in the session list (-1 if unknown).
    pub session: i64,
    /// The event's `seq`.
    pub seq: i64,
    /// When the client's handler ran, ms since the epoch.
    pub recv: f64,
    /// The event's `timestamp` (ms since the epoch, whole ms).
    pub ts: i64,
    /// The bench's send time to the µs (from `message`), or -1.
    pub sent: f64,
}

/// Reads the CSV records a load client wrote.
pub fn read_records(path: &std::path::Path) -> anyhow::Result<Vec<Record>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|line| parse_record(line).with_context(|| format!("malformed record {line:?} in {}", path.display())))
        .collect()
}

fn parse_record(line: &str) -> Option<Record> {
    let mut f = line.split(',');
    Some(Record {
        client: f.next()?.parse().ok()?,
        kind: f.next()?.parse().ok()?,
        session: f.next()?.parse().ok()?,
        seq: f.next()?.parse().ok()?,
        recv: f.next()?.parse().ok()?,
        ts: f.next()?.parse().ok()?,
        sent: f.next()?.parse().ok()?,
    })
}

/// CPU time (user + system, in clock ticks) of each pid now.
pub fn cpu_ticks(pids: &[u32]) -> Vec<(u32, u64)> {
    pids.iter()
        .filter_map(|&pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // Fields after the command name (which may hold spaces) start at field 3 (state).
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            Some((pid, utime + stime))
        })
        .collect()
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 when unknown).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU use while publishing and delivering, in percent of one core.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    /// Seconds measured (first publish to the last terminal event, or the settle limit).
    pub secs: f64,
    /// The realtime gateway (its replicas together).
    pub gateway: f64,
    /// nats-server (if found).
    pub nats: Option<f64>,
    /// Every Node load-client process together.
    pub clients: f64,
}

impl Cpu {
    /// The use between two [`cpu_ticks`] readings `secs` apart.
    pub fn between(before: &[(u32, u64)], after: &[(u32, u64)], secs: f64, gateways: &[u32], nats: Option<u32>) -> Cpu {
        let hz = clock_ticks();
        let percent = |pid: u32| -> f64 {
            let b = before.iter().find(|(p, _)| *p == pid).map(|(_, t)| *t);
            let a = after.iter().find(|(p, _)| *p == pid).map(|(_, t)| *t);
            match (b, a) {
                (Some(b), Some(a)) if secs > 0.0 => (a.saturating_sub(b)) as f64 / hz / secs * 100.0,
                _ => 0.0,
            }
        };
        let clients =
            before.iter().map(|(p, _)| *p).filter(|p| !gateways.contains(p) && Some(*p) != nats).map(percent).sum();
        Cpu { secs, gateway: gateways.iter().copied().map(percent).sum(), nats: nats.map(percent), clients }
    }
}

/// Everything the run measured besides the records.
pub struct Inputs<'a> {
    /// The command line (with this run's clients and sessions).
    pub args: &'a RealtimeArgs,
    /// The server under test.
    pub peer: Peer,
    /// Node processes used.
    pub procs: u32,
    /// The session ids.
    pub sessions: &'a [Uuid],
    /// What the publisher did.
    pub published: Published,
    /// Each Node process's `ready` line.
    pub ready: Vec<Value>,
    /// Each Node process's `done` line.
    pub done: Vec<Value>,
    /// Seconds until every client had connected and joined.
    pub connect_secs: f64,
    /// True if every client had its terminal event before the settle limit.
    pub settled: bool,
    /// Gateway `VmRSS` before any client connected, KiB.
    pub idle_rss_kib: u64,
    /// Gateway `VmRSS` once every client had joined, KiB.
    pub connected_rss_kib: u64,
    /// Gateway memory over the whole run.
    pub peak: Peak,
    /// CPU while publishing.
    pub cpu: Cpu,
    /// The gateway's `/metrics` counters at the end.
    pub metrics: Vec<(String, f64)>,
    /// The gateway's environment beyond the defaults.
    pub gateway_env: Vec<(String, String)>,
    /// Where the logs and records are.
    pub logs: PathBuf,
    /// 1-minute load average at the end.
    pub load_average: f64,
}

/// Percentiles of a set of latencies, in ms.
#[derive(Debug, Clone, Copy, Default)]
pub struct Dist {
    /// Values.
    pub n: usize,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Dist {
    fn of(mut values: Vec<f64>) -> Dist {
        if values.is_empty() {
            return Dist::default();
        }
        values.sort_by(f64::total_cmp);
        let at = |p: f64| values[((p / 100.0 * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1];
        Dist { n: values.len(), p50: at(50.0), p95: at(95.0), p99: at(99.0), max: values[values.len() - 1] }
    }

    fn json(&self) -> Value {
        json!({ "n": self.n, "p50": self.p50, "p95": self.p95, "p99": self.p99, "max": self.max })
    }

    fn row(&self, what: &str) -> String {
        format!("  {what:<34} {:>8} {:>8.1} {:>8.1} {:>8.1} {:>8.1}", self.n, self.p50, self.p95, self.p99, self.max)
    }
}

/// The figures of one run.
pub struct Report<'a> {
    inputs: Inputs<'a>,
    joined: u64,
    failed: u64,
    errors: Value,
    statuses: u64,
    updates: u64,
    completes: u64,
    other_terminals: u64,
    other_events: HashMap<String, u64>,
    /// Receive − `timestamp` (whole ms) of updates and completes.
    lat_all: Dist,
    lat_updates: Dist,
    lat_completes: Dist,
    /// Receive − send time to the µs.
    precise_all: Dist,
    precise_updates: Dist,
    precise_completes: Dist,
    /// Receive − `timestamp` of updates sent after the first second of publishing (warmed up).
    lat_updates_warm: Dist,
    /// Share of updates later than the p99 target.
    updates_over_target: f64,
    violations: u64,
    /// Pairs whose second update reached the client less than the interval (minus the
    /// tolerance) after the first was published: the gateway certainly emitted them too close.
    provable: u64,
    /// Smallest receive(second) − send(first) of two consecutive updates at one client, ms.
    min_span: Option<f64>,
    below_interval: u64,
    min_gap: Option<f64>,
    gap_pairs: u64,
    lost_terminals: u64,
    lost_never_joined: u64,
    duplicate_terminals: u64,
    after_terminal: u64,
    duplicates: u64,
    out_of_order: u64,
    wrong_session: u64,
    updates_per_client: (u64, f64, u64),
    disconnects: HashMap<String, u64>,
    loop_delay: Vec<(f64, f64)>,
}

/// Computes the figures from the records.
pub fn analyse(inputs: Inputs<'_>, mut records: Vec<Record>) -> Report<'_> {
    let args = inputs.args;
    let clients = args.clients as usize;
    let sessions = inputs.sessions.len();
    let interval = args.min_interval_ms as f64;
    let since = inputs.published.started_ms;
    // Per client, in arrival order (each client lives in one process, which appends in order).
    records.sort_by_key(|r| r.client);

    let (mut statuses, mut updates, mut completes, mut other_terminals) = (0, 0, 0, 0);
    let (mut lat_all, mut lat_updates, mut lat_completes) = (Vec::new(), Vec::new(), Vec::new());
    let (mut precise_all, mut precise_updates, mut precise_completes) = (Vec::new(), Vec::new(), Vec::new());
    let mut lat_updates_warm = Vec::new();
    let (mut violations, mut below_interval, mut gap_pairs, mut min_gap) = (0, 0, 0, None::<f64>);
    let (mut provable, mut min_span) = (0, None::<f64>);
    let (mut lost_terminals, mut lost_never_joined, mut duplicate_terminals, mut after_terminal) = (0, 0, 0, 0);
    let (mut duplicates, mut out_of_order, mut wrong_session) = (0, 0, 0);
    let mut per_client_updates = Vec::with_capacity(clients);

    let mut start = 0;
    for client in 0..clients {
        let end = start + records[start..].iter().take_while(|r| r.client as usize == client).count();
        let mine = &records[start..end];
        start = end;
        let expected = (client % sessions) as i64;
        let (mut last_seq, mut last_update, mut terminals, mut joined, mut client_updates) =
            (None::<i64>, None::<&Record>, 0u64, false, 0u64);
        for r in mine {
            if r.session != expected {
                wrong_session += 1;
            }
            if terminals > 0 {
                after_terminal += 1;
            }
            match last_seq {
                Some(last) if r.seq == last => duplicates += 1,
                Some(last) if r.seq < last => out_of_order += 1,
                _ => {}
            }
            last_seq = Some(last_seq.map_or(r.seq, |l| l.max(r.seq)));
            match r.kind {
                STATUS => {
                    statuses += 1;
                    joined = true;
                }
                UPDATE => {
                    updates += 1;
                    client_updates += 1;
                    if let Some(prev) = last_update {
                        let gap = r.recv - prev.recv;
                        // The gateway emitted `prev` after it was sent and `r` before it arrived.
                        let sent = if prev.sent >= 0.0 { prev.sent } else { prev.ts as f64 };
                        let span = r.recv - sent;
                        min_span = Some(min_span.map_or(span, |m| m.min(span)));
                        if span < interval - args.tolerance_ms {
                            provable += 1;
                        }
                        gap_pairs += 1;
                        min_gap = Some(min_gap.map_or(gap, |m| m.min(gap)));
                        if gap < interval {
                            below_interval += 1;
                        }
                        if gap < interval - args.tolerance_ms {
                            violations += 1;
                        }
                    }
                    last_update = Some(r);
                }
                COMPLETE => completes += 1,
                _ => other_terminals += 1,
            }
            if r.kind >= COMPLETE {
                terminals += 1;
            }
            if (r.kind == UPDATE || r.kind == COMPLETE) && r.ts >= since {
                let latency = r.recv - r.ts as f64;
                lat_all.push(latency);
                let precise = (r.sent >= 0.0).then_some(r.recv - r.sent);
                if let Some(p) = precise {
                    precise_all.push(p);
                }
                let (coarse, fine) = if r.kind == UPDATE {
                    (&mut lat_updates, &mut precise_updates)
                } else {
                    (&mut lat_completes, &mut precise_completes)
                };
                coarse.push(latency);
                fine.extend(precise);
                if r.kind == UPDATE && r.ts >= since + 1000 {
                    lat_updates_warm.push(latency);
                }
            }
        }
        if !mine.iter().any(|r| r.kind == COMPLETE) {
            lost_terminals += 1;
            if !joined {
                lost_never_joined += 1;
            }
        }
        duplicate_terminals += terminals.saturating_sub(1);
        per_client_updates.push(client_updates);
    }

    let over = lat_updates.iter().filter(|l| **l >= TARGET_P99_MS).count();
    let updates_over_target = if lat_updates.is_empty() { 0.0 } else { over as f64 / lat_updates.len() as f64 };
    let updates_per_client = (
        per_client_updates.iter().copied().min().unwrap_or_default(),
        per_client_updates.iter().sum::<u64>() as f64 / clients.max(1) as f64,
        per_client_updates.iter().copied().max().unwrap_or_default(),
    );
    let sum = |lines: &[Value], key: &str| lines.iter().map(|l| l[key].as_u64().unwrap_or_default()).sum::<u64>();
    let mut errors = serde_json::Map::new();
    for line in &inputs.ready {
        if let Some(map) = line["errors"].as_object() {
            for (k, v) in map {
                let n = errors.get(k).and_then(Value::as_u64).unwrap_or_default() + v.as_u64().unwrap_or_default();
                errors.insert(k.clone(), n.into());
            }
        }
    }
    let tally = |key: &str| {
        let mut out: HashMap<String, u64> = HashMap::new();
        for line in &inputs.done {
            for (k, v) in line[key].as_object().into_iter().flatten() {
                *out.entry(k.clone()).or_default() += v.as_u64().unwrap_or_default();
            }
        }
        out
    };
    let loop_delay = inputs
        .done
        .iter()
        .map(|l| (l["loopDelayP99Ms"].as_f64().unwrap_or_default(), l["loopDelayMaxMs"].as_f64().unwrap_or_default()))
        .collect();
    Report {
        joined: sum(&inputs.ready, "joined"),
        failed: sum(&inputs.ready, "failed"),
        errors: Value::Object(errors),
        other_events: tally("otherEvents"),
        disconnects: tally("disconnects"),
        loop_delay,
        inputs,
        statuses,
        updates,
        completes,
        other_terminals,
        lat_all: Dist::of(lat_all),
        lat_updates: Dist::of(lat_updates),
        lat_completes: Dist::of(lat_completes),
        precise_all: Dist::of(precise_all),
        precise_updates: Dist::of(precise_updates),
        precise_completes: Dist::of(precise_completes),
        lat_updates_warm: Dist::of(lat_updates_warm),
        updates_over_target,
        violations,
        provable,
        min_span,
        below_interval,
        min_gap,
        gap_pairs,
        lost_terminals,
        lost_never_joined,
        duplicate_terminals,
        after_terminal,
        duplicates,
        out_of_order,
        wrong_session,
        updates_per_client,
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

impl Report<'_> {
    /// The most `progress-update`s one client can get: one per interval, and no more than were
    /// published for its session.
    fn update_ceiling(&self) -> u64 {
        let args = self.inputs.args;
        let per_session = self.inputs.published.progress.div_ceil(self.inputs.sessions.len() as u64);
        let by_throttle = (self.inputs.published.secs * 1000.0 / args.min_interval_ms as f64).floor() as u64 + 1;
        per_session.min(by_throttle)
    }

    /// The gateway's extra settings, secrets masked.
    fn gateway_env(&self) -> Vec<String> {
        let shown = |k: &str, v: &str| if k.contains("SECRET") { "<random, per run>".to_owned() } else { v.to_owned() };
        self.inputs.gateway_env.iter().map(|(k, v)| format!("{k}={}", shown(k, v))).collect()
    }

    fn gateway_hwm_kib(&self) -> u64 {
        self.inputs.peak.hwm_kib.max(self.inputs.peak.max_rss_kib)
    }

    fn verdicts(&self) -> Vec<(String, String, bool)> {
        let hwm = self.gateway_hwm_kib();
        vec![
            (
                format!("p99 publish-to-client < {TARGET_P99_MS} ms"),
                format!(
                    "{:.1} ms all events (updates {:.1}, completes {:.1})",
                    self.lat_all.p99, self.lat_updates.p99, self.lat_completes.p99
                ),
                self.lat_all.n > 0 && self.lat_all.p99 < TARGET_P99_MS,
            ),
            (
                "0 lost terminal events".into(),
                format!("{} of {} clients", self.lost_terminals, self.inputs.args.clients),
                self.lost_terminals == 0,
            ),
            (
                "0 throttle violations".into(),
                format!("{} (tolerance {} ms)", self.violations, self.inputs.args.tolerance_ms),
                self.violations == 0,
            ),
            (
                "gateway RSS < 200 MB".into(),
                format!("VmHWM {:.1} MiB ({:.0} MB)", mib(hwm), hwm as f64 * 1024.0 / 1e6),
                hwm < TARGET_RSS_KIB,
            ),
        ]
    }

    /// Prints the report.
    pub fn print(&self) {
        let i = &self.inputs;
        let a = i.args;
        let p = &i.published;
        println!("# bench realtime: {}", i.peer.name());
        println!(
            "{} clients over {} sessions ({} Node process(es), websocket) on {} server process(es), {} events/s for {} s, throttle interval {} ms",
            a.clients, a.sessions, i.procs, a.replicas, a.rate, a.duration, a.min_interval_ms
        );
        for env in self.gateway_env() {
            println!("gateway env: {env}");
        }
        println!(
            "published: {} progress events + {} terminal in {:.2} s ({:.0}/s; pacer at most {:.1} ms behind schedule)",
            p.progress,
            p.terminal,
            p.secs,
            (p.progress + p.terminal) as f64 / p.secs,
            p.max_lag_ms
        );
        println!(
            "clients: {} joined, {} failed {} (connect + join of all: {:.1} s); disconnects during the run: {:?}",
            self.joined, self.failed, self.errors, i.connect_secs, self.disconnects
        );
        println!(
            "delivered: {} progress-update + {} progress-complete (+ {} progress-status snapshots, {} other terminal); other events: {:?}",
            self.updates, self.completes, self.statuses, self.other_terminals, self.other_events
        );
        println!(
            "updates per client: min {} / mean {:.1} / max {} (ceiling {}: one per interval, at most what was published)",
            self.updates_per_client.0,
            self.updates_per_client.1,
            self.updates_per_client.2,
            self.update_ceiling()
        );
        println!();
        println!(
            "latency, ms                            {:>8} {:>8} {:>8} {:>8} {:>8}",
            "n", "p50", "p95", "p99", "max"
        );
        println!("{}", self.lat_all.row("receive − timestamp: all"));
        println!("{}", self.lat_updates.row("  progress-update"));
        println!("{}", self.lat_completes.row("  progress-complete"));
        println!("{}", self.lat_updates_warm.row("  progress-update after 1st second"));
        println!("{}", self.precise_all.row("receive − send (µs clock): all"));
        println!("{}", self.precise_updates.row("  progress-update"));
        println!("{}", self.precise_completes.row("  progress-complete"));
        println!("updates at or over {TARGET_P99_MS} ms: {:.1} %", self.updates_over_target * 100.0);
        println!();
        println!(
            "throttle: {} violations (two progress-updates at one client < {} − {} ms apart), {} of {} pairs under {} ms, smallest gap {}",
            self.violations,
            a.min_interval_ms,
            a.tolerance_ms,
            self.below_interval,
            self.gap_pairs,
            a.min_interval_ms,
            self.min_gap.map(|g| format!("{g:.1} ms")).unwrap_or_else(|| "-".into())
        );
        println!(
            "  emitted too close for certain (second received < {} − {} ms after the first was sent): {}; smallest such span {}",
            a.min_interval_ms,
            a.tolerance_ms,
            self.provable,
            self.min_span.map(|g| format!("{g:.1} ms")).unwrap_or_else(|| "-".into())
        );
        println!(
            "terminal: {} lost ({} of them never joined), {} duplicate terminal events, {} events after the terminal one",
            self.lost_terminals, self.lost_never_joined, self.duplicate_terminals, self.after_terminal
        );
        println!(
            "order: {} duplicates (same seq again), {} out of order, {} of another session",
            self.duplicates, self.out_of_order, self.wrong_session
        );
        println!(
            "gateway RSS: {:.1} MiB idle, {:.1} MiB with every client joined, {:.1} MiB peak sampled, VmHWM {:.1} MiB",
            mib(i.idle_rss_kib),
            mib(i.connected_rss_kib),
            i.peak.rss_mib(),
            i.peak.hwm_mib()
        );
        println!(
            "CPU over {:.1} s of publishing and delivery (% of one core): gateway {:.0}, nats-server {}, load clients {:.0}; load average {:.2}",
            i.cpu.secs,
            i.cpu.gateway,
            i.cpu.nats.map(|n| format!("{n:.0}")).unwrap_or_else(|| "?".into()),
            i.cpu.clients,
            i.load_average
        );
        let loops: Vec<String> =
            self.loop_delay.iter().map(|(p99, max)| format!("p99 {p99:.1} / max {max:.1}")).collect();
        println!("load client event-loop delay, ms: {}", loops.join("; "));
        let metrics: Vec<String> = i
            .metrics
            .iter()
            .filter(|(n, _)| !n.contains("publish_to_emit"))
            .map(|(n, v)| format!("{}={v}", n.trim_start_matches("hexflow_realtime_")))
            .collect();
        println!("gateway /metrics: {}", metrics.join(" "));
        if !i.settled {
            println!("NOTE: not every client had its terminal event within --settle-secs {}", a.settle_secs);
        }
        println!();
        println!("| target | measured | met |");
        println!("|---|---|---|");
        for (target, measured, met) in self.verdicts() {
            println!("| {target} | {measured} | {} |", if met { "yes" } else { "**no**" });
        }
        println!();
        println!("logs and records: {}", i.logs.display());
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> Value {
        let i = &self.inputs;
        let a = i.args;
        let p = &i.published;
        json!({
            "peer": i.peer.name(),
            "clients": a.clients,
            "sessions": a.sessions,
            "rate": a.rate,
            "durationSecs": a.duration,
            "clientProcesses": i.procs,
            "serverProcesses": a.replicas,
            "minIntervalMs": a.min_interval_ms,
            "toleranceMs": a.tolerance_ms,
            "gatewayEnv": self.gateway_env(),
            "published": {
                "progress": p.progress, "terminal": p.terminal, "secs": p.secs, "maxLagMs": p.max_lag_ms,
            },
            "joined": self.joined,
            "failed": self.failed,
            "joinErrors": self.errors,
            "connectSecs": i.connect_secs,
            "disconnects": self.disconnects,
            "delivered": {
                "progressUpdate": self.updates, "progressComplete": self.completes,
                "progressStatus": self.statuses, "otherTerminal": self.other_terminals,
                "otherEvents": self.other_events,
            },
            "updatesPerClient": {
                "min": self.updates_per_client.0, "mean": self.updates_per_client.1,
                "max": self.updates_per_client.2, "ceiling": self.update_ceiling(),
            },
            "latencyMs": {
                "all": self.lat_all.json(),
                "progressUpdate": self.lat_updates.json(),
                "progressComplete": self.lat_completes.json(),
                "progressUpdateAfterFirstSecond": self.lat_updates_warm.json(),
            },
            "preciseLatencyMs": {
                "all": self.precise_all.json(),
                "progressUpdate": self.precise_updates.json(),
                "progressComplete": self.precise_completes.json(),
            },
            "updatesOverTargetShare": self.updates_over_target,
            "throttle": {
                "violations": self.violations, "pairsBelowInterval": self.below_interval,
                "pairs": self.gap_pairs, "minGapMs": self.min_gap,
                "certainViolations": self.provable, "minReceiveAfterSendMs": self.min_span,
            },
            "terminal": {
                "lost": self.lost_terminals, "lostNeverJoined": self.lost_never_joined,
                "duplicates": self.duplicate_terminals, "eventsAfter": self.after_terminal,
            },
            "order": {
                "duplicates": self.duplicates, "outOfOrder": self.out_of_order, "wrongSession": self.wrong_session,
            },
            "gatewayRss": {
                "idleKib": i.idle_rss_kib, "connectedKib": i.connected_rss_kib, "peak": i.peak,
            },
            "cpuPercent": { "secs": i.cpu.secs, "gateway": i.cpu.gateway, "nats": i.cpu.nats, "clients": i.cpu.clients },
            "loadClientLoopDelayMs": self.loop_delay.iter().map(|(p99, max)| json!({"p99": p99, "max": max})).collect::<Vec<_>>(),
            "gatewayMetrics": i.metrics.iter().map(|(n, v)| (n.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "settled": i.settled,
            "loadAverage": i.load_average,
            "logs": i.logs,
            "targets": self.verdicts().into_iter().map(|(t, m, ok)| json!({"target": t, "measured": m, "met": ok})).collect::<Vec<_>>(),
        })
    }
}

/// The figures of one run that the side-by-side table compares.
#[derive(Debug, Clone)]
pub struct Figures {
    /// The server under test.
    pub peer: Peer,
    /// Connections.
    pub clients: u32,
    /// Sessions (rooms).
    pub sessions: u32,
    /// Receive − send (µs clock) of `progress-update`s, ms.
    pub updates: Dist,
    /// Receive − send of terminal events, ms.
    pub terminals: Dist,
    /// Receive − send of both, ms.
    pub all: Dist,
    /// Server `VmRSS` before any client, KiB.
    pub idle_rss_kib: u64,
    /// Server `VmRSS` with every client joined, KiB.
    pub joined_rss_kib: u64,
    /// Server peak resident set over the run (`VmHWM`, or the largest sample), KiB.
    pub peak_rss_kib: u64,
    /// CPU while publishing and delivering, % of one core: server, nats-server, load clients.
    pub cpu: (f64, f64, f64),
    /// Largest event-loop delay p99 and max of the load processes, ms.
    pub loop_delay: (f64, f64),
    /// Largest delay of a publish behind its schedule, ms.
    pub pacer_lag_ms: f64,
    /// Clients that joined.
    pub joined: u64,
    /// Clients without their terminal event.
    pub lost_terminals: u64,
    /// Terminal events received more than once.
    pub duplicate_terminals: u64,
    /// Throttle violations by arrival gap (includes delivery jitter).
    pub violations: u64,
    /// Pairs the server certainly emitted too close (second received < interval after the first
    /// was sent).
    pub certain_violations: u64,
    /// Events older than one already received, or the same `seq` again.
    pub out_of_order: u64,
}

impl Report<'_> {
    /// The run's figures for the side-by-side table.
    pub fn figures(&self) -> Figures {
        let i = &self.inputs;
        let worst = |f: fn(&(f64, f64)) -> f64| self.loop_delay.iter().map(f).fold(0.0, f64::max);
        Figures {
            peer: i.peer,
            clients: i.args.clients,
            sessions: i.args.sessions,
            updates: self.precise_updates,
            terminals: self.precise_completes,
            all: self.precise_all,
            idle_rss_kib: i.idle_rss_kib,
            joined_rss_kib: i.connected_rss_kib,
            peak_rss_kib: self.gateway_hwm_kib(),
            cpu: (i.cpu.gateway, i.cpu.nats.unwrap_or_default(), i.cpu.clients),
            loop_delay: (worst(|d| d.0), worst(|d| d.1)),
            pacer_lag_ms: i.published.max_lag_ms,
            joined: self.joined,
            lost_terminals: self.lost_terminals,
            duplicate_terminals: self.duplicate_terminals,
            violations: self.violations,
            certain_violations: self.provable,
            out_of_order: self.out_of_order + self.duplicates,
        }
    }
}

impl Figures {
    /// Memory per connection of this run: (joined − idle) / clients, KiB.
    fn per_connection_kib(&self) -> f64 {
        self.joined_rss_kib.saturating_sub(self.idle_rss_kib) as f64 / f64::from(self.clients.max(1))
    }

    /// A one-line summary, printed as each run ends.
    pub fn one_line(&self) -> String {
        format!(
            "{} C={} S={}: terminal p50/p99 {:.1}/{:.1} ms, updates p99 {:.1} ms, RSS joined {:.1} MiB peak {:.1} MiB, CPU {:.0} %, lost {} dup {} violations {} (certain {})",
            self.peer.name(),
            self.clients,
            self.sessions,
            self.terminals.p50,
            self.terminals.p99,
            self.updates.p99,
            mib(self.joined_rss_kib),
            mib(self.peak_rss_kib),
            self.cpu.0,
            self.lost_terminals,
            self.duplicate_terminals,
            self.violations,
            self.certain_violations
        )
    }
}

/// `a` or `a–b`: the range of one figure over the repeats.
fn range(values: &[f64], decimals: usize) -> String {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if values.is_empty() {
        return "-".into();
    }
    let (a, b) = (format!("{lo:.decimals$}"), format!("{hi:.decimals$}"));
    if a == b { a } else { format!("{a}–{b}") }
}

/// p50 / p95 / p99 / max of one distribution, each as its range over `runs`.
fn dist(runs: &[&Figures], pick: fn(&Figures) -> Dist) -> String {
    let d: Vec<Dist> = runs.iter().map(|r| pick(r)).collect();
    let part = |f: fn(&Dist) -> f64| range(&d.iter().map(f).collect::<Vec<_>>(), 1);
    format!("{} / {} / {} / {}", part(|d| d.p50), part(|d| d.p95), part(|d| d.p99), part(|d| d.max))
}

/// One figure as its range over `runs`.
fn num(runs: &[&Figures], pick: fn(&Figures) -> f64, decimals: usize) -> String {
    range(&runs.iter().map(|r| pick(r)).collect::<Vec<_>>(), decimals)
}

/// The runs side by side as a Markdown table: one column per server, one block of rows per size,
/// each cell the range over the repeats; then the memory per added connection between sizes.
pub fn side_by_side(runs: &[Figures]) -> String {
    let mut peers: Vec<Peer> = Vec::new();
    let mut sizes: Vec<(u32, u32)> = Vec::new();
    for run in runs {
        if !peers.contains(&run.peer) {
            peers.push(run.peer);
        }
        if !sizes.contains(&(run.clients, run.sessions)) {
            sizes.push((run.clients, run.sessions));
        }
    }
    // Node first, as in the table.
    peers.sort_by_key(|p| *p == Peer::Hexflow);
    let of = |peer: Peer, size: (u32, u32)| -> Vec<&Figures> {
        runs.iter().filter(|r| r.peer == peer && (r.clients, r.sessions) == size).collect()
    };
    type Cell = fn(&[&Figures]) -> String;
    let rows: Vec<(&str, Cell)> = vec![
        ("runs", |r| r.len().to_string()),
        ("terminal events: latency p50 / p95 / p99 / max, ms", |r| dist(r, |f| f.terminals)),
        ("progress-update: latency p50 / p95 / p99 / max, ms", |r| dist(r, |f| f.updates)),
        ("all events: latency p99, ms", |r| num(r, |f| f.all.p99, 1)),
        ("RSS idle / all joined / peak, MiB", |r| {
            format!(
                "{} / {} / {}",
                num(r, |f| mib(f.idle_rss_kib), 1),
                num(r, |f| mib(f.joined_rss_kib), 1),
                num(r, |f| mib(f.peak_rss_kib), 1)
            )
        }),
        ("memory per connection (joined − idle) / C, KiB", |r| num(r, Figures::per_connection_kib, 1)),
        ("CPU, % of one core: server / nats-server / load clients", |r| {
            format!("{} / {} / {}", num(r, |f| f.cpu.0, 0), num(r, |f| f.cpu.1, 0), num(r, |f| f.cpu.2, 0))
        }),
        ("load generator: event-loop delay p99 / max, pacer lag, ms", |r| {
            format!(
                "{} / {}, {}",
                num(r, |f| f.loop_delay.0, 1),
                num(r, |f| f.loop_delay.1, 1),
                num(r, |f| f.pacer_lag_ms, 1)
            )
        }),
        ("joined clients", |r| num(r, |f| f.joined as f64, 0)),
        ("lost / duplicate terminal events", |r| {
            format!("{} / {}", num(r, |f| f.lost_terminals as f64, 0), num(r, |f| f.duplicate_terminals as f64, 0))
        }),
        ("throttle violations: certain / by arrival gap; duplicate or out-of-order events", |r| {
            format!(
                "{} / {}; {}",
                num(r, |f| f.certain_violations as f64, 0),
                num(r, |f| f.violations as f64, 0),
                num(r, |f| f.out_of_order as f64, 0)
            )
        }),
    ];
    let mut out = String::new();
    let header: Vec<&str> = peers.iter().map(|p| p.name()).collect();
    out.push_str(&format!("| | {} |\n|---|{}\n", header.join(" | "), "---|".repeat(peers.len())));
    for &size in &sizes {
        out.push_str(&format!("| **C={}, S={}** |{}\n", size.0, size.1, " |".repeat(peers.len())));
        for (what, cell) in &rows {
            let cells: Vec<String> = peers.iter().map(|p| cell(&of(*p, size))).collect();
            out.push_str(&format!("| {what} | {} |\n", cells.join(" | ")));
        }
    }
    if sizes.len() >= 2 {
        let (small, large) = (sizes[0], sizes[sizes.len() - 1]);
        let mean = |runs: &[&Figures]| runs.iter().map(|r| r.joined_rss_kib as f64).sum::<f64>() / runs.len() as f64;
        let cells: Vec<String> = peers
            .iter()
            .map(|p| {
                let (a, b) = (of(*p, small), of(*p, large));
                let added = f64::from(large.0) - f64::from(small.0);
                if a.is_empty() || b.is_empty() || added == 0.0 {
                    "-".into()
                } else {
                    format!("{:.1}", (mean(&b) - mean(&a)) / added)
                }
            })
            .collect();
        out.push_str(&format!(
            "| memory per added connection (RSS joined at C={} − at C={}) / {}, KiB | {} |\n",
            large.0,
            small.0,
            i64::from(large.0) - i64::from(small.0),
            cells.join(" | ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(peer: Peer, clients: u32, joined_mib: u64, terminal_p99: f64) -> Figures {
        let terminals = Dist { n: 10, p50: 1.0, p95: 2.0, p99: terminal_p99, max: terminal_p99 };
        Figures {
            peer,
            clients,
            sessions: clients / 10,
            updates: Dist::default(),
            terminals,
            all: terminals,
            idle_rss_kib: 10 * 1024,
            joined_rss_kib: joined_mib * 1024,
            peak_rss_kib: joined_mib * 1024,
            cpu: (10.0, 5.0, 20.0),
            loop_delay: (1.0, 2.0),
            pacer_lag_ms: 0.5,
            joined: u64::from(clients),
            lost_terminals: 0,
            duplicate_terminals: 0,
            violations: 0,
            certain_violations: 0,
            out_of_order: 0,
        }
    }

    #[test]
    fn a_figure_over_repeats_is_shown_as_its_range() {
        assert_eq!(range(&[2.0, 2.04], 1), "2.0");
        assert_eq!(range(&[7.1, 5.7, 6.0], 1), "5.7–7.1");
        assert_eq!(range(&[], 1), "-");
    }

    #[test]
    fn the_table_puts_node_first_and_gives_the_memory_per_added_connection() {
        let runs = [
            run(Peer::Hexflow, 1000, 50, 40.0),
            run(Peer::Node, 1000, 100, 7.0),
            run(Peer::Node, 1000, 100, 5.0),
            run(Peer::Hexflow, 5000, 150, 300.0),
            run(Peer::Node, 5000, 160, 50.0),
        ];
        let table = side_by_side(&runs);
        assert!(table.starts_with("| | node | hexflow |"), "Node's column comes first:\n{table}");
        assert!(table.contains("| 1.0 / 2.0 / 5.0–7.0 / 5.0–7.0 | 1.0 / 2.0 / 40.0 / 40.0 |"), "{table}");
        // (150 − 50) MiB over 4000 connections = 25.6 KiB; Node (160 − 100) MiB = 15.4 KiB.
        assert!(table.contains("/ 4000, KiB | 15.4 | 25.6 |"), "{table}");
        assert!(table.contains("**C=5000, S=500**"), "{table}");
    }
}

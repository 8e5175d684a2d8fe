//! `bench realtime`: the fan-out of progress events from NATS through a Socket.IO server to many
//! socket.io-client connections: the release `hexflow realtime-gateway`, its Node.js peer
//! (`bench/node-peer/server.mjs`, a plain socket.io 4 server with the same rooms, throttle and
//! snapshots), or both, interleaved and repeated under the same load.
//!
//! The bench starts nats-server and PostgreSQL once. Each run then inserts S fresh imports owned
//! by `anonymous` of tenant `default` (so joins are authorized in open mode), publishes a `queued`
//! snapshot per session, starts the server under test, and spawns the Node load client
//! (`bench/realtime-load.mjs`, split over several processes for many connections), which opens C
//! websocket connections spread over the S rooms and records every event it receives. It then
//! publishes progress events round-robin over the sessions at R per second for D seconds (core
//! NATS publish, captured by the progress stream, as the worker's intermediate events are), one
//! `completed` event per session after them, waits (bounded) for the clients, and analyses their
//! records ([`crate::realtime_report`]). With several runs (`--peer both`, `--repeat`, `--size`)
//! it ends with the side-by-side table of every run's figures.

use std::{
    future::IntoFuture,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use shared::{
    Nats, Phase, ProgressEvent, Status,
    auth::Claims,
    config::NatsConfig,
    events::{Metadata, Summary},
    names,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::{Child, ChildStdin, Command},
    sync::mpsc,
};
use uuid::Uuid;

use crate::{
    realtime_report::{self, Cpu, Figures, Inputs, Record},
    rss,
    stack::{Service, Stack},
};

/// Clients per Node process when `--client-procs` is not given.
const CLIENTS_PER_PROC: u32 = 2_500;
/// Longest wait for every client to connect and join.
const READY_LIMIT: Duration = Duration::from_secs(300);
/// Longest wait for the clients to write their records after `finish`.
const DONE_LIMIT: Duration = Duration::from_secs(120);

/// Which Socket.IO server the clients connect to.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerChoice {
    /// The release `hexflow realtime-gateway`.
    Hexflow,
    /// The Node.js socket.io peer (`bench/node-peer/server.mjs`).
    Node,
    /// Both, interleaved (Node first, then hexflow; the order alternates on every repeat).
    Both,
}

/// One server under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// The release `hexflow realtime-gateway`.
    Hexflow,
    /// The Node.js socket.io peer.
    Node,
}

impl Peer {
    /// The name in reports and log files.
    pub fn name(self) -> &'static str {
        match self {
            Peer::Hexflow => "hexflow",
            Peer::Node => "node",
        }
    }
}

/// Arguments of `bench realtime`.
#[derive(clap::Args, Debug, Clone)]
pub struct RealtimeArgs {
    /// Socket.IO connections; each joins one progress room.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub clients: u32,
    /// Sessions (imports, hence rooms); client i joins session i mod S.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub sessions: u32,
    /// Progress events published per second, round-robin over the sessions.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate: u32,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub duration: u64,
    /// Node processes the clients are spread over [default: one per 2,500 clients].
    #[arg(long = "client-procs", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub client_procs: Option<u32>,
    /// Server processes (gateway replicas, or Node peers) the load processes are spread over,
    /// as behind a load balancer: more sockets than one process may open files for. Memory and
    /// CPU figures are their sums.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub replicas: u32,
    /// Connections each Node process opens (and joins) at once while ramping up.
    #[arg(long = "connect-concurrency", default_value_t = 200)]
    pub connect_concurrency: u32,
    /// `HEXFLOW_PROGRESS_MIN_INTERVAL_MS` of the gateway: the throttle interval checked.
    #[arg(long = "min-interval-ms", default_value_t = 100)]
    pub min_interval_ms: u64,
    /// Two `progress-update`s of a session at one client closer than the interval minus this
    /// many ms are a throttle violation.
    #[arg(long = "tolerance-ms", default_value_t = 5.0)]
    pub tolerance_ms: f64,
    /// Longest wait for every client's terminal event after the last publish, in seconds.
    #[arg(long = "settle-secs", default_value_t = 15)]
    pub settle_secs: u64,
    /// An extra environment variable of the gateway, as `NAME=VALUE` (e.g. a raised limit);
    /// repeatable. The report lists them.
    #[arg(long = "gateway-env", value_name = "NAME=VALUE", value_parser = parse_env)]
    pub gateway_env: Vec<(String, String)>,
    /// Diagnosis: multi-user mode (a JWT secret on the gateway) with one user and tenant per
    /// session, so each completed import's `data-updated` reaches only its own session's sockets
    /// instead of every socket (in open mode all sockets share the tenant `default`).
    #[arg(long = "tenant-per-session")]
    pub tenant_per_session: bool,
    /// The server(s) under test.
    #[arg(long, value_enum, default_value = "hexflow")]
    pub peer: PeerChoice,
    /// Runs of each server at each size (interleaved with the other server's).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub repeat: u32,
    /// A size to run, as `CLIENTSxSESSIONS` (e.g. `1000x100`); repeatable, replaces `--clients`
    /// and `--sessions`. Two sizes give the memory per added connection.
    #[arg(long = "size", value_name = "CxS", value_parser = parse_size)]
    pub sizes: Vec<(u32, u32)>,
    /// The Node.js peer server [default: `bench/node-peer/server.mjs` of this source tree].
    #[arg(long = "node-peer")]
    pub node_peer: Option<PathBuf>,
    /// Print every run's full report even when there are several runs.
    #[arg(long)]
    pub verbose: bool,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    pub json: bool,
    /// Where the run's directory (data, logs, client records) is created.
    #[arg(long = "work-dir", default_value = "/tmp/hexflow-bench")]
    pub work_dir: PathBuf,
    /// The `hexflow` binary [default: next to this one].
    #[arg(long)]
    pub hexflow: Option<PathBuf>,
    /// The Node.js binary.
    #[arg(long, default_value = "node")]
    pub node: PathBuf,
    /// The load client [default: `bench/realtime-load.mjs` of this source tree].
    #[arg(long)]
    pub client: Option<PathBuf>,
}

/// Runs the benchmark and prints the report(s); every child is stopped on the way out.
pub async fn run(args: RealtimeArgs) -> anyhow::Result<()> {
    let hexflow = match &args.hexflow {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.parent().context("the bench binary has no directory")?.join("hexflow"),
    };
    if !hexflow.is_file() {
        bail!("{} not found; build it with `cargo build --release -p hexflow -p bench`", hexflow.display());
    }
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = args.client.clone().unwrap_or_else(|| here.join("realtime-load.mjs"));
    if !script.is_file() {
        bail!("the load client {} is missing", script.display());
    }
    let node_peer = args.node_peer.clone().unwrap_or_else(|| here.join("node-peer/server.mjs"));
    let peers = match args.peer {
        PeerChoice::Hexflow => vec![Peer::Hexflow],
        PeerChoice::Node => vec![Peer::Node],
        PeerChoice::Both => vec![Peer::Node, Peer::Hexflow],
    };
    if peers.contains(&Peer::Node) {
        if !node_peer.is_file() {
            bail!("the Node peer {} is missing", node_peer.display());
        }
        if args.tenant_per_session {
            bail!("--tenant-per-session needs authentication, which the Node peer does not do; use --peer hexflow");
        }
    }
    let sizes = if args.sizes.is_empty() { vec![(args.clients, args.sessions)] } else { args.sizes.clone() };
    let most = sizes.iter().map(|(clients, _)| *clients).max().unwrap_or(args.clients);
    let fds = lift_open_files(most.div_ceil(args.replicas))?;
    eprintln!("open-file limit of the servers and clients: {fds}");
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
    let dir = args.work_dir.join(format!("realtime-{stamp}"));
    let (data, logs) = (dir.join("data"), dir.join("logs"));

    eprintln!("starting nats-server and PostgreSQL under {}", data.display());
    let stack = Stack::start(hexflow, &data, logs.clone()).await?;
    eprintln!("logs and client records: {}", logs.display());
    let database = "hexflow_realtime";
    stack.create_database(database, &[]).await?;
    let nats_config = NatsConfig::at(&stack.nats.url);
    let nats = Nats::connect(&nats_config, "hexflow-bench-realtime").await?;
    nats.provision(&nats_config).await?;
    let bench = Bench { stack: &stack, nats: &nats, database, dir: &dir, script: &script, node_peer: &node_peer };

    let runs = sizes.len() * args.repeat as usize * peers.len();
    let mut figures = Vec::new();
    let mut reports = Vec::new();
    for &(clients, sessions) in &sizes {
        let sized = RealtimeArgs { clients, sessions, ..args.clone() };
        for repeat in 0..args.repeat {
            // Interleaved: the order alternates, so neither server always runs on a warmer machine.
            let order: Vec<Peer> = if repeat % 2 == 0 { peers.clone() } else { peers.iter().rev().copied().collect() };
            for peer in order {
                let label = format!("{}-c{clients}-s{sessions}-r{}", peer.name(), repeat + 1);
                eprintln!("== run {} of {runs}: {label}", figures.len() + 1);
                let (figure, json) = bench.run_once(&sized, peer, &label, runs == 1 || args.verbose).await?;
                eprintln!("   {}", figure.one_line());
                figures.push(figure);
                reports.push(json);
            }
        }
    }
    if args.json {
        let out = if runs == 1 {
            reports.pop().unwrap_or_default()
        } else {
            json!({ "runs": reports, "table": realtime_report::side_by_side(&figures) })
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if runs > 1 {
        println!("{}", realtime_report::side_by_side(&figures));
        println!("logs and records: {}", logs.display());
    }

    let pg_log = data.join("postgres/server.log");
    if pg_log.exists() {
        let _ = std::fs::copy(&pg_log, logs.join("postgres.log"));
    }
    drop(nats);
    drop(stack);
    std::fs::remove_dir_all(&data).with_context(|| format!("removing {}", data.display()))?;
    Ok(())
}

/// File descriptors a server process needs for `clients` sockets: the gateway keeps an eighth of its
/// limit for everything but client connections (`shared::open_files::connection_cap`), and some
/// more go to its listeners, NATS, PostgreSQL and logs.
fn open_files_for(clients: u32) -> u64 {
    u64::from(clients) * 8 / 7 + 2_048
}

/// Lifts this process's open-file limit, soft and hard, to what `clients` sockets in one server
/// process need, so the servers and load clients it starts inherit it. A limit already high
/// enough is left alone; raising the hard limit needs `CAP_SYS_RESOURCE`, and without it the
/// error says what to do instead. Returns the soft limit the children get.
fn lift_open_files(clients: u32) -> anyhow::Result<u64> {
    let need = open_files_for(clients);
    let (soft, hard) = rlimit::Resource::NOFILE.get().context("reading the open-file limit")?;
    if soft >= need {
        return Ok(soft);
    }
    let target = need.max(soft);
    let hard = hard.max(target);
    match rlimit::Resource::NOFILE.set(target, hard) {
        Ok(()) => Ok(target),
        Err(err) => bail!(
            "{clients} sockets in one server need an open-file limit of {need}, but this process has a hard \
             limit of {} and could not raise it ({err}); raise it first (`ulimit -Hn {need}; ulimit -n {need}` \
             as root) or spread the sockets over more servers (`--replicas`)",
            rlimit::Resource::NOFILE.get().map(|(_, hard)| hard).unwrap_or_default()
        ),
    }
}

/// What every run shares: NATS and PostgreSQL, and where things are.
struct Bench<'a> {
    stack: &'a Stack,
    nats: &'a Nats,
    database: &'a str,
    dir: &'a Path,
    script: &'a Path,
    node_peer: &'a Path,
}

/// The server of one run; stopped when dropped.
enum Server {
    Hexflow(Service),
    Node(NodePeer),
}

impl Server {
    fn pid(&self) -> u32 {
        match self {
            Server::Hexflow(service) => service.pid(),
            Server::Node(node) => node.child.id().unwrap_or_default(),
        }
    }

    fn port(&self) -> u16 {
        match self {
            Server::Hexflow(service) => service.port,
            Server::Node(node) => node.port,
        }
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        match self {
            Server::Hexflow(service) => service.check_alive(),
            Server::Node(node) => match node.child.try_wait()? {
                Some(status) => bail!("the Node peer exited ({status}); see {}", node.log.display()),
                None => Ok(()),
            },
        }
    }

    /// The gateway's own counters (the Node peer has none).
    async fn metrics(&self, http: &reqwest::Client) -> Vec<(String, f64)> {
        match self {
            Server::Hexflow(service) => gateway_metrics(http, service.ops_port).await,
            Server::Node(_) => Vec::new(),
        }
    }
}

/// The Node.js peer server process; killed when dropped.
struct NodePeer {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl NodePeer {
    /// Starts it against the bench's NATS and waits for its `ready` line.
    async fn start(args: &RealtimeArgs, server: &Path, nats_url: &str, log: PathBuf) -> anyhow::Result<NodePeer> {
        let stderr = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut child = Command::new(&args.node)
            .arg(server)
            .args(["--port", "0", "--nats", nats_url, "--min-interval-ms", &args.min_interval_ms.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} {}", args.node.display(), server.display()))?;
        let stdout = child.stdout.take().context("the Node peer has no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .with_context(|| format!("the Node peer did not say `ready` within 30 s; see {}", log.display()))??
            .with_context(|| format!("the Node peer exited before `ready`; see {}", log.display()))?;
        let port = serde_json::from_str::<Value>(&ready)
            .ok()
            .and_then(|line| line["port"].as_u64())
            .and_then(|port| u16::try_from(port).ok())
            .with_context(|| format!("the Node peer said {ready:?}; expected {{\"type\":\"ready\",\"port\":<n>}}"))?;
        Ok(NodePeer { child, port, log })
    }
}

impl Bench<'_> {
    /// One run of `peer` at `args.clients` × `args.sessions`: its figures and JSON report (the
    /// full text report is printed when `print`).
    async fn run_once(
        &self,
        args: &RealtimeArgs,
        peer: Peer,
        label: &str,
        print: bool,
    ) -> anyhow::Result<(Figures, Value)> {
        let procs = args
            .client_procs
            .unwrap_or_else(|| args.clients.div_ceil(CLIENTS_PER_PROC))
            .max(args.replicas)
            .min(args.clients);
        let logs = self.dir.join("logs").join(label);
        std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
        let http = reqwest::Client::builder().build()?;
        let sessions: Vec<Uuid> = (0..args.sessions).map(|_| Uuid::now_v7()).collect();
        // Open mode: every socket is `anonymous` of tenant `default`; or one user and tenant each.
        let secret = args.tenant_per_session.then(|| format!("bench-secret-{}", Uuid::new_v4()));
        let owners: Vec<(String, String)> = (0..sessions.len())
            .map(|i| match secret {
                Some(_) => (format!("bench-user-{i}"), format!("bench-tenant-{i}")),
                None => ("anonymous".to_owned(), "default".to_owned()),
            })
            .collect();
        insert_imports(&self.stack.pg.url(self.database), &sessions, &owners).await?;
        let nats = self.nats;
        for id in &sessions {
            nats.publish_progress(&template(*id, 1, Status::Queued, Phase::Queued), None, true).await?;
        }

        let mut gateway_env = Vec::new();
        if peer == Peer::Hexflow {
            gateway_env.push(("HEXFLOW_PROGRESS_MIN_INTERVAL_MS".to_owned(), args.min_interval_ms.to_string()));
            if let Some(secret) = &secret {
                gateway_env.push(("HEXFLOW_AUTH_SECRET".to_owned(), secret.clone()));
            }
            gateway_env.extend(args.gateway_env.iter().cloned());
        }
        let mut servers = Vec::new();
        for replica in 0..args.replicas {
            let name = if args.replicas == 1 { label.to_owned() } else { format!("{label}-replica{}", replica + 1) };
            servers.push(match peer {
                Peer::Hexflow => {
                    let mut gateway = self.stack.start_realtime_gateway(self.database, &name, &gateway_env)?;
                    gateway.wait_ready(&http).await?;
                    Server::Hexflow(gateway)
                }
                Peer::Node => {
                    let log = logs.join(format!("{name}-node-peer.log"));
                    Server::Node(NodePeer::start(args, self.node_peer, &self.stack.nats.url, log).await?)
                }
            });
        }
        let server_pids: Vec<u32> = servers.iter().map(Server::pid).collect();
        let idle_rss = rss_sum(&server_pids);
        let sampler = rss::Sampler::start(server_pids.clone());
        let ports: Vec<String> = servers.iter().map(|s| s.port().to_string()).collect();
        eprintln!(
            "{} ready on port(s) {} ({:.1} MiB resident)",
            peer.name(),
            ports.join(", "),
            idle_rss as f64 / 1024.0
        );

        // The clients.
        let sessions_file = logs.join("sessions.json");
        let entries: Vec<Value> = sessions
            .iter()
            .zip(&owners)
            .map(|(id, (user, tenant))| {
                let token = secret.as_deref().map(|secret| {
                    let claims = Claims {
                        sub: user.clone(),
                        tenant: Some(tenant.clone()),
                        role: None,
                        exp: Some(shared::events::now_ms() / 1000 + 24 * 3600),
                        ..Claims::default()
                    };
                    shared::auth::issue(secret, &claims)
                });
                json!({ "id": id, "token": token })
            })
            .collect();
        std::fs::write(&sessions_file, serde_json::to_vec(&entries)?)?;
        let urls: Vec<String> = servers.iter().map(|s| format!("http://127.0.0.1:{}", s.port())).collect();
        let mut loads = Vec::new();
        let per = args.clients.div_ceil(procs);
        for i in 0..procs {
            let first = i * per;
            let count = per.min(args.clients - first);
            if count == 0 {
                break;
            }
            // Load process i talks to server i mod R, as a load balancer would spread them.
            let url = &urls[i as usize % urls.len()];
            let spec = LoadSpec { url, sessions_file: &sessions_file, first, count, index: i, logs: &logs };
            loads.push(LoadProc::spawn(args, self.script, spec)?);
        }
        eprintln!(
            "{} clients over {} sessions in {} Node process(es); connecting",
            args.clients,
            args.sessions,
            loads.len()
        );
        let connect_started = Instant::now();
        let deadline = tokio::time::Instant::now() + READY_LIMIT;
        let mut ready = Vec::new();
        for load in &mut loads {
            ready.push(load.expect("ready", deadline).await?);
        }
        let connect_secs = connect_started.elapsed().as_secs_f64();
        check_alive(&mut servers)?;
        let connected_rss = rss_sum(&server_pids);
        let joined: u64 = ready.iter().map(|r| r["joined"].as_u64().unwrap_or_default()).sum();
        eprintln!(
            "{joined} of {} clients joined in {connect_secs:.1}s; {} {:.1} MiB resident; publishing {} events/s for {} s",
            args.clients,
            peer.name(),
            connected_rss as f64 / 1024.0,
            args.rate,
            args.duration
        );
        // Let the join traffic drain before the clock starts.
        tokio::time::sleep(Duration::from_secs(1)).await;

        // Publishing.
        let nats_pid = nats_server_pid(self.stack.nats.port);
        let watched: Vec<u32> =
            server_pids.iter().copied().chain(nats_pid).chain(loads.iter().filter_map(|l| l.child.id())).collect();
        let cpu_before = realtime_report::cpu_ticks(&watched);
        for load in &mut loads {
            load.send("start").await?;
        }
        let published = publish(nats, &sessions, args.rate, args.duration).await?;
        eprintln!(
            "published {} progress events and {} terminal events in {:.2}s; waiting for the clients",
            published.progress,
            sessions.len(),
            published.secs
        );

        // Every client's terminal event, or the settle limit.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(args.settle_secs);
        let mut settled = true;
        for load in &mut loads {
            if load.expect("terminal", deadline).await.is_err() {
                settled = false;
            }
        }
        let cpu_after = realtime_report::cpu_ticks(&watched);
        let cpu_secs = published.started.elapsed().as_secs_f64();
        check_alive(&mut servers)?;
        let mut metrics = Vec::new();
        for (replica, server) in servers.iter().enumerate() {
            let prefix = if servers.len() == 1 { String::new() } else { format!("replica{}:", replica + 1) };
            metrics.extend(
                server.metrics(&http).await.into_iter().map(|(name, value)| (format!("{prefix}{name}"), value)),
            );
        }

        // The records.
        let deadline = tokio::time::Instant::now() + DONE_LIMIT;
        let mut done = Vec::new();
        let mut records: Vec<Record> = Vec::new();
        for load in &mut loads {
            load.send("finish").await?;
            done.push(load.expect("done", deadline).await?);
            records.extend(realtime_report::read_records(&load.out)?);
        }
        let peak = rss::Peak::sum(&sampler.finish().await?);
        drop(loads);
        // A stopping gateway waits for its sockets; off the runtime's threads.
        tokio::task::spawn_blocking(move || drop(servers)).await?;

        let cpu = Cpu::between(&cpu_before, &cpu_after, cpu_secs, &server_pids, nats_pid);
        let inputs = Inputs {
            args,
            peer,
            procs,
            sessions: &sessions,
            published,
            ready,
            done,
            connect_secs,
            settled,
            idle_rss_kib: idle_rss,
            connected_rss_kib: connected_rss,
            peak,
            cpu,
            metrics,
            gateway_env,
            logs,
            load_average: crate::import::load_average(),
        };
        let report = realtime_report::analyse(inputs, records);
        if print && !args.json {
            report.print();
        }
        Ok((report.figures(), report.to_json()))
    }
}

/// Resident memory of the server processes together, KiB.
fn rss_sum(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|pid| rss::now(*pid)).map(|(rss, _)| rss).sum()
}

/// Fails when a server process has exited.
fn check_alive(servers: &mut [Server]) -> anyhow::Result<()> {
    servers.iter_mut().try_for_each(Server::check_alive)
}

/// The S imports the sessions stand for, in progress, owned by the open-mode user.
async fn insert_imports(url: &str, sessions: &[Uuid], owners: &[(String, String)]) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await?;
    sqlx::query(
        "INSERT INTO imports (id, owner, tenant, filename, format, scanner, scan_date, object_key, size_bytes,
                              sha256, status, phase, attempts, started_at)
         SELECT id, owner, tenant, 'bench.csv', 'nessus', 'nessus', now(), id::text, 0, '',
                'processing', 'loading', 1, now()
         FROM unnest($1::uuid[], $2::text[], $3::text[]) AS t(id, owner, tenant)",
    )
    .bind(sessions)
    .bind(owners.iter().map(|(owner, _)| owner.clone()).collect::<Vec<_>>())
    .bind(owners.iter().map(|(_, tenant)| tenant.clone()).collect::<Vec<_>>())
    .execute(&mut conn)
    .await
    .context("inserting the imports")?;
    Ok(())
}

/// A progress event of the benchmark's shape, timestamped now (ms in `timestamp`, and to the µs
/// in `message` as `bench <ms since the epoch>`).
fn template(id: Uuid, seq: u64, status: Status, phase: Phase) -> ProgressEvent {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64() * 1000.0).unwrap_or_default();
    ProgressEvent {
        message: format!("bench {now:.3}"),
        total_bytes: 1 << 30,
        attempt: 1,
        timestamp: now.floor() as i64,
        ..ProgressEvent::new(id, seq, status, phase, Metadata::new("bench.csv", "nessus", "2026-01-01T00:00:00Z", 2))
    }
}

/// What the publisher did.
#[derive(Debug, Clone, Copy)]
pub struct Published {
    /// Progress (non-terminal) events sent.
    pub progress: u64,
    /// Terminal events sent (one per session).
    pub terminal: u64,
    /// When publishing started.
    pub started: Instant,
    /// ms since the epoch when publishing started (earlier timestamps are snapshots).
    pub started_ms: i64,
    /// Seconds from the first progress event to the last terminal one.
    pub secs: f64,
    /// Largest delay of a publish behind its schedule, in ms.
    pub max_lag_ms: f64,
}

/// Publishes `rate × duration` progress events round-robin over the sessions, paced to the
/// schedule, then one `completed` event per session at the same pace (through JetStream, acked,
/// as the worker publishes terminal events).
async fn publish(nats: &Nats, sessions: &[Uuid], rate: u32, duration: u64) -> anyhow::Result<Published> {
    let total = u64::from(rate) * duration;
    let per_session = total.div_ceil(sessions.len() as u64).max(1);
    let started = Instant::now();
    let started_ms = shared::events::now_ms();
    let due = |k: u64| started + Duration::from_secs_f64(k as f64 / f64::from(rate));
    let mut seqs = vec![1u64; sessions.len()];
    let mut acks = Vec::with_capacity(sessions.len());
    let mut max_lag = Duration::ZERO;
    let mut k = 0u64;
    let end = total + sessions.len() as u64;
    while k < end {
        let at = due(k);
        tokio::time::sleep_until(at.into()).await;
        let now = Instant::now();
        max_lag = max_lag.max(now.saturating_duration_since(at));
        while k < end && due(k) <= now {
            let i = (k % sessions.len() as u64) as usize;
            seqs[i] += 1;
            if k < total {
                let n = seqs[i] - 1;
                let mut event = template(sessions[i], seqs[i], Status::Processing, Phase::Loading);
                event.progress = Phase::Loading.overall(n as f64 / per_session as f64);
                event.processed_rows = n * 1000;
                event.bytes_processed = n * 100_000;
                event.rows_per_second = 100_000.0;
                nats.publish_progress(&event, None, false).await?;
            } else {
                let n = seqs[i] - 2;
                let mut event = template(sessions[i], seqs[i], Status::Completed, Phase::Complete);
                event.progress = 100.0;
                event.processed_rows = n * 1000;
                event.total_rows = Some(n * 1000);
                event.summary = Some(Summary { new: n * 1000, rows: n * 1000, ..Summary::default() });
                let payload = serde_json::to_vec(&event)?;
                acks.push(nats.js.publish(names::progress_subject(sessions[i]), payload.into()).await?);
            }
            k += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    nats.client.flush().await?;
    tokio::time::timeout(
        Duration::from_secs(30),
        futures::future::try_join_all(acks.into_iter().map(IntoFuture::into_future)),
    )
    .await
    .context("JetStream did not confirm the terminal events within 30 s")??;
    Ok(Published {
        progress: total,
        terminal: sessions.len() as u64,
        started,
        started_ms,
        secs,
        max_lag_ms: max_lag.as_secs_f64() * 1000.0,
    })
}

/// Where one Node process connects and which clients it runs.
struct LoadSpec<'a> {
    url: &'a str,
    sessions_file: &'a Path,
    first: u32,
    count: u32,
    index: u32,
    logs: &'a Path,
}

/// One Node load-client process; killed when dropped.
struct LoadProc {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<Value>,
    out: PathBuf,
    log: PathBuf,
}

impl LoadProc {
    fn spawn(args: &RealtimeArgs, script: &Path, spec: LoadSpec<'_>) -> anyhow::Result<LoadProc> {
        let out = spec.logs.join(format!("records-{}.csv", spec.index));
        let log = spec.logs.join(format!("load-{}.log", spec.index));
        let stderr = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut child = Command::new(&args.node)
            .arg(script)
            .args(["--url", spec.url, "--sessions-file"])
            .arg(spec.sessions_file)
            .args(["--first", &spec.first.to_string(), "--count", &spec.count.to_string()])
            .args(["--concurrency", &args.connect_concurrency.to_string(), "--out"])
            .arg(&out)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} {}", args.node.display(), script.display()))?;
        let stdin = child.stdin.take().context("the load client has no stdin")?;
        let stdout = child.stdout.take().context("the load client has no stdout")?;
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if let Ok(value) = serde_json::from_str::<Value>(&line)
                    && tx.send(value).is_err()
                {
                    return;
                }
            }
        });
        Ok(LoadProc { child, stdin, lines, out, log })
    }

    /// Sends one command line.
    async fn send(&mut self, command: &str) -> anyhow::Result<()> {
        self.stdin.write_all(format!("{command}\n").as_bytes()).await?;
        self.stdin.flush().await?;
        Ok(())
    }

    /// The next line of type `kind` (others are skipped), or an error at `deadline` or exit.
    async fn expect(&mut self, kind: &str, deadline: tokio::time::Instant) -> anyhow::Result<Value> {
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) if line["type"] == kind => return Ok(line),
                Ok(Some(_)) => {}
                Ok(None) => bail!("the load client exited before `{kind}`; see {}", self.log.display()),
                Err(_) => bail!("no `{kind}` from the load client in time; see {}", self.log.display()),
            }
        }
    }
}

/// The pid of the nats-server listening on `port` (for its CPU time), found in `/proc`.
fn nats_server_pid(port: u16) -> Option<u32> {
    let port = port.to_string();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_nats = args.first().is_some_and(|a| a.ends_with(b"nats-server"));
        let on_port = args.windows(2).any(|w| w[0] == b"-p" && w[1] == port.as_bytes());
        (is_nats && on_port).then_some(pid)
    })
}

/// The gateway's own counters from `/metrics` (name → value), empty if it does not answer.
async fn gateway_metrics(http: &reqwest::Client, port: u16) -> Vec<(String, f64)> {
    let Ok(response) =
        http.get(format!("http://127.0.0.1:{port}/metrics")).timeout(Duration::from_secs(5)).send().await
    else {
        return Vec::new();
    };
    let text = response.text().await.unwrap_or_default();
    let mut metrics: Vec<(String, f64)> = text
        .lines()
        .filter(|l| l.starts_with("hexflow_realtime_") && !l.contains("_bucket"))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect();
    // Where the time goes: publish → room emit inside the gateway, as bucket bounds.
    let buckets: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("hexflow_realtime_publish_to_emit_seconds_bucket{le=\""))
        .filter_map(|l| {
            let (le, rest) = l.split_once("\"}")?;
            Some((le.parse().ok()?, rest.trim().parse().ok()?))
        })
        .collect();
    if let Some(&(_, total)) = buckets.last()
        && total > 0.0
    {
        for (name, q) in [("p50", 0.5), ("p99", 0.99)] {
            if let Some(&(le, _)) = buckets.iter().find(|(_, n)| *n >= q * total) {
                metrics.push((format!("hexflow_realtime_emit_delay_{name}_at_most_ms"), le * 1000.0));
            }
        }
    }
    metrics
}

fn parse_env(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((name, value)) if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
            Ok((name.to_owned(), value.to_owned()))
        }
        _ => Err(format!("{raw:?} is not NAME=VALUE (e.g. HEXFLOW_SOCKET_RATE_BURST=100)")),
    }
}

fn parse_size(raw: &str) -> Result<(u32, u32), String> {
    let parsed = raw.split_once('x').and_then(|(c, s)| Some((c.parse::<u32>().ok()?, s.parse::<u32>().ok()?)));
    match parsed {
        Some((clients, sessions)) if clients > 0 && sessions > 0 => Ok((clients, sessions)),
        _ => Err(format!("{raw:?} is not CLIENTSxSESSIONS (e.g. 5000x500)")),
    }
}

#[cfg(test)]
mod tests {
    use super::{open_files_for, parse_size};

    #[test]
    fn the_open_file_limit_leaves_the_gateway_room_for_every_client() {
        for clients in [1, 1_000, 5_000, 20_000, 100_000] {
            let cap = shared::open_files::connection_cap(open_files_for(clients));
            assert!(u64::from(cap) >= u64::from(clients).min(65_536), "{clients} clients, cap {cap}");
        }
    }

    #[test]
    fn a_size_is_clients_x_sessions() {
        assert_eq!(parse_size("5000x500"), Ok((5000, 500)));
        assert!(parse_size("5000").unwrap_err().contains("CLIENTSxSESSIONS"));
        assert!(parse_size("0x5").is_err(), "no clients is no run");
        assert!(parse_size("10xten").is_err());
    }
}

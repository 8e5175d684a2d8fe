//! Infrastructure `hexflow dev` (and the test suite) start as child processes when none is
//! configured: `nats-server -js` and a PostgreSQL cluster of their own. Each is stopped when its
//! handle is dropped, and by the kernel when hexflow dies without dropping it (even by SIGKILL).
//!
//! # How children are tied to hexflow
//!
//! Every child runs under util-linux `setpriv --pdeathsig`, so the kernel sends it a signal when
//! its parent dies: SIGTERM to nats-server and SIGINT to the postmaster, the signals of their
//! clean shutdowns. The postmaster is therefore our direct child (`postgres -D`, not `pg_ctl
//! start`, which would hand it to init). The kernel sends the signal when the *thread* that
//! forked the child exits, not the process, and callers may be on threads that end early (tokio
//! retires idle blocking threads), so children are forked by one thread that lives as long as the
//! process (`spawn_for_life`).
//!
//! Each child also gets a process group of its own, so a terminal's Ctrl-C reaches hexflow alone,
//! which stops its services first and its infrastructure last.
//!
//! A crash can still leave a `postmaster.pid` behind that names a PID reused by another process;
//! PostgreSQL would refuse to start on it, so [`EmbeddedPostgres::start`] removes it. nats-server
//! (2.9 and 2.15) keeps no lock in its store: after SIGKILL the next start on the same `-sd`
//! recovers by itself, and nothing stops a second server from sharing the store, so
//! [`EmbeddedNats::start`] waits for one still running there (and gives up naming it).

use std::{
    ffi::OsStr,
    fs,
    io::{self, Read},
    net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream},
    os::unix::{ffi::OsStrExt, fs::MetadataExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::{Mutex, PoisonError, mpsc},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

/// A port on 127.0.0.1: `preferred` when it is free, else one the OS picks.
pub fn free_port(preferred: Option<u16>) -> u16 {
    if let Some(port) = preferred
        && TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).is_ok()
    {
        return port;
    }
    TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("the OS always has a free loopback port")
}

/// Finds a program on PATH or in the given extra directories.
pub fn find_program(name: &str, extra_dirs: &[PathBuf]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).chain(extra_dirs.iter().cloned()).map(|d| d.join(name)).find(|p| p.is_file())
}

/// `program` under `setpriv`: sent `on_parent_death` when hexflow dies, as `user` when given.
fn supervised(program: &Path, on_parent_death: &str, user: Option<&str>) -> anyhow::Result<Command> {
    let setpriv = find_program("setpriv", &[PathBuf::from("/usr/bin"), PathBuf::from("/bin")]).context(
        "setpriv not found: it stops nats-server and PostgreSQL when hexflow dies; install util-linux (apt-get install util-linux)",
    )?;
    let mut cmd = Command::new(setpriv);
    if let Some(user) = user {
        // setpriv changes user itself (runuser would fork, and the signal would go to runuser).
        cmd.args(["--reuid", user, "--regid", user, "--init-groups"]);
    }
    cmd.args(["--pdeathsig", on_parent_death, "--"]).arg(program).process_group(0).stdin(Stdio::null());
    Ok(cmd)
}

/// Starts `cmd` from a thread that lives as long as the process, so that a parent-death signal
/// means "hexflow died", not "the calling thread ended".
fn spawn_for_life(cmd: Command) -> io::Result<Child> {
    type Request = (Command, mpsc::Sender<io::Result<Child>>);
    static SPAWNER: Mutex<Option<mpsc::Sender<Request>>> = Mutex::new(None);
    let gone = || io::Error::other("the thread that starts child processes is gone");
    let spawner = {
        let mut spawner = SPAWNER.lock().unwrap_or_else(PoisonError::into_inner);
        if spawner.is_none() {
            let (requests, incoming) = mpsc::channel::<Request>();
            std::thread::Builder::new().name("hexflow-spawner".into()).spawn(move || {
                for (mut cmd, reply) in incoming {
                    let _ = reply.send(cmd.spawn());
                }
            })?;
            *spawner = Some(requests);
        }
        spawner.clone().ok_or_else(gone)?
    };
    let (reply, answer) = mpsc::channel();
    spawner.send((cmd, reply)).map_err(|_| gone())?;
    answer.recv().map_err(|_| gone())?
}

/// Polls until `ready` holds, failing early when the child exits.
fn wait_until(child: &mut Child, limit: Duration, what: &str, mut ready: impl FnMut() -> bool) -> anyhow::Result<()> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited during start ({status})");
        }
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    bail!("{what} was not ready within {limit:?}")
}

fn exit_within(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(None) if started.elapsed() < limit => std::thread::sleep(Duration::from_millis(20)),
            Ok(status) => return status,
            Err(_) => return None,
        }
    }
}

/// Sends `signal` (a `kill` name: TERM, INT), then SIGKILL after `grace`, and reaps the child.
fn stop_child(child: &mut Child, signal: &str, grace: Duration) {
    // Not reaped yet, so the PID still names our child.
    if let Ok(None) = child.try_wait() {
        let _ = Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status();
        if exit_within(child, grace).is_none() {
            let _ = child.kill();
        }
    }
    let _ = child.wait();
}

/// A `nats-server -js` child process.
pub struct EmbeddedNats {
    child: Child,
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
    /// The client port.
    pub port: u16,
    store_dir: PathBuf,
}

impl EmbeddedNats {
    /// Starts a server with JetStream storing under `store_dir`, on `port` (or a free one).
    pub fn start(store_dir: &Path, port: Option<u16>) -> anyhow::Result<EmbeddedNats> {
        fs::create_dir_all(store_dir).with_context(|| format!("creating {}", store_dir.display()))?;
        let store_dir = store_dir.canonicalize()?;
        wait_for_store(&store_dir)?;
        let port = port.unwrap_or_else(|| free_port(None));
        let child = Self::spawn(&store_dir, port)?;
        let mut nats = EmbeddedNats { child, url: format!("nats://127.0.0.1:{port}"), port, store_dir };
        nats.wait_ready()?;
        Ok(nats)
    }

    fn spawn(store_dir: &Path, port: u16) -> anyhow::Result<Child> {
        let binary = find_program("nats-server", &[PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/bin")])
            .context("nats-server not found on PATH or in /usr/sbin; install it (apt-get install nats-server) or set NATS_URL")?;
        let log = fs::OpenOptions::new().create(true).append(true).open(store_dir.join("nats-server.log"))?;
        let mut cmd = supervised(&binary, "TERM", None)?;
        cmd.args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store_dir)
            .stdout(log.try_clone()?)
            .stderr(log);
        spawn_for_life(cmd).with_context(|| format!("starting {}", binary.display()))
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let port = self.port;
        let ready = wait_until(&mut self.child, Duration::from_secs(10), "nats-server", || {
            TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
        });
        if ready.is_err() {
            self.kill();
        }
        ready.with_context(|| format!("see {}", self.store_dir.join("nats-server.log").display()))
    }

    /// Stops the server at once (SIGKILL, as a crash would).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port and store (after [`kill`](Self::kill)).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.child = Self::spawn(&self.store_dir, self.port)?;
        self.wait_ready()
    }
}

impl Drop for EmbeddedNats {
    fn drop(&mut self) {
        stop_child(&mut self.child, "TERM", Duration::from_secs(5));
    }
}

/// Waits for a nats-server still running on `store_dir` (the previous run's, shutting down on its
/// parent-death signal) to exit: nats-server keeps no lock that would stop a second server from
/// sharing the store, and two would corrupt it.
fn wait_for_store(store_dir: &Path) -> anyhow::Result<()> {
    let limit = Duration::from_secs(10);
    let started = Instant::now();
    while let Some(pid) = nats_server_on(store_dir) {
        if started.elapsed() >= limit {
            bail!(
                "nats-server (PID {pid}) still runs on {} after {limit:?}: another `hexflow dev` uses this data \
                 directory, or one left it running; stop it (kill -TERM {pid}) or set another HEXFLOW_DATA_DIR",
                store_dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// A live nats-server whose `-sd` is `store_dir`.
fn nats_server_on(store_dir: &Path) -> Option<u32> {
    let mut pids = fs::read_dir("/proc").ok()?.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok());
    pids.find(|&pid| {
        let (Some(cwd), Ok(cmdline)) = (live_cwd(pid), fs::read(format!("/proc/{pid}/cmdline"))) else {
            return false;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        args.first().is_some_and(|a| a.ends_with(b"nats-server"))
            && args.windows(2).any(|w| {
                w[0] == b"-sd" && cwd.join(OsStr::from_bytes(w[1])).canonicalize().is_ok_and(|d| d == store_dir)
            })
    })
}

/// A PostgreSQL cluster of our own: the postmaster is our child process.
pub struct EmbeddedPostgres {
    postmaster: Mutex<Child>,
    /// The client port.
    pub port: u16,
}

fn postgres_bin_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs.reverse();
    dirs
}

/// The user the cluster runs as: `postgres` when we are root, since PostgreSQL refuses root.
fn cluster_owner() -> Option<&'static str> {
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0).then_some("postgres")
}

/// Runs `program` (with `args`) as the cluster owner and waits for it.
fn run_as_owner(program: &Path, args: impl FnOnce(&mut Command) -> &mut Command) -> anyhow::Result<Output> {
    let mut cmd = supervised(program, "TERM", cluster_owner())?;
    args(&mut cmd).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = spawn_for_life(cmd).with_context(|| format!("starting {}", program.display()))?;
    Ok(child.wait_with_output()?)
}

impl EmbeddedPostgres {
    /// Starts the cluster in `data_dir` (created with `initdb` the first time) on `port` (or a
    /// free one). As root, the cluster runs as the `postgres` user.
    pub fn start(data_dir: &Path, port: Option<u16>) -> anyhow::Result<EmbeddedPostgres> {
        let dirs = postgres_bin_dirs();
        let initdb = find_program("initdb", &dirs).context(
            "initdb not found on PATH or in /usr/lib/postgresql/*/bin; install postgresql or set DATABASE_URL",
        )?;
        // The server of initdb's own installation, so both are of one version.
        let postgres = Some(initdb.with_file_name("postgres"))
            .filter(|p| p.is_file())
            .or_else(|| find_program("postgres", &dirs))
            .context("postgres not found; install postgresql or set DATABASE_URL")?;
        let data_dir = Self::prepare_dir(data_dir)?;
        if !data_dir.join("PG_VERSION").exists() {
            let out = run_as_owner(&initdb, |c| {
                c.arg("-D").arg(&data_dir).args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            })?;
            if !out.status.success() {
                bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        clear_stale_postmaster_pid(&data_dir)?;
        let port = port.unwrap_or_else(|| free_port(None));
        let log_path = data_dir.join("server.log");
        let log = fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
        let mut cmd = supervised(&postgres, "INT", cluster_owner())?;
        cmd.arg("-D").arg(&data_dir).args(["-p", &port.to_string(), "-k"]).arg(&data_dir);
        for setting in ["listen_addresses=127.0.0.1", "fsync=off", "synchronous_commit=off", "full_page_writes=off"] {
            cmd.args(["-c", setting]);
        }
        cmd.stdout(log.try_clone()?).stderr(log);
        let mut child = spawn_for_life(cmd).with_context(|| format!("starting {}", postgres.display()))?;
        let pid = child.id();
        let ready = wait_until(&mut child, Duration::from_secs(60), "PostgreSQL", || {
            fs::read_to_string(data_dir.join("postmaster.pid")).is_ok_and(|t| postmaster_is_ready(&t, pid))
        });
        if let Err(err) = ready {
            stop_child(&mut child, "QUIT", Duration::from_secs(5));
            return Err(err.context(format!("see {}", log_path.display())));
        }
        Ok(EmbeddedPostgres { postmaster: Mutex::new(child), port })
    }

    /// Creates `data_dir` and hands it to the cluster owner; returns where the cluster lives.
    fn prepare_dir(data_dir: &Path) -> anyhow::Result<PathBuf> {
        fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
        let mut data_dir = data_dir.canonicalize()?;
        let Some(owner) = cluster_owner() else { return Ok(data_dir) };
        let parent = data_dir.parent().unwrap_or(&data_dir).to_owned();
        if !run_as_owner(Path::new("test"), |c| c.arg("-x").arg(&parent))?.status.success() {
            // A private parent (a 0700 home or temp dir) keeps the postgres user out: use a
            // directory of its own, named after the one asked for so reruns find it again.
            let mut hasher = std::hash::DefaultHasher::new();
            std::hash::Hash::hash(&data_dir, &mut hasher);
            let fallback =
                PathBuf::from(format!("/var/tmp/hexflow-postgres-{:016x}", std::hash::Hasher::finish(&hasher)));
            tracing::warn!(asked = %data_dir.display(), using = %fallback.display(), "the postgres user cannot reach the data directory; using another");
            fs::create_dir_all(&fallback)?;
            data_dir = fallback;
        }
        let status = Command::new("chown").arg("-R").arg(format!("{owner}:{owner}")).arg(&data_dir).status()?;
        if !status.success() {
            bail!("could not hand {} to the {owner} user", data_dir.display());
        }
        Ok(data_dir)
    }

    /// URL of a database on this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Stops the cluster (fast shutdown: sessions are rolled back, then a checkpoint).
    pub fn stop(&self) {
        let mut postmaster = self.postmaster.lock().unwrap_or_else(PoisonError::into_inner);
        stop_child(&mut postmaster, "INT", Duration::from_secs(30));
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// True when `postmaster.pid` says postmaster `pid` accepts connections (what `pg_ctl -w` reads).
fn postmaster_is_ready(pid_file: &str, pid: u32) -> bool {
    let lines: Vec<&str> = pid_file.lines().collect();
    lines.first().is_some_and(|l| l.trim() == pid.to_string()) && lines.get(7).is_some_and(|l| l.trim() == "ready")
}

/// Whom a `postmaster.pid` names.
#[derive(Debug, PartialEq)]
enum LockHolder {
    /// A live process of this cluster (its working directory is the data directory).
    Cluster(u32),
    /// Nothing that is this cluster: the file is a crash's leftover.
    Stale(String),
}

/// Judges `postmaster.pid` from its text and the working directory of the process it names
/// (`None` when no such process lives).
fn judge_postmaster_pid(text: &str, data_dir: &Path, cwd_of: impl Fn(u32) -> Option<PathBuf>) -> LockHolder {
    // A single-user backend writes its PID negated.
    let Some(pid) = text.lines().next().and_then(|l| l.trim().trim_start_matches('-').parse::<u32>().ok()) else {
        return LockHolder::Stale("it names no PID".into());
    };
    match cwd_of(pid) {
        Some(cwd) if cwd == data_dir => LockHolder::Cluster(pid),
        Some(cwd) => LockHolder::Stale(format!("PID {pid} is another process (in {})", cwd.display())),
        None => LockHolder::Stale(format!("PID {pid} is not running")),
    }
}

/// The working directory of a live (not zombie) process.
fn live_cwd(pid: u32) -> Option<PathBuf> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The state follows the parenthesised command name, which may itself hold spaces.
    let state = stat.rsplit_once(')')?.1.split_whitespace().next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // Unreadable means another user's process, which cannot be a server of ours.
    Some(fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default())
}

/// Removes a `postmaster.pid` a crash left behind. PostgreSQL itself only checks that the PID it
/// names is alive, and after a crash that PID often belongs to another process by now. A
/// postmaster of this cluster still running (a previous run's, shutting down on its parent-death
/// signal) is waited for.
fn clear_stale_postmaster_pid(data_dir: &Path) -> anyhow::Result<()> {
    let path = data_dir.join("postmaster.pid");
    let limit = Duration::from_secs(30);
    let started = Instant::now();
    let mut announced = false;
    loop {
        let mut text = String::new();
        match fs::File::open(&path) {
            Ok(mut file) => file.read_to_string(&mut text)?,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
        };
        match judge_postmaster_pid(&text, data_dir, live_cwd) {
            LockHolder::Stale(why) => {
                tracing::warn!(file = %path.display(), %why, "removing a stale postmaster.pid left by a crash");
                return fs::remove_file(&path).with_context(|| format!("removing {}", path.display()));
            }
            LockHolder::Cluster(pid) if started.elapsed() >= limit => bail!(
                "PostgreSQL (PID {pid}) still runs on {} after {limit:?}: another `hexflow dev` uses this data \
                 directory, or one left it running; stop it (kill -INT {pid}) or set another HEXFLOW_DATA_DIR",
                data_dir.display()
            ),
            LockHolder::Cluster(pid) => {
                if !std::mem::replace(&mut announced, true) {
                    tracing::info!(pid, "waiting for the PostgreSQL of a previous run to stop");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const READY: &str = "4242\n/data\n1700000000\n5432\n/data\n127.0.0.1\n  5432001  32768\nready   \n";

    #[test]
    fn a_postmaster_is_ready_when_its_pid_file_says_so() {
        assert!(postmaster_is_ready(READY, 4242));
        assert!(!postmaster_is_ready(&READY.replace("ready", "starting"), 4242));
        assert!(!postmaster_is_ready(READY, 4243), "another postmaster's file");
        assert!(!postmaster_is_ready("4242\n/data\n", 4242), "a file still being written");
    }

    #[test]
    fn a_pid_file_naming_a_process_of_the_cluster_is_kept() {
        let data = Path::new("/data");
        assert_eq!(judge_postmaster_pid(READY, data, |_| Some(data.into())), LockHolder::Cluster(4242));
        assert_eq!(judge_postmaster_pid("-4242\n", data, |_| Some(data.into())), LockHolder::Cluster(4242));
    }

    #[test]
    fn a_pid_file_naming_a_dead_or_foreign_process_or_none_is_stale() {
        let data = Path::new("/data");
        let stale = |text: &str, cwd: Option<&str>| {
            matches!(judge_postmaster_pid(text, data, |_| cwd.map(PathBuf::from)), LockHolder::Stale(_))
        };
        assert!(stale(READY, None), "dead");
        assert!(stale(READY, Some("/home/someone")), "the PID was reused");
        assert!(stale(READY, Some("")), "another user's process");
        assert!(stale("", Some("/data")), "empty");
        assert!(stale("garbage\n", Some("/data")), "unreadable");
    }
}

//! Infrastructure `hexflow dev` (and the test suite) start as child processes when none is
//! configured: `nats-server -js` and a PostgreSQL cluster of their own. Each is stopped when its
//! handle is dropped.

use std::{
    net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
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

/// Waits until something accepts connections on the port.
fn wait_for_port(port: u16, limit: Duration, what: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    bail!("{what} did not accept connections on port {port} within {limit:?}")
}

/// Finds a program on PATH or in the given extra directories.
pub fn find_program(name: &str, extra_dirs: &[PathBuf]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).chain(extra_dirs.iter().cloned()).map(|d| d.join(name)).find(|p| p.is_file())
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
        std::fs::create_dir_all(store_dir).with_context(|| format!("creating {}", store_dir.display()))?;
        let port = port.unwrap_or_else(|| free_port(None));
        let child = Self::spawn(store_dir, port)?;
        let mut nats =
            EmbeddedNats { child, url: format!("nats://127.0.0.1:{port}"), port, store_dir: store_dir.into() };
        if let Err(err) = wait_for_port(port, Duration::from_secs(10), "nats-server") {
            nats.stop();
            return Err(err);
        }
        Ok(nats)
    }

    fn spawn(store_dir: &Path, port: u16) -> anyhow::Result<Child> {
        let binary = find_program("nats-server", &[PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/bin")])
            .context("nats-server not found on PATH or in /usr/sbin; install it (apt-get install nats-server) or set NATS_URL")?;
        Command::new(&binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))
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
        wait_for_port(self.port, Duration::from_secs(10), "nats-server")
    }

    fn stop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }
}

impl Drop for EmbeddedNats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// True when the `postgres` user can reach `dir`.
fn postgres_can_enter(dir: &Path) -> bool {
    Command::new("runuser").args(["-u", "postgres", "--", "test", "-x"]).arg(dir).status().is_ok_and(|s| s.success())
}

/// A PostgreSQL cluster of our own, started with `pg_ctl`.
pub struct EmbeddedPostgres {
    data_dir: PathBuf,
    pg_ctl: PathBuf,
    as_postgres: bool,
    /// The client port.
    pub port: u16,
}

fn postgres_bin_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs.reverse();
    dirs
}

impl EmbeddedPostgres {
    /// Starts the cluster in `data_dir` (created with `initdb` the first time) on `port` (or a
    /// free one). As root, the cluster runs as the `postgres` user, since PostgreSQL refuses root.
    pub fn start(data_dir: &Path, port: Option<u16>) -> anyhow::Result<EmbeddedPostgres> {
        let dirs = postgres_bin_dirs();
        let initdb = find_program("initdb", &dirs).context(
            "initdb not found on PATH or in /usr/lib/postgresql/*/bin; install postgresql or set DATABASE_URL",
        )?;
        let pg_ctl =
            find_program("pg_ctl", &dirs).context("pg_ctl not found; install postgresql or set DATABASE_URL")?;
        let as_postgres = std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false);
        std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
        let mut data_dir = data_dir.canonicalize()?;
        if as_postgres && !postgres_can_enter(data_dir.parent().unwrap_or(&data_dir)) {
            // A private parent (a 0700 home or temp dir) keeps the postgres user out: use a
            // directory of its own, named after the one asked for so reruns find it again.
            let mut hasher = std::hash::DefaultHasher::new();
            std::hash::Hash::hash(&data_dir, &mut hasher);
            let fallback =
                PathBuf::from(format!("/var/tmp/hexflow-postgres-{:016x}", std::hash::Hasher::finish(&hasher)));
            tracing::warn!(asked = %data_dir.display(), using = %fallback.display(), "the postgres user cannot reach the data directory; using another");
            std::fs::create_dir_all(&fallback)?;
            data_dir = fallback;
        }
        if as_postgres {
            let status = Command::new("chown").arg("-R").arg("postgres:postgres").arg(&data_dir).status()?;
            if !status.success() {
                bail!("could not hand {} to the postgres user", data_dir.display());
            }
        }
        let run = |program: &Path| {
            let mut cmd = if as_postgres {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(program);
                c
            } else {
                Command::new(program)
            };
            cmd.stdin(Stdio::null());
            cmd
        };
        if !data_dir.join("PG_VERSION").exists() {
            let out = run(&initdb)
                .arg("-D")
                .arg(&data_dir)
                .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
                .output()
                .context("running initdb")?;
            if !out.status.success() {
                bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        let port = port.unwrap_or_else(|| free_port(None));
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            data_dir.display()
        );
        let out = run(&pg_ctl)
            .arg("-D")
            .arg(&data_dir)
            .args(["-o", &options, "-l"])
            .arg(data_dir.join("server.log"))
            .args(["-w", "-t", "60", "start"])
            .output()
            .context("running pg_ctl start")?;
        if !out.status.success() {
            bail!(
                "pg_ctl start failed: {}{} (see {})",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                data_dir.join("server.log").display()
            );
        }
        Ok(EmbeddedPostgres { data_dir, pg_ctl, as_postgres, port })
    }

    /// URL of a database on this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Stops the cluster (fast shutdown).
    pub fn stop(&self) {
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&self.pg_ctl);
            c
        } else {
            Command::new(&self.pg_ctl)
        };
        let _ = cmd
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-m", "fast", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

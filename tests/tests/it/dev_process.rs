//! `hexflow dev` owns the nats-server and PostgreSQL it starts: killing it, even with SIGKILL,
//! stops them, and what a crash leaves behind does not keep the next start from serving.

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use hexflow::embedded::free_port;
use hexflow_tests::stack::hexflow_binary;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_hexflow_dev_stops_its_nats_server_and_postgres_and_the_next_start_serves() {
    let dir = TempDir::new();
    let mut dev = Dev::start(&dir.0, "first");
    dev.wait_serving(Duration::from_secs(120)).await;
    let children = dev.children(&dir.0);
    let names: HashSet<String> = children.iter().map(|p| p.name.clone()).collect();
    assert!(names.contains("nats-server") && names.contains("postgres"), "children: {children:?}");

    dev.signal("KILL");
    dev.wait_exit(Duration::from_secs(5)).await;

    wait_gone(&children, &dir.0, Duration::from_secs(10)).await;
    let mut again = Dev::start(&dir.0, "second");
    again.wait_serving(Duration::from_secs(60)).await;
    let children = again.children(&dir.0);
    again.signal("TERM");
    let status = again.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "SIGTERM ends hexflow dev cleanly ({status}); log:\n{}", again.log_text());
    wait_gone(&children, &dir.0, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_postmaster_pid_naming_another_process_is_removed_and_the_next_start_serves() {
    let dir = TempDir::new();
    let mut dev = Dev::start(&dir.0, "first");
    dev.wait_serving(Duration::from_secs(120)).await;
    let pid_file = dir.0.join("data/postgres/postmaster.pid");
    let lock = std::fs::read_to_string(&pid_file).expect("the cluster lives in the data directory");
    let children = dev.children(&dir.0);

    // The machine goes down at once: everything is killed, nothing cleans up.
    for child in &children {
        let _ = Command::new("kill").args(["-KILL", &child.pid.to_string()]).status();
    }
    dev.signal("KILL");
    dev.wait_exit(Duration::from_secs(5)).await;
    wait_gone(&children, &dir.0, Duration::from_secs(10)).await;
    // After the reboot, the PID the file names belongs to some other process.
    let mut other = Command::new("sleep").arg("120").spawn().unwrap();
    let (_, rest) = lock.split_once('\n').unwrap();
    std::fs::write(&pid_file, format!("{}\n{rest}", other.id())).unwrap();
    let mut again = Dev::start(&dir.0, "second");
    again.wait_serving(Duration::from_secs(60)).await;

    assert!(again.log_text().contains("stale postmaster.pid"), "the removal is logged:\n{}", again.log_text());
    assert!(other.try_wait().unwrap().is_none(), "the other process is left alone");
    let _ = other.kill();
    let _ = other.wait();
    again.signal("TERM");
    let status = again.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}; log:\n{}", again.log_text());
}

/// A `hexflow dev` process with embedded infrastructure under `<dir>/data`; SIGKILLed on drop.
struct Dev {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Dev {
    fn start(dir: &Path, name: &str) -> Dev {
        let port = free_port(None);
        let log = dir.join(format!("hexflow-dev-{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(hexflow_binary())
            .arg("dev")
            .current_dir(dir)
            .env("HEXFLOW_DATA_DIR", dir.join("data"))
            .env("HEXFLOW_LISTEN", format!("127.0.0.1:{port}"))
            // The test never calls the ops port: the system picks it when it binds, so no port
            // chosen here in advance can be taken meanwhile (by the embedded nats-server).
            .env("HEXFLOW_OPS_LISTEN", "127.0.0.1:0")
            .env("HEXFLOW_LOG", std::env::var("TEST_LOG").unwrap_or_else(|_| "info".into()))
            .env_remove("NATS_URL")
            .env_remove("DATABASE_URL")
            .env_remove("HEXFLOW_AUTH_SECRET")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawning hexflow dev");
        Dev { child, url: format!("http://127.0.0.1:{port}"), log }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `GET /api/imports` answers 200.
    async fn wait_serving(&mut self, limit: Duration) {
        let started = Instant::now();
        let url = format!("{}/api/imports", self.url);
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("hexflow dev exited with {status}; log:\n{}", self.log_text());
            }
            if reqwest::get(&url).await.is_ok_and(|r| r.status() == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("hexflow dev did not serve within {limit:?}; log:\n{}", self.log_text());
    }

    /// Its descendants and every process whose command line names the data directory.
    fn children(&self, dir: &Path) -> Vec<Proc> {
        let all = Proc::all();
        let mut parents: HashMap<u32, Vec<&Proc>> = HashMap::new();
        for p in &all {
            parents.entry(p.ppid).or_default().push(p);
        }
        let mut found: Vec<Proc> = all.iter().filter(|p| p.mentions(dir)).cloned().collect();
        let mut queue = vec![self.child.id()];
        while let Some(pid) = queue.pop() {
            for p in parents.get(&pid).into_iter().flatten() {
                queue.push(p.pid);
                found.push((*p).clone());
            }
        }
        found.sort_by_key(|p| p.pid);
        found.dedup_by_key(|p| p.pid);
        found
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.child.id().to_string()).status();
        assert!(status.unwrap().success(), "sending SIG{signal}");
    }

    async fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("hexflow dev still runs {limit:?} after the signal; log:\n{}", self.log_text());
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until none of `procs` lives and no process names `dir` on its command line.
async fn wait_gone(procs: &[Proc], dir: &Path, limit: Duration) {
    let started = Instant::now();
    loop {
        let now = Proc::all();
        let left: Vec<&Proc> = now.iter().filter(|p| procs.contains(p) || p.mentions(dir)).collect();
        if left.is_empty() {
            return;
        }
        assert!(started.elapsed() < limit, "still running {limit:?} after hexflow dev ended: {left:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A live process, identified by PID and start time (so a reused PID is not taken for it).
#[derive(Debug, Clone)]
struct Proc {
    pid: u32,
    started: u64,
    ppid: u32,
    name: String,
    cmdline: String,
}

impl PartialEq for Proc {
    fn eq(&self, other: &Proc) -> bool {
        (self.pid, self.started) == (other.pid, other.started)
    }
}

impl Proc {
    /// Every live (not zombie) process.
    fn all() -> Vec<Proc> {
        let entries = std::fs::read_dir("/proc").unwrap();
        entries.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).filter_map(Proc::read).collect()
    }

    fn read(pid: u32) -> Option<Proc> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (head, tail) = stat.rsplit_once(')')?;
        let name = head.split_once('(')?.1.to_owned();
        // Fields after the name: state (3), ppid (4), ..., starttime (22).
        let fields: Vec<&str> = tail.split_whitespace().collect();
        if matches!(fields.first(), Some(&"Z" | &"X")) {
            return None;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        Some(Proc {
            pid,
            ppid: fields.get(1)?.parse().ok()?,
            started: fields.get(19)?.parse().ok()?,
            name,
            cmdline: String::from_utf8_lossy(&cmdline).replace('\0', " "),
        })
    }

    fn mentions(&self, dir: &Path) -> bool {
        self.cmdline.contains(dir.to_str().unwrap())
    }
}

/// A directory of the test's own, removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!("hexflow-test-dev-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir.canonicalize().unwrap())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

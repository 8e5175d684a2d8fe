//! `hexflow import` as scripts and people run it: `--json` output, plain output on a pipe,
//! polling through a proxy that answers 502, Ctrl-C that asks every time, and an exit code
//! of its own for each ending.

use std::{
    path::Path,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use hexflow::client::exit;
use hexflow_tests::{TestEnv, files, stack::hexflow_binary};
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    process::{Child, Command},
};

/// How long one `hexflow import` may take in these tests.
const LIMIT: Duration = Duration::from_secs(60);

/// What a finished `hexflow import` left behind.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!("stdout is not one JSON object ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr)
        })
    }
}

fn import_command(server: &str, args: &[&str]) -> Command {
    let mut command = Command::new(hexflow_binary());
    command
        .arg("import")
        .args(args)
        .args(["--server", server])
        .env_remove("HEXFLOW_TOKEN")
        .env_remove("HEXFLOW_CA_CERT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs `hexflow import ARGS --server SERVER` with stdout and stderr on pipes.
async fn import(server: &str, args: &[&str]) -> Run {
    let child = import_command(server, args).spawn().expect("starting hexflow import");
    let output = tokio::time::timeout(LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("hexflow import {args:?} still running after {LIMIT:?}"))
        .expect("waiting for hexflow import");
    Run {
        code: output.status.code().expect("an exit code, not a signal"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_string_lossy().into_owned()
}

fn assert_no_control_characters(text: &str, what: &str) {
    let bad: Vec<char> = text.chars().filter(|c| c.is_control() && *c != '\n').collect();
    assert!(bad.is_empty(), "{what} has control characters {bad:?}:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_output_is_one_object_with_the_summary_and_a_pipe_gets_no_control_characters() {
    let env = TestEnv::start().await;
    let gateway = env.gateway().await;
    let _worker = env.worker().await;
    let rows: Vec<_> = (0..40).map(|i| files::Row::new(&format!("h{i}"), "C1", 443)).collect();
    let file = write_file(env.dir(), "scan.csv", &files::generic_csv(&rows));

    let run = import(&gateway.base, &[&file, "--json"]).await;

    assert_eq!(run.code, exit::COMPLETED, "{}", run.stderr);
    let out = run.json();
    assert_eq!((out["status"].as_str(), out["exitCode"].as_i64()), (Some("completed"), Some(0)), "{out}");
    assert_eq!(out["event"]["summary"]["new"], 40, "{out}");
    assert_eq!(out["event"]["sessionId"], out["sessionId"], "{out}");
    assert_no_control_characters(&run.stdout, "stdout");
    assert_no_control_characters(&run.stderr, "stderr");
    assert!(run.stderr.contains("Queued as"), "{}", run.stderr);

    // Without --json the text summary goes to stdout, still without control characters.
    let text = import(&gateway.base, &[&file]).await;
    assert_eq!(text.code, exit::COMPLETED, "{}", text.stderr);
    assert!(text.stdout.starts_with("completed: 40 rows"), "{}", text.stdout);
    assert_no_control_characters(&text.stdout, "stdout");
    assert_no_control_characters(&text.stderr, "stderr");
}

/// A proxy in front of the gateway that answers `502` to the first `failures` polls (or to
/// every one, with `usize::MAX`) and forwards everything else. Each request gets a connection
/// of its own (`Connection: close`), so every poll is seen.
struct FlakyProxy {
    url: String,
    refused: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FlakyProxy {
    async fn start(upstream: std::net::SocketAddr, failures: usize) -> FlakyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let refused = Arc::new(AtomicUsize::new(0));
        let counter = refused.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let _ = relay(client, upstream, &counter, failures).await;
                });
            }
        });
        FlakyProxy { url, refused, task }
    }

    fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }
}

impl Drop for FlakyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One request: answered 502 while failures are due for a poll, else passed to `upstream`.
async fn relay(
    mut client: TcpStream,
    upstream: std::net::SocketAddr,
    refused: &AtomicUsize,
    failures: usize,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        let n = client.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let text = String::from_utf8_lossy(&head[..end]).into_owned();
    let is_poll = text.starts_with("GET /api/imports/");
    if is_poll && refused.load(Ordering::SeqCst) < failures {
        refused.fetch_add(1, Ordering::SeqCst);
        let answer = "HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain\r\ncontent-length: 11\r\nconnection: close\r\n\r\nBad Gateway";
        client.write_all(answer.as_bytes()).await?;
        return client.shutdown().await;
    }
    let mut lines: Vec<&str> =
        text.trim_end().split("\r\n").filter(|l| !l.to_ascii_lowercase().starts_with("connection:")).collect();
    lines.push("Connection: close");
    let mut server = TcpStream::connect(upstream).await?;
    server.write_all(format!("{}\r\n\r\n", lines.join("\r\n")).as_bytes()).await?;
    server.write_all(&head[end..]).await?;
    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_502_while_polling_is_retried_and_the_import_is_followed_to_the_end() {
    let env = TestEnv::start().await;
    let gateway = env.gateway().await;
    let _worker = env.worker().await;
    let proxy = FlakyProxy::start(gateway.addr, 2).await;
    let file = write_file(env.dir(), "scan.csv", &files::generic_csv(&[files::Row::new("h1", "C1", 22)]));

    let run = import(&proxy.url, &[&file, "--json"]).await;

    assert_eq!(proxy.refused(), 2, "the proxy answered 502 twice");
    assert_eq!(run.code, exit::COMPLETED, "{}", run.stderr);
    assert_eq!(run.json()["status"], "completed");
    assert_eq!(run.stderr.matches("502 Bad Gateway; retrying in").count(), 2, "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_that_keeps_failing_gives_up_after_the_retry_budget_with_exit_4() {
    let env = TestEnv::start().await;
    let gateway = env.gateway().await;
    let proxy = FlakyProxy::start(gateway.addr, usize::MAX).await;
    let file = write_file(env.dir(), "scan.csv", &files::generic_csv(&[files::Row::new("h1", "C1", 22)]));

    let started = std::time::Instant::now();
    let run = import(&proxy.url, &[&file, "--json", "--retry-for", "2"]).await;

    assert_eq!(run.code, exit::UNREACHABLE, "{}", run.stderr);
    assert!(started.elapsed() < Duration::from_secs(30), "bounded: {:?}", started.elapsed());
    assert!(proxy.refused() >= 2, "retried before giving up: {}", proxy.refused());
    let out = run.json();
    assert_eq!(out["status"], "unreachable");
    let message = out["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("502") && message.contains("may still be running"), "{message}");
    assert!(out["sessionId"].is_string(), "the id to look the import up later: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_ending_has_its_own_exit_code() {
    let env = TestEnv::start().await;
    let gateway = env.gateway().await;
    let _worker = env.worker().await;
    let binary = write_file(env.dir(), "image.csv", &[0x89, b'P', b'N', b'G', 0, 0, 0, 13, 0, 0]);
    let free = hexflow::embedded::free_port(None);

    let usage = import(&gateway.base, &["--no-such-flag"]).await;
    let missing = import(&gateway.base, &["/nonexistent/scan.csv", "--json"]).await;
    let refused = import(&gateway.base, &[&binary, "--json"]).await;
    let unreachable = import(&format!("http://127.0.0.1:{free}"), &[&binary, "--json"]).await;

    assert_eq!(usage.code, exit::USAGE, "{}", usage.stderr);
    assert_eq!((missing.code, missing.json()["status"].as_str()), (exit::USAGE, Some("usage_error")));
    assert!(missing.json()["error"]["message"].as_str().unwrap().contains("/nonexistent/scan.csv"));
    assert_eq!((refused.code, refused.json()["status"].as_str()), (exit::FAILED, Some("refused")));
    assert_eq!(refused.json()["error"]["code"], "BINARY_FILE");
    assert_eq!(refused.json()["error"]["httpStatus"], 422);
    assert_eq!((unreachable.code, unreachable.json()["status"].as_str()), (exit::UNREACHABLE, Some("unreachable")));
    let codes = [exit::COMPLETED, exit::FAILED, exit::USAGE, exit::CANCELLED, exit::UNREACHABLE];
    assert_eq!(codes.iter().collect::<std::collections::BTreeSet<_>>().len(), codes.len(), "distinct codes");

    let help = import(&gateway.base, &["--help"]).await;
    assert!(help.stdout.contains("Exit codes: 0 completed, 1 refused or failed, 2 usage error"), "{}", help.stdout);
}

/// Reads stderr until `text` has arrived (a prompt ends without a line break, so whatever
/// bytes are there are taken).
async fn wait_for_line(stderr: &mut tokio::process::ChildStderr, text: &str, seen: &mut String) {
    let found = tokio::time::timeout(LIMIT, async {
        let mut buf = [0u8; 1024];
        loop {
            let n = stderr.read(&mut buf).await.expect("reading stderr");
            if n == 0 {
                return false;
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            if seen.contains(text) {
                return true;
            }
        }
    })
    .await;
    assert_eq!(found, Ok(true), "no {text:?} on stderr:\n{seen}");
}

fn interrupt(child: &Child) {
    let pid = child.id().expect("still running").to_string();
    let status = std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_asks_again_after_a_no_and_a_yes_cancels_with_exit_3() {
    let env = TestEnv::start().await;
    let gateway = env.gateway().await;
    let file = write_file(env.dir(), "scan.csv", &files::generic_csv(&[files::Row::new("h1", "C1", 22)]));
    // No worker yet: the import stays queued while the prompts are answered.
    let mut child = import_command(&gateway.base, &[&file, "--json"]).stdin(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut seen = String::new();
    wait_for_line(&mut stderr, "Queued as", &mut seen).await;

    interrupt(&child);
    wait_for_line(&mut stderr, "[y/N]", &mut seen).await;
    stdin.write_all(b"n\n").await.unwrap();
    wait_for_line(&mut stderr, "Still watching", &mut seen).await;
    assert!(seen.contains("Ctrl-C asks again"), "{seen}");
    interrupt(&child);
    while seen.matches("[y/N]").count() < 2 {
        wait_for_line(&mut stderr, "[y/N]", &mut seen).await;
    }
    stdin.write_all(b"y\n").await.unwrap();
    wait_for_line(&mut stderr, "Cancel requested", &mut seen).await;
    let _worker = env.worker().await;
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).await.unwrap();
    let output = tokio::time::timeout(LIMIT, child.wait_with_output()).await.expect("hexflow import ends").unwrap();

    assert_eq!(output.status.code(), Some(exit::CANCELLED), "{seen}{rest}");
    let out: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(out["status"], "cancelled", "{out}");
}

//! A real `socket.io-client` (v4, from `node_modules/`) driven from the tests: `tests/sio/client.mjs`
//! runs under Node, prints every event it receives as a JSON line, and takes commands on stdin.

use std::{
    path::PathBuf,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::Deserialize;
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::{Child, ChildStdin, Command},
    sync::Notify,
    time::Instant,
};
use uuid::Uuid;

/// One line the client printed: an event it received (or a connection event, or an ack).
#[derive(Debug, Clone, Deserialize)]
pub struct ClientEvent {
    /// `progress-update`, `connect`, `ack:join-progress`, ...
    pub event: String,
    /// The payload.
    pub data: Value,
    /// When the client got it, ms since the epoch.
    pub t: i64,
}

impl ClientEvent {
    /// The payload's `seq` (progress events).
    pub fn seq(&self) -> u64 {
        self.data["seq"].as_u64().unwrap_or_else(|| panic!("{} has no seq: {}", self.event, self.data))
    }

    /// True for `progress-complete`, `progress-error` and `progress-cancelled`.
    pub fn is_terminal(&self) -> bool {
        matches!(self.event.as_str(), "progress-complete" | "progress-error" | "progress-cancelled")
    }
}

/// How the client connects.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Gateways to try, in order (reconnects move to the next one).
    pub urls: Vec<String>,
    /// `polling`, `websocket`; empty means both (polling, then upgrade).
    pub transports: Vec<&'static str>,
    /// JWT for the handshake's `auth: {token}`.
    pub token: Option<String>,
}

impl ClientOptions {
    /// Both transports, no token, one gateway.
    pub fn at(url: impl Into<String>) -> Self {
        ClientOptions { urls: vec![url.into()], ..Default::default() }
    }
}

/// A running Node socket.io client; killed when dropped.
pub struct SioClient {
    child: Child,
    stdin: ChildStdin,
    log: Arc<Mutex<Vec<ClientEvent>>>,
    arrived: Arc<Notify>,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sio/client.mjs")
}

impl SioClient {
    /// Starts the client; it connects at once (wait for `connect` or `connect_error`).
    pub fn start(options: &ClientOptions) -> SioClient {
        let mut command = Command::new("node");
        command.arg(script()).arg("--url").arg(options.urls.join(","));
        if !options.transports.is_empty() {
            command.arg("--transports").arg(options.transports.join(","));
        }
        if let Some(token) = &options.token {
            command.arg("--token").arg(token);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("starting node (is Node.js installed and `npm ci` run at the workspace root?)");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let log = Arc::new(Mutex::new(Vec::new()));
        let arrived = Arc::new(Notify::new());
        let (sink, notify) = (log.clone(), arrived.clone());
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<ClientEvent>(&line) {
                    Ok(event) => sink.lock().unwrap().push(event),
                    Err(_) => eprintln!("sio client: {line}"),
                }
                notify.notify_waiters();
            }
        });
        SioClient { child, stdin, log, arrived }
    }

    /// Starts the client and waits until it is connected.
    pub async fn connected(options: &ClientOptions) -> SioClient {
        let client = SioClient::start(options);
        client.wait_for("connect", |_| true, Duration::from_secs(20)).await;
        client
    }

    /// Everything received so far.
    pub fn events(&self) -> Vec<ClientEvent> {
        self.log.lock().unwrap().clone()
    }

    /// The events named `name`, in arrival order.
    pub fn named(&self, name: &str) -> Vec<ClientEvent> {
        self.events().into_iter().filter(|e| e.event == name).collect()
    }

    /// Waits for an event named `name` whose payload satisfies `pred`.
    pub async fn wait_for(&self, name: &str, pred: impl Fn(&Value) -> bool, limit: Duration) -> ClientEvent {
        self.wait_for_after(0, name, pred, limit).await
    }

    /// Like [`wait_for`](Self::wait_for), among the events from position `from` of the log on.
    pub async fn wait_for_after(
        &self,
        from: usize,
        name: &str,
        pred: impl Fn(&Value) -> bool,
        limit: Duration,
    ) -> ClientEvent {
        self.wait_until(&format!("a matching {name}"), limit, |events| {
            events.iter().skip(from).find(|e| e.event == name && pred(&e.data)).cloned()
        })
        .await
    }

    /// Waits until `count` events named `name` have arrived; returns them.
    pub async fn wait_for_count(&self, name: &str, count: usize, limit: Duration) -> Vec<ClientEvent> {
        self.wait_until(&format!("{count} × {name}"), limit, |events| {
            let found: Vec<ClientEvent> = events.iter().filter(|e| e.event == name).cloned().collect();
            (found.len() >= count).then_some(found)
        })
        .await
    }

    /// Waits until `check` finds what it looks for in the log; panics with the log's tail after `limit`.
    pub async fn wait_until<T>(&self, what: &str, limit: Duration, check: impl Fn(&[ClientEvent]) -> Option<T>) -> T {
        let deadline = Instant::now() + limit;
        loop {
            let notified = self.arrived.notified();
            tokio::pin!(notified);
            // Registered before looking, so a line that arrives in between still wakes us.
            notified.as_mut().enable();
            if let Some(found) = check(&self.events()) {
                return found;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let tail: Vec<String> =
                    self.events().iter().rev().take(15).rev().map(|e| format!("{} {}", e.event, e.data)).collect();
                panic!("no {what} within {limit:?}; the client's last events:\n{}", tail.join("\n"));
            }
        }
    }

    /// Sends one command line (`join <id>`, `drop`, ...).
    pub async fn send(&mut self, line: &str) {
        self.stdin.write_all(format!("{line}\n").as_bytes()).await.expect("writing to the client");
        self.stdin.flush().await.expect("flushing the client's stdin");
    }

    /// Sends a command and returns the ack of `event` it causes.
    pub async fn request(&mut self, line: &str, event: &str) -> Value {
        let from = self.events().len();
        self.send(line).await;
        self.wait_for_after(from, &format!("ack:{event}"), |_| true, Duration::from_secs(20)).await.data
    }

    /// `join-progress`; returns the ack.
    pub async fn join(&mut self, id: Uuid) -> Value {
        self.request(&format!("join {id}"), "join-progress").await
    }

    /// `leave-progress`; returns the ack.
    pub async fn leave(&mut self, id: Uuid) -> Value {
        self.request(&format!("leave {id}"), "leave-progress").await
    }

    /// `cancel-import`; returns the ack.
    pub async fn cancel(&mut self, id: Uuid) -> Value {
        self.request(&format!("cancel {id}"), "cancel-import").await
    }

    /// Any event with any payload (raw JSON, or a string if it does not parse); returns the ack.
    pub async fn emit_raw(&mut self, event: &str, payload: &str) -> Value {
        self.request(&format!("emit {event} {payload}"), event).await
    }

    /// How many times the client has connected.
    pub fn connects(&self) -> usize {
        self.named("connect").len()
    }

    /// Stops the client process.
    pub async fn stop(mut self) {
        let _ = self.send("exit").await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

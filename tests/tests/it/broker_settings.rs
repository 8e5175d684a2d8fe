//! How operators name and reach their NATS: several seed URLs in `NATS_URL`, TLS with a private
//! CA and a token, a refused URL list named in the error, and broker settings changed in the
//! configuration brought to the existing consumer at start-up.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use hexflow::embedded::{find_program, free_port};
use hexflow_tests::{TestEnv, stack::hexflow_binary};
use shared::names;

const WAIT: Duration = Duration::from_secs(60);

/// Runs `openssl` with `args` in `dir`, failing the test with its output when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out =
        Command::new("openssl").args(args).current_dir(dir).output().expect("openssl (scripts/setup.sh installs it)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA and a certificate for 127.0.0.1 signed by it, written into `dir` as ca.pem, server.pem
/// and server-key.pem.
fn make_certificates(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=hexflow test CA",
            "-keyout",
            "ca-key.pem",
            "-out",
            "ca.pem",
        ],
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server-key.pem",
            "-out",
            "server.csr",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ],
    );
}

/// A nats-server child that requires TLS and a token; killed on drop.
struct TlsNats(Child);

impl Drop for TlsNats {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until the process has exited; its status and everything it printed.
async fn exited(mut child: Child, log: &Path) -> (std::process::ExitStatus, String) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, std::fs::read_to_string(log).unwrap_or_default());
        }
        if started.elapsed() > WAIT {
            let _ = child.kill();
            panic!("still running after {WAIT:?}: {}", std::fs::read_to_string(log).unwrap_or_default());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_url_names_several_servers_with_spaces_and_a_dead_first_one() {
    let env = TestEnv::start().await;
    let dead = free_port(None);
    let urls = format!("nats://127.0.0.1:{dead}, {}", env.nats_config.url());
    let mut worker = env.worker_process(&[("NATS_URL", &urls)]);
    worker.wait_ready(WAIT).await;
    let mut gateway = env.gateway_process(&[("NATS_URL", &urls)]);
    gateway.wait_ready(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_nats_url_stops_start_up_naming_the_variable_and_the_part() {
    let env = TestEnv::start().await;
    let log = env.dir().join("bad-url.log");
    std::fs::create_dir_all(env.dir()).unwrap();
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(hexflow_binary())
        .arg("import-worker")
        .env("NATS_URL", "nats://127.0.0.1:4222,nats://:notaport")
        .env("DATABASE_URL", env.db_config.url())
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let (status, text) = exited(child, &log).await;
    assert!(!status.success());
    assert!(text.contains("NATS_URL") && text.contains("notaport"), "names the variable and the bad part: {text}");
    assert!(text.contains("expected nats://host:port"), "says what is expected: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_reach_a_nats_that_requires_tls_and_a_token_through_a_private_ca() {
    let env = TestEnv::start().await;
    let certs = env.dir().join("certs");
    make_certificates(&certs);
    let binary = find_program("nats-server", &["/usr/sbin".into(), "/usr/local/bin".into()]).expect("nats-server");
    let port = free_port(None);
    let store = env.dir().join("tls-nats");
    let server = TlsNats(
        Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "--auth", "s3cret-token", "--tls"])
            .arg("--tlscert")
            .arg(certs.join("server.pem"))
            .arg("--tlskey")
            .arg(certs.join("server-key.pem"))
            .arg("-sd")
            .arg(&store)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting nats-server with TLS"),
    );
    let url = format!("tls://127.0.0.1:{port}");
    let ca = certs.join("ca.pem");
    let env_tls = [("NATS_URL", url.as_str()), ("NATS_CA", ca.to_str().unwrap()), ("NATS_TOKEN", "s3cret-token")];
    let mut worker = env.worker_process(&env_tls);
    worker.wait_ready(WAIT).await;

    // Without the CA the certificate is not trusted: the worker keeps retrying and never serves.
    let untrusted = [("NATS_URL", url.as_str()), ("NATS_TOKEN", "s3cret-token")];
    let mut refused = env.worker_process(&untrusted);
    let started = Instant::now();
    while !refused.log_text().contains("client error") && started.elapsed() < WAIT {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused.log_text().contains("client error"), "the failed handshakes are logged: {}", refused.log_text());
    let answered = reqwest::get(format!("{}/readyz", refused.ops_url())).await;
    assert!(answered.is_err(), "a worker without a trusted connection to NATS serves nothing");
    refused.kill();
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_ack_wait_and_max_deliver_reach_the_existing_consumer_at_start_up() {
    let env = TestEnv::start().await;
    let mut first = env.worker_process(&[("HEXFLOW_WORKER_ACK_WAIT_SECS", "30"), ("HEXFLOW_WORKER_MAX_DELIVER", "5")]);
    first.wait_ready(WAIT).await;
    let consumer_config = || async {
        let stream = env.nats.js.get_stream(names::JOBS_STREAM).await.unwrap();
        stream.consumer_info(names::WORKERS_CONSUMER).await.unwrap().config
    };
    let started = Instant::now();
    while started.elapsed() < WAIT
        && env
            .nats
            .js
            .get_stream(names::JOBS_STREAM)
            .await
            .unwrap()
            .consumer_info(names::WORKERS_CONSUMER)
            .await
            .is_err()
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(consumer_config().await.ack_wait, Duration::from_secs(30));
    first.terminate(WAIT).await;

    let mut second = env.worker_process(&[("HEXFLOW_WORKER_ACK_WAIT_SECS", "12"), ("HEXFLOW_WORKER_MAX_DELIVER", "3")]);
    second.wait_ready(WAIT).await;
    let started = Instant::now();
    while consumer_config().await.ack_wait != Duration::from_secs(12) && started.elapsed() < WAIT {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let config = consumer_config().await;
    assert_eq!(
        (config.ack_wait, config.max_deliver),
        (Duration::from_secs(12), 3),
        "the consumer follows the configuration"
    );
    assert!(second.log_text().contains("updating the consumer to match the configuration"), "and says so");
}

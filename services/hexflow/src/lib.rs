//! The `hexflow` command line: one subcommand per service (as the containers run them), `dev`
//! (the whole stack in one process, with embedded NATS and PostgreSQL unless configured),
//! `migrate`, and `import` (upload a file and follow it).
//!
//! # Layout
//! - [`embedded`]: `nats-server` and PostgreSQL child processes.
//! - [`dev`]: `hexflow dev`.
//! - [`client`]: `hexflow import`.

pub mod client;
pub mod dev;
pub mod embedded;
pub mod token;

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

//! `bench`: hexflow's end-to-end benchmark, run by hand (see `docs/benchmarks.md`).
//!
//! - `bench generate` writes a realistic 1M-row Nessus export, deterministic from a seed.
//! - `bench e2e` starts NATS, PostgreSQL and the release services as child processes, imports the
//!   file over HTTP while following its progress on NATS, and compares it with the bare `COPY` of
//!   the same file and with the same import without intermediate progress events.
//! - `bench realtime` starts NATS, PostgreSQL and the release realtime gateway, connects many
//!   socket.io-client sockets to it (`bench/realtime-load.mjs`, in Node), publishes progress at a
//!   fixed rate and reports the fan-out: latency, throttle, lost terminal events, memory.
//!
//! # Layout
//! - `generate`, `text`, `weeks`: the file generator, its texts, and next week's scan with the
//!   lifecycle counts it must give.
//! - `stack`: child processes, stopped on drop.
//! - `import`: one measured import; `rss`: memory sampling; `copy`: the bare COPY.
//! - `e2e`: the sequence of runs; `report`: figures, targets, text and JSON.
//! - `realtime`: the fan-out run and its Node clients; `realtime_report`: its figures.

mod copy;
mod e2e;
mod import;
mod realtime;
mod realtime_report;
mod report;
mod rss;
mod stack;

use bench::{generate, weeks};
use clap::{Parser, Subcommand};

/// hexflow benchmarks.
#[derive(Parser)]
#[command(about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a Nessus Professional CSV export of realistic shape.
    Generate(generate::GenerateArgs),
    /// Import a file end to end over HTTP against a stack of child processes and report.
    E2e(e2e::E2eArgs),
    /// Fan progress events out to many Socket.IO clients through the realtime gateway and report.
    Realtime(realtime::RealtimeArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Generate(args) => tokio::task::spawn_blocking(move || generate::run(&args)).await?,
        Command::E2e(args) => {
            // Returning (rather than dying on the signal) lets every child's Drop guard run.
            tokio::select! {
                result = e2e::run(args) => result,
                _ = tokio::signal::ctrl_c() => {
                    if e2e::FINISHED.load(std::sync::atomic::Ordering::SeqCst) {
                        eprintln!("stopping the stack");
                        Ok(())
                    } else {
                        Err(anyhow::anyhow!("interrupted; stopping the stack"))
                    }
                }
            }
        }
        Command::Realtime(args) => {
            tokio::select! {
                result = realtime::run(args) => result,
                _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted; stopping the stack")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}

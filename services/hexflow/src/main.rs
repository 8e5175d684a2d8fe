//! `hexflow`: see `hexflow --help`.

use clap::{Parser, Subcommand};
use hexflow::{client, dev, shutdown_signal};
use shared::config::DbConfig;

/// hexflow: vulnerability-scanner CSV imports into PostgreSQL with live progress.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole stack in one process (embedded NATS and PostgreSQL unless configured).
    Dev(dev::DevConfig),
    /// The upload gateway alone.
    UploadGateway(upload_gateway::Config),
    /// The realtime gateway (Socket.IO progress rooms) alone.
    RealtimeGateway(realtime_gateway::Config),
    /// An import worker alone.
    ImportWorker(import_worker::Config),
    /// Apply database migrations and exit.
    Migrate {
        /// Database to migrate.
        #[command(flatten)]
        db: DbConfig,
    },
    /// Upload a scan export and follow its import (exit codes: 0 completed, 1 refused or
    /// failed, 2 usage error, 3 cancelled, 4 server unreachable).
    Import(client::ImportArgs),
    /// Print a signed token (HS256, with the gateways' HEXFLOW_AUTH_* settings) on stdout.
    Token(hexflow::token::TokenArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let result = run(Cli::parse().command).await;
    // Spans still buffered for the collector go out before the process ends.
    shared::telemetry::shutdown();
    result
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Dev(config) => dev::run(config).await,
        Command::UploadGateway(config) => {
            shared::telemetry::init_service(&config.telemetry, "upload-gateway", "info,upload_gateway=debug,sqlx=warn");
            let gateway = upload_gateway::Gateway::build(config).await?;
            gateway.run_until_stopped(shutdown_signal()).await
        }
        Command::RealtimeGateway(config) => {
            shared::telemetry::init_service(
                &config.telemetry,
                "realtime-gateway",
                "info,realtime_gateway=debug,socketioxide=info,sqlx=warn",
            );
            let gateway = realtime_gateway::Gateway::build(config).await?;
            gateway.run_until_stopped(shutdown_signal()).await
        }
        Command::ImportWorker(config) => {
            shared::telemetry::init_service(&config.telemetry, "import-worker", "info,import_worker=debug,sqlx=warn");
            let worker = import_worker::Service::build(config).await?;
            worker.run_until_stopped(shutdown_signal()).await
        }
        Command::Migrate { db } => {
            shared::telemetry::init(&Default::default(), "info");
            let pool = shared::db::pool(&db)?;
            shared::db::wait_until_reachable(&pool, std::time::Duration::from_secs(60)).await?;
            shared::db::migrate(&pool).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Import(args) => std::process::exit(client::run(args).await),
        Command::Token(args) => {
            println!("{}", hexflow::token::sign(&args, shared::events::now_ms() / 1000)?);
            Ok(())
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

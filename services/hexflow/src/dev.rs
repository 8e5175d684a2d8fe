//! `hexflow dev`: the whole stack in one process on one address, with NATS and PostgreSQL of
//! its own unless `NATS_URL` / `DATABASE_URL` say where they are.

use std::{path::PathBuf, sync::Arc};

use anyhow::Context;
use shared::{
    config::{DbConfig, NatsConfig},
    metrics::Metrics,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::embedded::{EmbeddedNats, EmbeddedPostgres};

/// Settings of `hexflow dev`.
#[derive(clap::Args, Debug, Clone)]
pub struct DevConfig {
    /// Where the embedded NATS and PostgreSQL keep their data (kept between runs).
    #[arg(long = "data-dir", env = "HEXFLOW_DATA_DIR", value_name = "HEXFLOW_DATA_DIR", default_value = ".hexflow")]
    pub data_dir: PathBuf,
    /// The upload gateway's settings (its listen address is the stack's).
    #[command(flatten)]
    pub gateway: upload_gateway::Config,
    /// Worker settings (its own listen address is unused: ops are on the stack's address).
    #[command(flatten)]
    pub worker: WorkerOnly,
    /// Socket.IO settings (served on the stack's address, next to the upload API).
    #[command(flatten)]
    pub realtime: realtime_gateway::Options,
}

/// The worker settings that are not shared with the gateway.
#[derive(clap::Args, Debug, Clone)]
pub struct WorkerOnly {
    /// Imports run at once.
    #[arg(long = "concurrency", env = "HEXFLOW_WORKER_CONCURRENCY", value_name = "HEXFLOW_WORKER_CONCURRENCY",
          default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub concurrency: u32,
}

/// Running infrastructure and where it is.
pub struct Infra {
    /// NATS settings to hand to the services.
    pub nats: NatsConfig,
    /// Database settings to hand to the services.
    pub db: DbConfig,
    _nats_child: Option<EmbeddedNats>,
    _pg_child: Option<EmbeddedPostgres>,
}

/// Uses the configured NATS and PostgreSQL, or starts embedded ones under `data_dir`.
pub async fn infrastructure(nats: &NatsConfig, db: &DbConfig, data_dir: &std::path::Path) -> anyhow::Result<Infra> {
    let (nats, nats_child) = match &nats.url {
        Some(_) => (nats.clone(), None),
        None => {
            let port = crate::embedded::free_port(Some(4222));
            let dir = data_dir.join("nats");
            let child = tokio::task::spawn_blocking(move || EmbeddedNats::start(&dir, Some(port))).await??;
            tracing::info!(url = %child.url, "started embedded nats-server");
            (NatsConfig { url: Some(child.url.clone()), ..nats.clone() }, Some(child))
        }
    };
    let (db, pg_child) = match &db.url {
        Some(_) => (db.clone(), None),
        None => {
            let port = crate::embedded::free_port(Some(5432));
            let dir = data_dir.join("postgres");
            let child = tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&dir, Some(port))).await??;
            ensure_database(&child.url("postgres"), "hexflow").await?;
            tracing::info!(port = child.port, "started embedded PostgreSQL");
            (DbConfig { url: Some(shared::config::Secret(child.url("hexflow"))), ..db.clone() }, Some(child))
        }
    };
    Ok(Infra { nats, db, _nats_child: nats_child, _pg_child: pg_child })
}

/// Creates `name` on the server behind `admin_url` if it is missing.
pub async fn ensure_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut conn =
        sqlx::PgConnection::connect(admin_url).await.with_context(|| format!("connecting to {admin_url}"))?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(&mut conn)
        .await?;
    if !exists {
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\""))).execute(&mut conn).await?;
    }
    Ok(())
}

/// Runs the stack until Ctrl-C / SIGTERM.
pub async fn run(config: DevConfig) -> anyhow::Result<()> {
    shared::telemetry::init(
        &config.gateway.telemetry,
        "info,hexflow=debug,upload_gateway=debug,import_worker=debug,realtime_gateway=debug,sqlx=warn,tower_http=info",
    );
    shared::open_files::raise();
    let infra = infrastructure(&config.gateway.nats, &config.gateway.db, &config.data_dir).await?;
    let pool = shared::db::pool(&infra.db)?;
    shared::db::wait_until_reachable(&pool, std::time::Duration::from_secs(60)).await?;
    shared::db::migrate(&pool).await.context("running migrations")?;

    let metrics = Metrics::default();
    let mut gateway_config = config.gateway.clone();
    gateway_config.nats = infra.nats.clone();
    gateway_config.db = infra.db.clone();
    let (nats, db) = upload_gateway::connect(&gateway_config).await?;
    let mut worker_config = import_worker::Config::local(infra.nats.clone(), infra.db.clone());
    worker_config.concurrency = config.worker.concurrency;
    let worker = import_worker::Worker::connect(worker_config, metrics.clone()).await?;

    let listener = TcpListener::bind(gateway_config.listen)
        .await
        .with_context(|| format!("binding HEXFLOW_LISTEN={}", gateway_config.listen))?;
    let addr = listener.local_addr()?;
    let mut realtime_options = config.realtime.clone();
    if realtime_options.cors_origins.0.is_empty() {
        // The page is served from this address; its origin is the only one let in by default.
        realtime_options.cors_origins.0 = vec![format!("http://localhost:{}", addr.port()), format!("http://{addr}")];
    }
    let realtime =
        realtime_gateway::Realtime::start(realtime_options, &gateway_config.auth, nats.clone(), db.clone(), &metrics);
    let ops_listener = gateway_config.ops.bind(upload_gateway::config::DEFAULT_OPS_LISTEN).await?;
    let ops_addr = ops_listener.local_addr()?;
    let (consumer, consumer_check) = realtime.check();
    let ops =
        upload_gateway::ops("hexflow-dev", &gateway_config, &nats, &db, &metrics).with_check(consumer, consumer_check);
    ops.spawn(ops_listener);
    let app = realtime.mount(upload_gateway::api_router(Arc::new(gateway_config.clone()), nats, db, &metrics));
    tracing::info!(url = %format!("http://{addr}"), ops = %format!("http://{ops_addr}"), nats = infra.nats.url(), "hexflow dev is up (HTTP API, page and Socket.IO)");
    println!("hexflow dev listening on http://{addr}");
    println!("ops endpoints on http://{ops_addr} (/healthz /readyz /metrics)");

    let stop = CancellationToken::new();
    let worker_task = {
        let stop = stop.clone();
        tokio::spawn(async move { worker.run(async move { stop.cancelled().await }).await })
    };
    let server_stop = stop.clone();
    let connections = gateway_config.connections.clone();
    let server = tokio::spawn(async move {
        shared::ops::serve(listener, app, &connections, async move { server_stop.cancelled().await }).await
    });
    crate::shutdown_signal().await;
    tracing::info!("stopping");
    ops.mark_stopping();
    stop.cancel();
    // Sockets are disconnected (not left hanging) so browsers reconnect when the stack is back.
    realtime.close().await;
    server.await??;
    worker_task.await??;
    drop(infra);
    Ok(())
}

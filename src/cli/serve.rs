//! `cardwire serve`: the gateway, opened again when sled's log failed on a full disk.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use super::shared::*;
use crate::config::Config;
use crate::pipeline::Pipeline;

/// `cardwire serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Listen on this address instead of the config's.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Keep data here instead of the config's data_dir.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Turn the admin API on with this bearer token (overrides the config's admin_token).
    #[arg(long, env = "CARDWIRE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
}

pub(super) fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let (mut config, pipeline) = match load(args.config.config.as_deref()) {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(token) = args.admin_token.filter(|t| !t.is_empty()) {
        config.admin_token = Some(token);
    }
    if let Some(dir) = args.data_dir {
        // A flag is relative to the working directory, not to the config file.
        config.data_dir = std::env::current_dir()?.join(dir);
    }
    tracing::info!(
        tcache_max = tikv_jemalloc_ctl::opt::tcache_max::read().unwrap_or(0),
        "allocator"
    );
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let signal = crate::app::shutdown_signal();
        tokio::pin!(signal);
        let mut server = crate::app::Server::start(config.clone(), pipeline).await?;
        // Opened again, it listens where it listened (port 0 resolved).
        config.listen = server.addr();
        loop {
            tokio::select! {
                _ = &mut signal => return server.run_until(async {}).await,
                _ = server.broken() => {}
            }
            // sled stopped writing (a full disk): stop, and open the store again until it
            // opens, recovering what reached the disk; no operator needed.
            if let Err(e) = server.stop().await {
                tracing::warn!(error = %crate::error::ErrorChain(e.as_ref()), "stopping after the store's error");
            }
            server = loop {
                let wait = tokio::time::sleep(std::time::Duration::from_secs(2));
                tokio::select! {
                    _ = &mut signal => return Ok(()),
                    _ = wait => {}
                }
                match reopen(&config).await {
                    Ok(server) => break server,
                    Err(e) => tracing::warn!(error = %format!("{e:#}"), "cannot start again yet; retrying in 2 s"),
                }
            };
            tracing::info!("the store is open again; serving");
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Starts the gateway again after its store failed, with the rules and templates as they are
/// on disk now.
pub(super) async fn reopen(config: &Config) -> anyhow::Result<crate::app::Server> {
    let pipeline = Pipeline::load(config).map_err(|p| {
        let first = p.0.first().map(|p| p.to_string()).unwrap_or_default();
        anyhow::anyhow!("the rules or templates do not load: {first}")
    })?;
    crate::app::Server::start(config.clone(), pipeline).await
}

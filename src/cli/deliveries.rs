//! `cardwire deliveries`: a running gateway's deliveries, through its admin API.

use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};

use super::client::*;

/// `cardwire deliveries`.
#[derive(Debug, Args)]
pub struct DeliveriesArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    action: DeliveriesAction,
}

/// What to do with deliveries.
#[derive(Debug, Subcommand)]
pub enum DeliveriesAction {
    /// List deliveries (all pages).
    List {
        /// queued, retrying, dead or delivered.
        #[arg(long)]
        state: Option<String>,
        /// Only this connection's.
        #[arg(long)]
        connection: Option<String>,
    },
    /// Show one delivery with every attempt.
    Show {
        /// The delivery id (dlv_…).
        id: String,
    },
    /// Queue dead letters again: one by id, or every one (of a connection) with --all.
    Retry {
        /// The delivery id (dlv_…).
        id: Option<String>,
        /// Every dead letter (with --connection: that connection's).
        #[arg(long, conflicts_with = "id")]
        all: bool,
        /// With --all: only this connection's.
        #[arg(long, requires = "all")]
        connection: Option<String>,
    },
}

pub(super) fn deliveries(args: &DeliveriesArgs) -> anyhow::Result<ExitCode> {
    let api = args.server.client()?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        match &args.action {
            DeliveriesAction::List { state, connection } => {
                let query = deliveries_query(state.as_deref(), connection.as_deref());
                for d in api.all_deliveries(&query).await? {
                    println!(
                        "{}  {:9}  {}  {}  attempts={}  {}",
                        d["id"].as_str().unwrap_or("?"),
                        d["state"].as_str().unwrap_or("?"),
                        d["connection"].as_str().unwrap_or("?"),
                        d["rule"].as_str().unwrap_or("?"),
                        d["attempts"],
                        d["reason"]
                            .as_str()
                            .or(d["last_error"].as_str())
                            .unwrap_or(""),
                    );
                }
            }
            DeliveriesAction::Show { id } => {
                let d = api
                    .call(reqwest::Method::GET, &format!("/api/deliveries/{id}"), None)
                    .await?;
                println!("{}", serde_json::to_string_pretty(&d)?);
            }
            DeliveriesAction::Retry { id: Some(id), .. } => {
                api.retry(id).await?;
                println!("queued {id} again");
            }
            DeliveriesAction::Retry {
                id: None,
                all: true,
                connection,
            } => {
                let query = deliveries_query(Some("dead"), connection.as_deref());
                let ids: Vec<String> = api
                    .all_deliveries(&query)
                    .await?
                    .iter()
                    .filter_map(|d| d["id"].as_str().map(str::to_string))
                    .collect();
                // One by one, so a long retry shows its progress.
                let bar = indicatif::ProgressBar::new(ids.len() as u64);
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{bar:40} {pos}/{len} dead letters queued again ({eta})",
                    )
                    .expect("a valid template"),
                );
                for id in &ids {
                    api.retry(id).await?;
                    bar.inc(1);
                }
                bar.finish();
                println!(
                    "queued {} again",
                    crate::render::plural_count(ids.len(), "dead letter")
                );
            }
            DeliveriesAction::Retry {
                id: None,
                all: false,
                ..
            } => bail!("give a delivery id, or --all"),
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The query of `GET /api/deliveries` for a state and a connection, as a whole page.
pub(super) fn deliveries_query(state: Option<&str>, connection: Option<&str>) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("limit", "1000");
    if let Some(s) = state {
        q.append_pair("state", s);
    }
    if let Some(c) = connection {
        q.append_pair("connection", c);
    }
    q.finish()
}

//! `cardwire connections`: a running gateway's connections, through its admin API.

use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};

use super::client::*;

/// `cardwire connections`.
#[derive(Debug, Args)]
pub struct ConnectionsArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    action: ConnectionsAction,
}

/// What to do with connections.
#[derive(Debug, Subcommand)]
pub enum ConnectionsAction {
    /// List them (URLs masked).
    List,
    /// Pause one: it receives nothing until resumed.
    Pause {
        /// The connection id (con_…).
        id: String,
    },
    /// Resume a paused one.
    Resume {
        /// The connection id (con_…).
        id: String,
    },
    /// Remove one; its URL is erased.
    Remove {
        /// The connection id (con_…).
        id: String,
    },
    /// Choose its digest: cards wait and go out together at the chosen time.
    Digest {
        /// The connection id (con_…).
        id: String,
        /// Every so often, e.g. 1h.
        #[arg(long, conflicts_with_all = ["at", "off"])]
        every: Option<String>,
        /// At a time of day, e.g. 09:00.
        #[arg(long, conflicts_with = "off")]
        at: Option<String>,
        /// With --at: the weekdays, e.g. mon,tue,wed,thu,fri (default every day).
        #[arg(long, requires = "at", value_delimiter = ',')]
        days: Vec<String>,
        /// With --at: the time zone, e.g. Europe/Berlin (default UTC).
        #[arg(long, requires = "at")]
        tz: Option<String>,
        /// No digest: cards as they happen.
        #[arg(long)]
        off: bool,
    },
}

pub(super) fn connections(args: &ConnectionsArgs) -> anyhow::Result<ExitCode> {
    let api = args.server.client()?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let (method, path, body) = match &args.action {
            ConnectionsAction::List => (reqwest::Method::GET, "/api/connections".to_string(), None),
            ConnectionsAction::Pause { id } => (
                reqwest::Method::PATCH,
                format!("/api/connections/{id}"),
                Some(serde_json::json!({"paused": true})),
            ),
            ConnectionsAction::Resume { id } => (
                reqwest::Method::PATCH,
                format!("/api/connections/{id}"),
                Some(serde_json::json!({"paused": false})),
            ),
            ConnectionsAction::Remove { id } => (
                reqwest::Method::DELETE,
                format!("/api/connections/{id}"),
                None,
            ),
            ConnectionsAction::Digest { id, every, at, days, tz, off } => {
                let digest = match (every, at, off) {
                    (Some(e), _, _) => serde_json::json!({"every": e}),
                    (None, Some(a), _) => {
                        let mut d = serde_json::json!({"at": a, "tz": tz.clone().unwrap_or_else(|| "UTC".into())});
                        if !days.is_empty() {
                            d["days"] = serde_json::json!(days);
                        }
                        d
                    }
                    (None, None, true) => serde_json::Value::Null,
                    (None, None, false) => bail!("give --every, --at or --off"),
                };
                (reqwest::Method::PATCH, format!("/api/connections/{id}"), Some(serde_json::json!({"digest": digest})))
            }
        };
        let answer = api.call(method, &path, body).await?;
        match &args.action {
            ConnectionsAction::List => {
                for c in answer.as_array().into_iter().flatten() {
                    let channels = c["channels"].as_array().filter(|a| !a.is_empty()).map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str())
                            .collect::<Vec<_>>()
                            .join(",")
                    });
                    println!(
                        "{}  {:8}  {:9}  {:7}  {}  {}  channels={}",
                        c["id"].as_str().unwrap_or("?"),
                        c["kind"].as_str().unwrap_or("?"),
                        c["via"].as_str().unwrap_or("?"),
                        if c["paused"].as_bool() == Some(true) {
                            "paused"
                        } else {
                            "active"
                        },
                        c["name"].as_str().unwrap_or("?"),
                        c["url"].as_str().unwrap_or("?"),
                        channels.as_deref().unwrap_or("all"),
                    );
                }
            }
            ConnectionsAction::Pause { id } => println!("paused {id}"),
            ConnectionsAction::Resume { id } => println!("resumed {id}"),
            ConnectionsAction::Remove { id } => println!("removed {id}"),
            ConnectionsAction::Digest { id, .. } => {
                let c = answer;
                println!("{id}: digest {}", if c["digest"].is_null() { "off".to_string() } else { c["digest"].to_string() });
            }
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

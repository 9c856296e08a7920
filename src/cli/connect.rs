//! `cardwire connect snippet`: the Connect to Office 365 button's HTML.

use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};

use super::shared::*;
use crate::config::Config;

/// `cardwire connect`.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    #[command(subcommand)]
    pub action: ConnectAction,
}

/// What to do about the Connect button.
#[derive(Debug, Subcommand)]
pub enum ConnectAction {
    /// Print the HTML snippet of the Connect to Office 365 button, to embed in your own app.
    Snippet(ConfigArg),
}

pub(super) fn snippet(args: &ConfigArg) -> anyhow::Result<ExitCode> {
    let config = match Config::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(p) => return Ok(print_problems(p)),
    };
    let emulator = args.config.is_none() || config.emulator();
    let Some(app_id) = config.connect.app_id_or_dev(emulator) else {
        bail!("connect.app_id is not set in the config");
    };
    let base = config.public_url();
    let connect = config.connect.url.clone().unwrap_or_else(|| {
        if emulator {
            format!("{base}/emulator/connectors/Connect")
        } else {
            "https://outlook.office.com/connectors/Connect".to_string()
        }
    });
    let mut url = url::Url::parse(&connect).context("connect.url is not a URL")?;
    url.query_pairs_mut()
        .append_pair("state", "STATE")
        .append_pair("app_id", &app_id)
        .append_pair("callback_url", &format!("{base}/connect/callback"));
    let href = url.as_str().replace("state=STATE", "state={state}");
    println!("<!-- Connect to Office 365: replace {{state}} with a fresh, unguessable value you keep for this user. -->");
    println!(
        "<a href=\"{}\"><img src=\"{base}/assets/connect-button.svg\" alt=\"Connect to Office 365\"></a>",
        crate::html::esc(&href)
    );
    Ok(ExitCode::SUCCESS)
}

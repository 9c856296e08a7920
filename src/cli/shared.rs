//! What the commands share: the `--config` argument, the `--kind` values, loading the config
//! and the pipeline, printing problems.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use crate::config::Config;
use crate::pipeline::Pipeline;
use crate::render::CardKind;

/// The config file option.
#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The config file (YAML). Without one, built-in defaults apply.
    #[arg(long, short, env = "CARDWIRE_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Card kinds on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KindArg {
    /// MessageCard, for Office 365 connectors.
    Teams,
    /// Adaptive Card in a message envelope, for Teams Workflows.
    Workflow,
    /// Block Kit, for Slack incoming webhooks.
    Slack,
    /// An embed, for Discord webhooks.
    Discord,
    /// cardsV2, for Google Chat incoming webhooks.
    #[value(name = "google_chat")]
    GoogleChat,
    /// An attachment, for Mattermost incoming webhooks.
    Mattermost,
}

impl From<KindArg> for CardKind {
    fn from(k: KindArg) -> Self {
        match k {
            KindArg::Teams => CardKind::Teams,
            KindArg::Workflow => CardKind::Workflow,
            KindArg::Slack => CardKind::Slack,
            KindArg::Discord => CardKind::Discord,
            KindArg::GoogleChat => CardKind::GoogleChat,
            KindArg::Mattermost => CardKind::Mattermost,
        }
    }
}

/// Loads the config and the pipeline; problems are printed and turn into exit code 1.
pub(super) fn load(config: Option<&Path>) -> Result<(Config, Pipeline), ExitCode> {
    let config = Config::load(config).map_err(print_problems)?;
    let pipeline = Pipeline::load(&config).map_err(print_problems)?;
    Ok((config, pipeline))
}

pub(super) fn print_problems(p: crate::yaml::Problems) -> ExitCode {
    for problem in &p.0 {
        eprintln!("{problem}");
    }
    eprintln!(
        "{} problem{}",
        p.0.len(),
        if p.0.len() == 1 { "" } else { "s" }
    );
    ExitCode::FAILURE
}

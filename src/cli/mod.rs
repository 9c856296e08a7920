//! The command line: `serve`, `check`, `render`, `connections`, `deliveries`, `migrate`,
//! `connect snippet`, and `completions` and `man` ([`shell`]), one file each, with the admin API's client ([`client`]) and what the
//! commands share ([`shared`]) apart.
//!
//! Arguments are parsed by clap, then each command loads what it needs through the library
//! and returns an exit code from one place: 0 for success, 1 when the user's files or input
//! have problems (printed one per line as `file:line:col: message`), 2 for usage errors
//! (clap's own).

pub mod check;
pub mod client;
pub mod connect;
pub mod connections;
pub mod deliveries;
pub mod migrate;
pub mod render;
pub mod serve;
pub mod shared;
pub mod shell;

pub use check::{kind_gaps, shared_state_note, ConnectionSeen, SchemaWhich};
pub use client::ServerArgs;
pub use connect::{ConnectAction, ConnectArgs};
pub use connections::{ConnectionsAction, ConnectionsArgs};
pub use deliveries::{DeliveriesAction, DeliveriesArgs};
pub use migrate::MigrateArgs;
pub use render::RenderArgs;
pub use serve::ServeArgs;
pub use shared::{ConfigArg, KindArg};

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use check::CheckArgs;

/// cardwire: a gateway that turns upstream webhooks into chat cards.
#[derive(Debug, Parser)]
#[command(name = "cardwire", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Log output formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve(ServeArgs),
    /// Check the config, rules and templates; print every problem.
    Check(CheckArgs),
    /// Render the cards a payload would produce, one JSON line per matching rule.
    Render(RenderArgs),
    /// Manage the connections of a running gateway (through its admin API).
    Connections(ConnectionsArgs),
    /// See and retry deliveries of a running gateway (through its admin API).
    Deliveries(DeliveriesArgs),
    /// The PostgreSQL schema (`store.postgres`): upgrade it, or with --check say whether it is
    /// up to date without changing it.
    Migrate(MigrateArgs),
    /// The Connect to Office 365 button.
    Connect(ConnectArgs),
    /// Print shell completions: `cardwire completions bash > /etc/bash_completion.d/cardwire`.
    Completions(shell::CompletionsArgs),
    /// Print the man page (roff): `cardwire man > /usr/local/share/man/man1/cardwire.1`.
    Man,
}

/// Runs a parsed command line; the one place exit codes are decided.
pub fn run(cli: Cli) -> ExitCode {
    init_tracing(cli.log_format);
    let result = match cli.command {
        Command::Serve(args) => serve::serve(args),
        Command::Check(args) => check::check(&args),
        Command::Render(args) => render::render(&args),
        Command::Connections(args) => connections::connections(&args),
        Command::Deliveries(args) => deliveries::deliveries(&args),
        Command::Migrate(args) => migrate::migrate(&args),
        Command::Connect(ConnectArgs {
            action: ConnectAction::Snippet(c),
        }) => connect::snippet(&c),
        Command::Completions(args) => {
            shell::completions(&args, <Cli as clap::CommandFactory>::command())
        }
        Command::Man => shell::man(<Cli as clap::CommandFactory>::command()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cardwire: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

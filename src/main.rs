//! The `cardwire` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    cardwire::cli::run(cardwire::cli::Cli::parse())
}

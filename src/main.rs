//! The `cardwire` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;

/// jemalloc rather than the system allocator: the hot path allocates and frees many small
/// objects from several threads, where glibc's malloc spent most of its time in arena locks
/// and kept freed memory in per-thread arenas. Its options are compiled in
/// (`.cargo/config.toml`).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    cardwire::cli::run(cardwire::cli::Cli::parse())
}

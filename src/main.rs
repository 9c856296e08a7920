//! The `cardwire` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;

/// jemalloc rather than the system allocator: the hot path allocates and frees many small
/// objects from several threads, where glibc's malloc spent ~20 % of the time (arena locks,
/// `malloc_consolidate`) and kept freed memory in per-thread arenas.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The environment variable jemalloc reads its options from (its name carries this build's
/// symbol prefix).
const MALLOC_CONF_VAR: &str = "_RJEM_MALLOC_CONF";

/// jemalloc's options for `serve`, unless the environment sets its own. In A/B runs of the
/// benchmark, at the same CPU per event:
/// - thread caches of objects up to 4 KB instead of 32 KB: peak RSS under load 67–69 → 57–59 MB
///   (threads that mostly free, such as sled's I/O pool running deferred drops, kept large
///   objects cached that no thread reused; `tcache:false` saved more, 49 MB, but cost ~10 %
///   more CPU);
/// - freed pages returned within about 1 s instead of 10 s: 57–59 → 55 MB.
const MALLOC_CONF: &str = "tcache_max:4096,dirty_decay_ms:1000";

fn main() -> ExitCode {
    let cli = cardwire::cli::Cli::parse();
    if matches!(cli.command, cardwire::cli::Command::Serve(_)) {
        with_malloc_conf();
    }
    cardwire::cli::run(cli)
}

/// Runs this program again with [`MALLOC_CONF`] in its environment, unless the variable is
/// set already. jemalloc reads it in a constructor that runs before `main`, so setting it here
/// would come too late; `exec` keeps the process id, arguments and open descriptors. Returns
/// (and the defaults stay) only if the variable was set or the exec failed. The `allocator` line
/// that `serve` logs shows what jemalloc took.
fn with_malloc_conf() {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        if std::env::var_os(MALLOC_CONF_VAR).is_some() {
            return;
        }
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let mut args = std::env::args_os();
        let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
        let _failed = std::process::Command::new(&exe)
            .arg0(arg0)
            .args(args)
            .env(MALLOC_CONF_VAR, MALLOC_CONF)
            .exec();
    }
}

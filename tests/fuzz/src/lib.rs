//! Fuzz targets for every parser of cardwire that takes outside input.
//!
//! In: bytes from a fuzzer (AFL++ through `cargo afl`), or files to replay. Out: nothing; a
//! target panics when a property fails, which the fuzzer records as a crash. Guarantees: each
//! target checks what its parser promises, against an oracle where one exists, not only that
//! it does not crash:
//!
//! - `needs`: the payload projection parser accepts exactly what a full parse accepts, and
//!   gives a part of the full value (every kept member equal; whole paths whole).
//! - `ndjson`: line splitting gives the same lines however the body is cut into chunks.
//! - `verify`: a signature, GitLab token or bearer token passes exactly when it is right.
//! - `retry_after`: `Retry-After` gives at most a day, and a number of seconds as written.
//! - `callback`: the Connect callback's query gives an error, or everything a connection needs.
//! - `config`, `rules`: YAML config and rule files load or give problems that point into the
//!   file (line and column inside it).
//! - `templates`: a template loads or gives a problem inside it; one that loads renders a card
//!   or an error, for every kind.
//!
//! Each binary under `src/bin` runs one target: under `cargo afl build` (cfg `fuzzing`) as an
//! AFL++ persistent-mode harness, otherwise over the files or folders given (the replay that
//! `.ci/run` builds and the tests run on the seeds and on `found/`).

pub mod seeds;
pub mod targets;

/// Runs `target` under AFL++, or over the files and folders named on the command line.
pub fn main(target: fn(&[u8])) {
    #[cfg(fuzzing)]
    {
        afl::fuzz!(|data: &[u8]| target(data));
    }
    #[cfg(not(fuzzing))]
    {
        let args: Vec<std::path::PathBuf> = std::env::args_os().skip(1).map(Into::into).collect();
        if args.is_empty() {
            eprintln!("usage: <target> FILE|DIR... (replays each file; `cargo afl build` builds the fuzzer)");
            std::process::exit(2);
        }
        let mut n = 0;
        for path in args {
            for file in files(&path) {
                target(&std::fs::read(&file).expect("readable input"));
                n += 1;
            }
        }
        eprintln!("{n} inputs replayed");
    }
}

/// The files under `path` (itself, when it is a file), in name order.
pub fn files(path: &std::path::Path) -> Vec<std::path::PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut out: Vec<_> = std::fs::read_dir(path)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    out.sort();
    out.into_iter().flat_map(|p| files(&p)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every seed, and every case a fuzzer found (`found/<target>/`), passes its target.
    #[test]
    fn seeds_and_found_cases_pass() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        for (name, target) in targets::ALL {
            let seeds = seeds::for_target(name);
            assert!(!seeds.is_empty(), "{name}: no seeds");
            for (file, bytes) in &seeds {
                let caught = std::panic::catch_unwind(|| target(bytes));
                assert!(caught.is_ok(), "{name}: seed {file} fails");
            }
            for file in files(&root.join("found").join(name)) {
                let bytes = std::fs::read(&file).unwrap();
                let caught = std::panic::catch_unwind(|| target(&bytes));
                assert!(caught.is_ok(), "{name}: {} fails", file.display());
            }
        }
    }
}

//! Installing cardwire: the shell completions and man page it prints, the package that
//! `cargo install` builds from (every file the binary embeds in it), and the systemd units of
//! `examples/deploy/` as systemd reads them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::utils::root;

/// What `cmd` prints, after it succeeds.
fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn cardwire(args: &[&str]) -> String {
    stdout_of(Command::new(env!("CARGO_BIN_EXE_cardwire")).args(args))
}

#[test]
fn completions_for_every_shell_name_every_command() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let script = cardwire(&["completions", shell]);
        for command in [
            "serve",
            "check",
            "render",
            "connections",
            "deliveries",
            "migrate",
            "completions",
            "man",
        ] {
            assert!(script.contains(command), "{shell}: no {command}");
        }
    }
    assert!(cardwire(&["completions", "zsh"]).starts_with("#compdef cardwire"));
    assert!(cardwire(&["completions", "bash"]).contains("complete -F _cardwire"));
    // An unknown shell is a usage error naming the ones there are.
    let out = Command::new(env!("CARGO_BIN_EXE_cardwire"))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bash"));
}

#[test]
fn the_man_page_has_every_command_and_its_options() {
    let page = cardwire(&["man"]);
    assert!(
        page.starts_with(".ie \\n(.g .ds Aq") || page.contains(".TH cardwire 1"),
        "{}",
        &page[..200.min(page.len())]
    );
    assert!(page.contains(".TH cardwire 1"));
    assert!(page.contains(".SH NAME") && page.contains(".SH SYNOPSIS"));
    for section in ["SERVE", "CHECK", "RENDER", "MIGRATE", "COMPLETIONS"] {
        assert!(
            page.contains(&format!(".SH \"CARDWIRE {section}\"")),
            "no {section}"
        );
    }
    // An option of a command, described.
    assert!(
        page.contains("from\\-sled") || page.contains("from-sled"),
        "migrate's --from-sled"
    );
    // roff, as man reads it, when man is here.
    if Command::new("man").arg("--version").output().is_ok() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cardwire.1");
        std::fs::write(&file, &page).unwrap();
        let out = Command::new("man")
            .args(["-l", "-P", "cat"])
            .arg(&file)
            .env("MANWIDTH", "100")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("cardwire"),
            "man read nothing: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The files a source file embeds: `include_str!` / `include_bytes!` relative to it, and
/// `include_dir!("$CARGO_MANIFEST_DIR/…")` (every file under the folder).
fn embedded(file: &Path, text: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for (mac, relative) in [
        ("include_str!(\"", true),
        ("include_bytes!(\"", true),
        ("include_dir!(\"", false),
    ] {
        for piece in text.split(mac).skip(1) {
            let Some(path) = piece.split('"').next() else {
                continue;
            };
            let full = if relative {
                file.parent().unwrap().join(path)
            } else {
                root().join(path.trim_start_matches("$CARGO_MANIFEST_DIR/"))
            };
            if full.is_dir() {
                out.extend(crate::utils::walk(&full));
            } else {
                out.push(full);
            }
        }
    }
    out
}

#[test]
fn the_package_holds_every_file_the_binary_embeds() {
    let listed: BTreeSet<String> = stdout_of(
        Command::new(env!("CARGO"))
            .args(["package", "--list", "--allow-dirty", "--offline"])
            .current_dir(root()),
    )
    .lines()
    .map(str::to_string)
    .collect();
    let root = std::fs::canonicalize(root()).unwrap();
    let mut needed = BTreeSet::new();
    for file in crate::utils::walk(&root.join("src")) {
        if file.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&file).unwrap();
            for f in embedded(&file, &text) {
                let f =
                    std::fs::canonicalize(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
                needed.insert(
                    f.strip_prefix(&root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    // What the binary is built from: rules, templates, the pages' assets, the docs, README.
    for must in [
        "README.md",
        "rules/github.yaml",
        "src/docs/connecting.md",
        "src/html/assets/style.css",
    ] {
        assert!(needed.contains(must), "the scan misses {must}: {needed:?}");
    }
    assert!(needed.iter().any(|f| f.starts_with("templates/")));
    let missing: Vec<&String> = needed.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "not in `cargo package --list`: {missing:?}"
    );
}

/// The units of `examples/deploy/`, as `systemd-analyze verify` reads them (their binary the
/// one built here), when systemd is on the machine.
#[test]
fn the_systemd_units_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze is not here: the units are not checked");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for unit in ["cardwire.service", "cardwire-hardened.service"] {
        let text = std::fs::read_to_string(root().join("examples/deploy").join(unit))
            .unwrap()
            .replace("/usr/local/bin/cardwire", env!("CARGO_BIN_EXE_cardwire"));
        if unit == "cardwire-hardened.service" {
            for hardening in [
                "NoNewPrivileges=yes",
                "PrivateTmp=yes",
                "ProtectSystem=strict",
                "StateDirectory=cardwire",
            ] {
                assert!(text.contains(hardening), "{unit}: {hardening}");
            }
        }
        let file = dir.path().join(unit);
        std::fs::write(&file, text).unwrap();
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&file)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        // Lines about the unit itself (not the host's other units, which a container may lack).
        let about: Vec<&str> = said.lines().filter(|l| l.contains(unit)).collect();
        assert!(out.status.success() && about.is_empty(), "{unit}: {said}");
    }
}

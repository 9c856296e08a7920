//! The `cardwire` binary's `check` and `render` commands.

use std::process::Command;

use crate::utils::root;

fn cardwire() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cardwire"));
    c.env_remove("CARDWIRE_CONFIG");
    c
}

#[test]
fn check_passes_on_what_ships() {
    let dir = tempfile::tempdir().unwrap();
    // Without a config file, in a folder without rules/, the built-in copies are checked.
    let out = cardwire()
        .arg("check")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("rules (built in)"));
    // And the repository's own folders.
    let out = cardwire()
        .arg("check")
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_reports_every_problem_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(
        rules.join("bad.yaml"),
        "- name: a\n  source: githubb\n  event: push\n  template: github/push\n- name: b\n  source: github\n  event: push\n  tempalte: github/push\n",
    )
    .unwrap();
    let config = dir.path().join("cardwire.yaml");
    std::fs::write(
        &config,
        format!(
            "sources:\n  github: {{kind: github}}\ntemplates_dir: {}/templates\n",
            root().display()
        ),
    )
    .unwrap();
    let out = cardwire()
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    let bad = rules.join("bad.yaml");
    assert!(
        lines[0].starts_with(&format!(
            "{}:2:11: rule \"a\": unknown source \"githubb\"",
            bad.display()
        )),
        "{err}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "{}:8:3: rule \"b\": unknown field `tempalte`: did you mean `template`?",
            bad.display()
        )),
        "{err}"
    );
    assert_eq!(lines[2], "2 problems");
}

#[test]
fn check_reports_config_errors_with_positions() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.yaml");
    std::fs::write(
        &config,
        "listen: 127.0.0.1:1\nadmin_token: ${CARDWIRE_TEST_UNSET_VARIABLE}\n",
    )
    .unwrap();
    let out = cardwire()
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "{}:2:14: environment variable CARDWIRE_TEST_UNSET_VARIABLE is not set",
            config.display()
        )),
        "{err}"
    );
}

#[test]
fn render_prints_one_line_per_matching_rule() {
    let payload = root().join("tests/fixtures/github/pull_request.closed-merged.3.derived.json");
    for kind in ["teams", "workflow"] {
        let out = cardwire()
            .args(["render", "--source", "github", "--payload"])
            .arg(&payload)
            .args(["--header", "X-GitHub-Event: pull_request", "--kind", kind])
            .current_dir(root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<serde_json::Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 1, "{stdout}");
        assert_eq!(lines[0]["rule"], "github-pr-merged");
        assert_eq!(lines[0]["kind"], kind);
        assert!(lines[0]["body"].is_object());
    }
}

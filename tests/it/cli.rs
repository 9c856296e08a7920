//! The `cardwire` binary's commands, run as a subprocess: `check`, `render`, `serve`, `connections`,
//! `deliveries` and `connect`.

use std::process::Command;

use crate::utils::root;

fn cardwire() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cardwire"));
    c.env_remove("CARDWIRE_CONFIG")
        .env_remove("CARDWIRE_ADMIN_TOKEN");
    c
}

/// `cardwire check --config <config>`, run to the end.
fn check_config(config: &std::path::Path) -> std::process::Output {
    cardwire()
        .args(["check", "--config"])
        .arg(config)
        .output()
        .unwrap()
}

/// A copy of the shipped templates under `dir`, and a config (`dir/c.yaml`) that takes them
/// with the shipped rules and every kind of source.
fn shipped_templates_copy(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let templates = dir.join("templates");
    let cp = Command::new("cp")
        .arg("-r")
        .arg(root().join("templates"))
        .arg(&templates)
        .status()
        .unwrap();
    assert!(cp.success());
    let config = dir.join("c.yaml");
    std::fs::write(
        &config,
        format!("rules_dir: {}/rules\ntemplates_dir: templates\nsources:\n  github: {{kind: github}}\n  gitlab: {{kind: gitlab}}\n  alertmanager: {{kind: alertmanager}}\n", root().display()),
    )
    .unwrap();
    (templates, config)
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
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("rules (built in)"));
    // Which kinds the templates render, and how: every shipped one is portable.
    assert!(
        stdout.contains("kinds: 19 templates: teams, workflow, slack, discord, google_chat, mattermost by the portable template"),
        "{stdout}"
    );
    // Which rules key their cards, and what a later card of a key does on each kind.
    assert!(
        stdout.contains("rules key their cards (update: replace): ")
            && stdout.contains("github-pr-opened")
            && stdout.contains("  a later card with the same key on discord: edits the first message\n")
            && stdout.contains("  a later card with the same key on google_chat: replies in the first message's thread\n"),
        "{stdout}"
    );
    // A template of one kind beside a portable one overrides it for that kind, and says so.
    let (templates, config) = shipped_templates_copy(dir.path());
    std::fs::write(
        templates.join("github/push.slack.hbs"),
        r#"{"text": "pushed {{payload.ref}}"}"#,
    )
    .unwrap();
    let out = check_config(&config);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    for line in [
        "kinds: 18 templates: teams, workflow, slack, discord, google_chat, mattermost by the portable template",
        "kinds: 1 template: teams, workflow, discord, google_chat, mattermost by the portable template; slack by its own template",
    ] {
        assert!(stdout.contains(line), "{line} in {stdout}");
    }
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

/// A config file in `dir` whose only source is a GitHub one named `name`, with the repository's
/// rules and templates.
fn config_with_source(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let config = dir.join("cardwire.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:0\nadmin_token: t0k3n\nsources:\n  {name}: {{kind: github, secret: s3cret}}\n\
             rules_dir: {root}/rules\ntemplates_dir: {root}/templates\n",
            root = root().display()
        ),
    )
    .unwrap();
    config
}

/// Regression: a config that declares only `github` refused to start with the shipped rules
/// (one "unknown source" error per GitLab and Alertmanager rule). They load inactive, listed
/// once by `check`, in the start-up log and on /api/rules; a typo still fails.
#[tokio::test]
async fn a_partial_config_keeps_the_shipped_rules_of_other_sources_inactive() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_source(dir.path(), "github");
    let out = check_config(&config);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = "13 rules inactive: sources alertmanager, gitlab are not configured";
    assert_eq!(stdout.matches(summary).count(), 1, "{stdout}");

    // serve: logged once at start, and /api/rules says which rule is inactive and why.
    let mut cmd = cardwire();
    cmd.args(["serve", "--config"]).arg(&config);
    let (mut child, addr, log) = crate::utils::spawn_serve(cmd);
    let rules = crate::utils::api_get(&addr, "/api/rules", "t0k3n").await;
    let _ = child.kill();
    let _ = child.wait();
    let log: Vec<String> = log.try_iter().collect();
    assert_eq!(
        log.iter().filter(|l| l.contains(summary)).count(),
        1,
        "{log:#?}"
    );
    let rules = rules["rules"].as_array().unwrap().clone();
    let inactive: Vec<&serde_json::Value> = rules
        .iter()
        .filter(|r| r.get("inactive").is_some())
        .collect();
    assert_eq!(inactive.len(), 13);
    assert!(inactive.iter().all(|r| r["source"] != "github"));
    let gitlab = inactive.iter().find(|r| r["source"] == "gitlab").unwrap();
    assert_eq!(gitlab["inactive"], "source gitlab not configured");
    assert!(rules
        .iter()
        .any(|r| r["source"] == "github" && r.get("inactive").is_none()));
    // A typo of a configured source is still an error: see
    // check_reports_every_problem_with_file_line_and_column (`githubb`).
}

/// A newcomer's slip: the config's only source is `githb`. Every shipped rule is inactive and
/// pushes to /hooks/githb make no card; `check` and the start-up log name the source with the
/// one the rules take.
#[tokio::test]
async fn a_source_typed_wrong_in_the_config_is_named_with_the_one_meant() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_source(dir.path(), "githb");
    let github_rules = std::fs::read_to_string(root().join("rules/github.yaml"))
        .unwrap()
        .matches("source: github")
        .count();
    let said = format!(
        "source githb: no rule takes it; did you mean github? {github_rules} rules take github"
    );
    let out = check_config(&config);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("warning: {said}")), "{stdout}");
    let mut cmd = cardwire();
    cmd.args(["serve", "--config"]).arg(&config);
    let (mut child, _addr, log) = crate::utils::spawn_serve(cmd);
    let _ = child.kill();
    let _ = child.wait();
    let log: Vec<String> = log.try_iter().collect();
    assert!(
        log.iter().any(|l| l.contains(&said) && l.contains("WARN")),
        "{log:#?}"
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
    let out = check_config(&config);
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
            "{}:5:3: rule \"b\": missing required key `template`",
            bad.display()
        )),
        "{err}"
    );
    assert!(
        lines[2].starts_with(&format!(
            "{}:8:3: rule \"b\": unknown field `tempalte`: did you mean `template`?",
            bad.display()
        )),
        "{err}"
    );
    assert_eq!(lines[3], "3 problems");
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
    let out = check_config(&config);
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

#[test]
fn the_example_config_shows_every_key_and_loads() {
    let path = root().join("examples/cardwire.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let vars = [
        "CARDWIRE_ADMIN_TOKEN",
        "GITHUB_WEBHOOK_SECRET",
        "GITLAB_WEBHOOK_TOKEN",
        "ALERTMANAGER_TOKEN",
        "DEPLOYS_TOKEN",
    ];
    let mut cmd = cardwire();
    for v in vars {
        cmd.env(v, "x");
    }
    let out = cmd.args(["check", "--config"]).arg(&path).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for key in [
        "listen:",
        "data_dir:",
        "rules_dir:",
        "templates_dir:",
        "public_url:",
        "admin_token:",
        "max_body:",
        "sources:",
        "kind:",
        "secret:",
        "token:",
        "event_header:",
        "event_field:",
        "targets:",
        "allow_http:",
        "allowed_hosts:",
        "connect:",
        "app_id:",
        "delivery:",
        "timeout:",
        "retry_schedule:",
        "store:",
        "postgres:",
        "pool:",
        "lease:",
        "limits:",
        "header_timeout:",
        "body_timeout:",
        "body_min_rate:",
        "max_connections:",
        "keep_message_refs:",
        "updates:",
        "app: true",
        "github_url",
    ] {
        assert!(
            text.contains(key),
            "examples/cardwire.yaml does not show {key}"
        );
    }
    // Without the variables, each unset one is named.
    let out = check_config(&path);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for v in vars {
        assert!(
            err.contains(&format!("environment variable {v} is not set")),
            "{err}"
        );
    }
}

/// The binary alone, with no config and no rules/ or templates/ folder, serves with what is
/// built in, and stops cleanly on SIGTERM.
#[test]
fn serve_runs_with_the_built_in_defaults_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = cardwire();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir", "state"])
        .env("CARDWIRE_ADMIN_TOKEN", "from-env")
        .current_dir(dir.path());
    let (mut child, addr, _log) = crate::utils::spawn_serve(cmd);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let health = client
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), 200);
        let push = std::fs::read(root().join("tests/fixtures/github/push.event.4.json")).unwrap();
        let res = client
            .post(format!("http://{addr}/hooks/github"))
            .header("X-GitHub-Event", "push")
            .body(push)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
        // The token from the environment turned the admin API on.
        let list = client
            .get(format!("http://{addr}/api/connections"))
            .bearer_auth("from-env")
            .send()
            .await
            .unwrap();
        assert_eq!(list.status(), 200);
    });
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());
    assert!(
        dir.path().join("state").is_dir(),
        "sled lives under --data-dir"
    );
}

#[test]
fn render_explain_says_why_each_rule_did_not_match() {
    let payload = root().join("tests/fixtures/github/pull_request.closed.3.json");
    let out = cardwire()
        .args(["render", "--explain", "--source", "github", "--payload"])
        .arg(&payload)
        .args(["--header", "X-GitHub-Event: pull_request"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("✓ github-pr-closed\n"), "{stdout}");
    assert!(
        stdout.contains("✗ github-pr-merged: when: pull_request.merged is false, expected true\n"),
        "{stdout}"
    );
    assert!(
        stdout
            .contains("✗ github-pr-opened: action is \"closed\", the rule wants one of [opened]\n"),
        "{stdout}"
    );
}

#[test]
fn print_schema_prints_the_rule_file_schema() {
    let out = cardwire()
        .args(["check", "--print-schema"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(schema["title"], "cardwire rule file");
    assert!(schema["definitions"]["rule"]["properties"]["when"].is_object());
    let out = cardwire()
        .args(["check", "--print-schema", "card"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(schema["title"], "cardwire portable card");
    assert!(schema["properties"]["facts"].is_object());
}

/// With file watching off, SIGHUP alone reloads: a new rule appears in GET /api/rules.
#[test]
fn sighup_reloads_rules() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::copy(root().join("rules/github.yaml"), rules.join("github.yaml")).unwrap();
    let config = dir.path().join("cardwire.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:0\nwatch_files: false\nadmin_token: t\ntemplates_dir: {}/templates\nsources:\n  github: {{kind: github}}\n",
            root().display()
        ),
    )
    .unwrap();
    let mut cmd = cardwire();
    cmd.args(["serve", "--config"]).arg(&config);
    let (mut child, addr, log) = crate::utils::spawn_serve(cmd);
    let count = |rt: &tokio::runtime::Runtime| {
        rt.block_on(async {
            let v = crate::utils::api_get(&addr, "/api/rules", "t").await;
            v["rules"].as_array().unwrap().len()
        })
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let before = count(&rt);
    let mut text = std::fs::read_to_string(rules.join("github.yaml")).unwrap();
    text.push_str("\n- name: extra\n  source: github\n  event: star\n  template: github/release\n");
    std::fs::write(rules.join("github.yaml"), text).unwrap();
    // Without watching, nothing watches the folders (the start-up log says what is watched),
    // so the change waits for SIGHUP.
    let started: Vec<String> = log.try_iter().collect();
    assert!(
        started.iter().any(|l| l.contains("listening"))
            && !started.iter().any(|l| l.contains("watching for changes")),
        "{started:#?}"
    );
    assert_eq!(count(&rt), before);
    assert!(Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while count(&rt) != before + 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP did not reload"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());
}

/// `check` renders every template with the built-in sample payloads of its rules' events: a
/// template reading a field those payloads never have is reported at its line and column.
#[test]
fn check_reports_a_template_field_the_samples_never_have() {
    let dir = tempfile::tempdir().unwrap();
    let (templates, config) = shipped_templates_copy(dir.path());
    // A portable template: the problem is reported in the .card.hbs, whatever kind shows it.
    let file = templates.join("github/release.card.hbs");
    let text = std::fs::read_to_string(&file).unwrap();
    let text = text.replacen(
        "\"severity\": \"success\",",
        "\"severity\": \"success\", \"footer\": \"{{payload.release.no_such_field}}\",",
        1,
    );
    std::fs::write(&file, &text).unwrap();
    let line = text
        .lines()
        .position(|l| l.contains("no_such_field"))
        .unwrap()
        + 1;
    let out = check_config(&config);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let want = format!(
        "{}:{line}:",
        dir.path()
            .join("templates")
            .join("github/release.card.hbs")
            .display()
    );
    assert!(err.starts_with(&want), "{err}");
    assert!(
        err.contains(
            "rule \"github-release-published\": with the sample payload github/release.published."
        ),
        "{err}"
    );
    assert!(err.contains("no_such_field"), "{err}");
}

/// `cardwire connections` drives a running gateway's admin API.
#[tokio::test(flavor = "multi_thread")]
async fn connections_commands_list_pause_resume_remove() {
    let g = crate::utils::Gateway::start().await;
    let rx = crate::utils::Receiver::start().await;
    let id = g
        .connect(&rx.url("webhookb2/secret-tail-abcd"), "teams", &["github"])
        .await;
    let run = |args: &[&str]| {
        let out = cardwire()
            .args([
                "connections",
                "--server",
                &g.url(""),
                "--token",
                crate::utils::ADMIN_TOKEN,
            ])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, out, _) = tokio::task::block_in_place(|| run(&["list"]));
    assert_eq!(code, Some(0));
    assert!(
        out.contains(&id)
            && out.contains("active")
            && out.contains("…abcd")
            && !out.contains("secret-tail"),
        "{out}"
    );
    let (code, out, _) = tokio::task::block_in_place(|| run(&["pause", &id]));
    assert_eq!(
        (code, out.trim()),
        (Some(0), format!("paused {id}").as_str())
    );
    assert_eq!(
        g.admin_get(&format!("/api/connections/{id}")).await["paused"],
        true
    );
    let (_, out, _) = tokio::task::block_in_place(|| run(&["list"]));
    assert!(out.contains("paused"), "{out}");
    tokio::task::block_in_place(|| run(&["resume", &id]));
    assert_eq!(
        g.admin_get(&format!("/api/connections/{id}")).await["paused"],
        false
    );
    let (code, _, err) = tokio::task::block_in_place(|| run(&["pause", "con_nope"]));
    assert_eq!(code, Some(1));
    assert!(err.contains("404") && err.contains("con_nope"), "{err}");
    tokio::task::block_in_place(|| run(&["remove", &id]));
    assert_eq!(g.admin_get("/api/connections").await, serde_json::json!([]));
    let out = cardwire()
        .args([
            "connections",
            "--server",
            &g.url(""),
            "--token",
            "wrong",
            "list",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
}

/// Regression: `cardwire connections list --server URL --token T` failed with "unexpected
/// argument"; the server flags are accepted after the subcommand too, for every command that
/// takes them, and a missing token is named.
#[tokio::test(flavor = "multi_thread")]
async fn server_flags_go_before_or_after_the_subcommand() {
    let g = crate::utils::Gateway::start().await;
    let rx = crate::utils::Receiver::start().await;
    let id = g.connect(&rx.url("webhookb2/x"), "teams", &[]).await;
    let url = g.url("");
    let token = crate::utils::ADMIN_TOKEN;
    for args in [
        vec!["connections", "list", "--server", &url, "--token", token],
        vec!["connections", "--server", &url, "list", "--token", token],
        vec!["deliveries", "list", "--server", &url, "--token", token],
        vec![
            "deliveries",
            "list",
            "--state",
            "dead",
            "--token",
            token,
            "--server",
            &url,
        ],
    ] {
        let out = tokio::task::block_in_place(|| cardwire().args(&args).output().unwrap());
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if args[0] == "connections" {
            assert!(String::from_utf8_lossy(&out.stdout).contains(&id));
        }
    }
    let out = tokio::task::block_in_place(|| {
        cardwire()
            .args(["connections", "list", "--server", &url])
            .output()
            .unwrap()
    });
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no admin token: give --token or set CARDWIRE_ADMIN_TOKEN"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn connect_snippet_prints_the_button() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.yaml");
    std::fs::write(
        &config,
        "public_url: https://cardwire.example.com\nconnect:\n  app_id: 6a2b1c3d-0000-4000-8000-000000000001\n",
    )
    .unwrap();
    let out = cardwire()
        .args(["connect", "snippet", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = String::from_utf8(out.stdout).unwrap();
    assert!(html.contains("href=\"https://outlook.office.com/connectors/Connect?state={state}&amp;app_id=6a2b1c3d-0000-4000-8000-000000000001&amp;callback_url=https%3A%2F%2Fcardwire.example.com%2Fconnect%2Fcallback\""), "{html}");
    assert!(html.contains("alt=\"Connect to Office 365\""));
}

#[test]
fn check_enforces_the_connector_registration_rules() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("big.png"), vec![0u8; 70 * 1024]).unwrap();
    std::fs::write(dir.path().join("logo.bmp"), vec![0u8; 10]).unwrap();
    let config = dir.path().join("c.yaml");
    std::fs::write(
        &config,
        "connect:\n  app_id: not-a-guid\n  logo: big.png\n  company_url: http://example.com\n  action_targets: [ftp://x]\n  short_description: \"".to_string()
            + &"x".repeat(90)
            + "\"\n",
    )
    .unwrap();
    let out = check_config(&config);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "is not a GUID",
        "under 60 KB",
        "company_url",
        "action target",
        "at most 80 characters",
    ] {
        assert!(err.contains(want), "{want} missing in {err}");
    }
    std::fs::write(&config, "connect:\n  logo: logo.bmp\n").unwrap();
    let out = check_config(&config);
    assert!(String::from_utf8_lossy(&out.stderr).contains("jpg, jpeg, png or gif"));
}

/// The built-in packs cover every kind of source: with a config that has only some, the rules
/// for the others are left out instead of failing the start.
#[test]
fn built_in_and_kept_rules_of_unconfigured_sources_are_inactive() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.yaml");
    std::fs::write(&config, "sources:\n  github: {kind: github}\n").unwrap();
    let check = || {
        let out = cardwire()
            .args(["check", "--config"])
            .arg(&config)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let out = check();
    assert!(
        out.contains("ok: 39 rules from rules (built in)")
            && out.contains("13 rules inactive: sources alertmanager, gitlab are not configured"),
        "{out}"
    );
    // A rules folder the user keeps: the same.
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::copy(
        root().join("rules/gitlab.yaml"),
        dir.path().join("rules/gitlab.yaml"),
    )
    .unwrap();
    let out = check();
    assert!(
        out.contains("rules inactive: source gitlab is not configured"),
        "{out}"
    );
}

/// `cardwire deliveries` lists, shows and retries against a running gateway.
#[tokio::test(flavor = "multi_thread")]
async fn deliveries_commands_list_show_and_retry() {
    let g = crate::utils::Gateway::start().await;
    let rx = crate::utils::Receiver::start().await;
    rx.script(&[
        (400, "Summary or Text is required"),
        (400, "Summary or Text is required"),
    ]);
    g.connect(&rx.url("t"), "teams", &[]).await;
    for n in 0..2 {
        g.github(
            "push",
            &crate::utils::fixture("github/push.event.4.json"),
            Some(&format!("c{n}")),
        )
        .await;
    }
    rx.wait_for(2).await;
    g.wait_settled().await;
    let run = |args: &[&str]| {
        let out = cardwire()
            .args([
                "deliveries",
                "--server",
                &g.url(""),
                "--token",
                crate::utils::ADMIN_TOKEN,
            ])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, out, err) = tokio::task::block_in_place(|| run(&["list", "--state", "dead"]));
    assert_eq!(code, Some(0), "{err}");
    let ids: Vec<String> = out
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2, "{out}");
    assert!(out.contains("HTTP 400"), "{out}");
    let (_, out, _) = tokio::task::block_in_place(|| run(&["show", &ids[0]]));
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["attempt_log"][0]["status"], 400);
    let (code, out, _) = tokio::task::block_in_place(|| run(&["retry", &ids[0]]));
    assert_eq!(
        (code, out.trim()),
        (Some(0), format!("queued {} again", ids[0]).as_str())
    );
    let (code, out, _) = tokio::task::block_in_place(|| run(&["retry", "--all"]));
    assert_eq!(code, Some(0));
    assert!(out.contains("queued 1 dead letter again"), "{out}");
    rx.wait_for(4).await;
    let (_, out, _) = tokio::task::block_in_place(|| run(&["list", "--state", "delivered"]));
    assert_eq!(out.lines().count(), 2, "{out}");
    let (code, _, err) = tokio::task::block_in_place(|| run(&["retry"]));
    assert_eq!(code, Some(1));
    assert!(err.contains("--all"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_digest_sets_and_clears_a_schedule() {
    let g = crate::utils::Gateway::start().await;
    let rx = crate::utils::Receiver::start().await;
    let id = g.connect(&rx.url("t"), "teams", &[]).await;
    let run = |args: &[&str]| {
        let out = cardwire()
            .args([
                "connections",
                "--server",
                &g.url(""),
                "--token",
                crate::utils::ADMIN_TOKEN,
                "digest",
                &id,
            ])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, out, err) = tokio::task::block_in_place(|| {
        run(&[
            "--at",
            "09:00",
            "--days",
            "mon,fri",
            "--tz",
            "Europe/Berlin",
        ])
    });
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("Europe/Berlin"), "{out}");
    let c = g.admin_get(&format!("/api/connections/{id}")).await;
    assert_eq!(
        c["digest"],
        serde_json::json!({"at": "09:00", "tz": "Europe/Berlin", "days": ["mon", "fri"]})
    );
    let (code, _, err) = tokio::task::block_in_place(|| run(&["--every", "5s"]));
    assert_eq!(code, Some(1));
    assert!(err.contains("once a minute"), "{err}");
    let (code, out, _) = tokio::task::block_in_place(|| run(&["--off"]));
    assert_eq!(
        (code, out.trim()),
        (Some(0), format!("{id}: digest off").as_str())
    );
}

/// jemalloc's options are compiled into the binary (`.cargo/config.toml`), so `serve` runs
/// with them without starting itself again; an operator's own `_RJEM_MALLOC_CONF` wins.
#[test]
fn serve_configures_the_allocator_unless_the_environment_does() {
    use std::io::{BufRead, BufReader};
    for (env, want) in [
        (None, "tcache_max=4096"),
        (Some("tcache_max:8192"), "tcache_max=8192"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = cardwire();
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .current_dir(dir.path())
            .env_remove("RUST_LOG")
            .env_remove("_RJEM_MALLOC_CONF")
            .stderr(std::process::Stdio::piped());
        if let Some(v) = env {
            cmd.env("_RJEM_MALLOC_CONF", v);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let line = loop {
            match rx.recv_timeout(std::time::Duration::from_secs(20)) {
                Ok(line) if line.contains("allocator") => break Some(line),
                Ok(_) => continue,
                Err(_) => break None,
            }
        };
        let _ = child.kill();
        let _ = child.wait();
        let line = line.expect("serve logs the allocator's options");
        assert!(line.contains(want), "{env:?}: {line}");
    }
}

/// `render` shows the card staging would queue: when the template fails on the payload (here
/// a pull request without its title, which the template reads), the fallback card that goes
/// instead, what failed, the error on stderr and exit status 1.
#[test]
fn render_shows_the_fallback_card_when_a_template_fails() {
    let fixture = root().join("tests/fixtures/github/pull_request.closed-merged.3.derived.json");
    let mut payload: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    payload["pull_request"]
        .as_object_mut()
        .unwrap()
        .remove("title");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("untitled.json");
    std::fs::write(&file, payload.to_string()).unwrap();
    let out = cardwire()
        .args(["render", "--source", "github", "--payload"])
        .arg(&file)
        .args([
            "--header",
            "X-GitHub-Event: pull_request",
            "--kind",
            "teams",
        ])
        .current_dir(root())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let line: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(line["rule"], "github-pr-merged");
    assert_eq!(line["fallback"]["template"], "github/pull_request.card.hbs");
    assert_eq!(line["body"]["@type"], "MessageCard", "{line}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("github/pull_request.card.hbs") && stderr.contains("fallback"),
        "{stderr}"
    );
}

/// `check --connections` reads a running gateway's connections and names each rule whose
/// template has no card of a connection's kind (the rule, the template, the kind, the
/// connection); a connection on another channel, or of a kind the template has, is fine. The
/// gateway still sends such a rule's event to that connection: as a fallback card.
#[tokio::test]
async fn check_names_a_connection_whose_kind_a_rule_cannot_render() {
    use crate::utils::*;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::create_dir_all(dir.path().join("templates/mine")).unwrap();
    std::fs::write(
        dir.path().join("rules/mine.yaml"),
        "- name: mine\n  source: github\n  event: push\n  template: mine/push\n  channel: ops\n",
    )
    .unwrap();
    // An Adaptive Card only: no MessageCard, no portable card.
    std::fs::write(
        dir.path().join("templates/mine/push.workflow.hbs"),
        "{\"type\": \"message\", \"attachments\": [{\"contentType\": \"application/vnd.microsoft.card.adaptive\", \"content\": {\"type\": \"AdaptiveCard\", \"version\": \"1.4\",\n  \"body\": [{\"type\": \"TextBlock\", \"text\": \"pushed {{payload.ref}}\"}]}}]}\n",
    )
    .unwrap();
    let mut config = test_config(&dir.path().join("data"));
    config.rules_dir = Some(dir.path().join("rules"));
    config.templates_dir = Some(dir.path().join("templates"));
    let g = Gateway::start_with(config).await;
    let rx = Receiver::start().await;
    g.connect(&rx.url("workflow"), "workflow", &[]).await;
    let slack = g.connect(&rx.url("slack"), "slack", &[]).await;
    let discord = g.connect(&rx.url("discord"), "discord", &["dev"]).await;
    let file = dir.path().join("c.yaml");
    std::fs::write(
        &file,
        "rules_dir: rules\ntemplates_dir: templates\nsources:\n  github: {kind: github}\n",
    )
    .unwrap();
    let check = |with_connections: bool| {
        let mut cmd = cardwire();
        cmd.arg("check").arg("--config").arg(&file);
        if with_connections {
            cmd.args([
                "--connections",
                "--server",
                &g.url(""),
                "--token",
                ADMIN_TOKEN,
            ]);
        }
        cmd.env_remove("CARDWIRE_ADMIN_TOKEN");
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
    };
    // Without --connections: the rules and templates alone are fine.
    let out = check(false).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = check(true).await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("rule \"mine\""))
        .collect();
    assert_eq!(lines.len(), 1, "only the slack connection: {err}");
    assert!(
        lines[0].contains("mine.yaml:4:13: rule")
            && lines[0].contains("template \"mine/push\" has no slack card")
            && lines[0].contains(&slack)
            && lines[0].contains("templates/mine/push.slack.hbs"),
        "{err}"
    );
    assert!(!err.contains(&discord), "another channel: {err}");
    // The card still goes, as a fallback card.
    let res = g
        .github("push", &fixture("github/push.event.4.json"), None)
        .await;
    assert_eq!(res.status(), 202);
    let got = rx.wait_for(2).await;
    assert!(got.iter().any(|r| r.path == "/slack"), "{got:?}");
}

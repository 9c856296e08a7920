//! The shipped rules and templates against real GitHub payloads (tests/fixtures/github).

use std::path::PathBuf;

use cardwire::config::Config;
use cardwire::event::Event;
use cardwire::pipeline::Pipeline;
use cardwire::render::CardKind;
use serde_json::Value;

use crate::utils::*;

/// (fixture, X-GitHub-Event, the rule that must take it, the path of the link the card must carry)
const CASES: &[(&str, &str, &str, &str)] = &[
    ("push.event.4.json", "push", "github-push", "/compare"),
    ("push.event.0.json", "push", "github-push", "/compare"),
    (
        "push.event.1.json",
        "push",
        "github-push",
        "/repository/html_url",
    ),
    (
        "pull_request.opened.0.json",
        "pull_request",
        "github-pr-opened",
        "/pull_request/html_url",
    ),
    (
        "pull_request.closed.3.json",
        "pull_request",
        "github-pr-closed",
        "/pull_request/html_url",
    ),
    (
        "pull_request.closed-merged.3.derived.json",
        "pull_request",
        "github-pr-merged",
        "/pull_request/html_url",
    ),
    (
        "issues.opened.15.json",
        "issues",
        "github-issue-opened",
        "/issue/html_url",
    ),
    (
        "issues.closed.15.derived.json",
        "issues",
        "github-issue-closed",
        "/issue/html_url",
    ),
    (
        "release.published.0.json",
        "release",
        "github-release-published",
        "/release/html_url",
    ),
    (
        "workflow_run.completed.0.json",
        "workflow_run",
        "github-workflow-run-completed",
        "/workflow_run/html_url",
    ),
    (
        "workflow_run.completed-failure.1.derived.json",
        "workflow_run",
        "github-workflow-run-completed",
        "/workflow_run/html_url",
    ),
];

fn payload(name: &str) -> Value {
    serde_json::from_slice(&fixture(&format!("github/{name}"))).unwrap()
}

#[tokio::test]
async fn each_shipped_rule_sends_a_card_naming_repository_actor_and_link() {
    let g = Gateway::start().await;
    let rx = Receiver::start().await;
    g.connect(&rx.url("teams"), "teams", &[]).await;
    g.connect(&rx.url("workflow"), "workflow", &[]).await;
    let mut seen = 0;
    for (file, event, rule, link) in CASES {
        let p = payload(file);
        let res = g
            .github(event, &fixture(&format!("github/{file}")), None)
            .await;
        assert_eq!(res.status(), 202, "{file}");
        seen += 2;
        let got = rx.wait_for(seen).await;
        let repo = p["repository"]["full_name"].as_str().unwrap();
        let actor = p["sender"]["login"].as_str().unwrap();
        let link = p.pointer(link).and_then(Value::as_str).unwrap();
        for card in &got[seen - 2..] {
            let text = card.body.to_string();
            assert!(
                text.contains(repo),
                "{file} ({rule}) to {}: no repository {repo}",
                card.path
            );
            assert!(
                text.contains(actor),
                "{file} ({rule}) to {}: no actor {actor}",
                card.path
            );
            assert!(
                text.contains(link),
                "{file} ({rule}) to {}: no link {link}",
                card.path
            );
        }
        let teams = got[seen - 2..].iter().find(|c| c.path == "/teams").unwrap();
        assert_eq!(teams.body["@type"], "MessageCard");
        assert!(teams.body["summary"]
            .as_str()
            .is_some_and(|s| !s.is_empty()));
        let workflow = got[seen - 2..]
            .iter()
            .find(|c| c.path == "/workflow")
            .unwrap();
        assert_eq!(workflow.body["attachments"][0]["content"]["version"], "1.4");
    }
}

fn shipped() -> (Config, Pipeline) {
    let config = test_config(&std::env::temp_dir());
    let pipeline = Pipeline::load(&config).unwrap_or_else(|e| panic!("{e}"));
    (config, pipeline)
}

fn event(config: &Config, event_type: &str, file: &str) -> Event {
    let mut headers = axum::http::HeaderMap::new();
    headers.insert("x-github-event", event_type.parse().unwrap());
    cardwire::ingest::verify::build_event(
        "github",
        &config.sources["github"],
        &headers,
        payload(file),
    )
    .unwrap()
}

#[test]
fn each_case_is_taken_by_exactly_its_rule() {
    let (config, pipeline) = shipped();
    for (file, ev, rule, _) in CASES {
        let names: Vec<_> = pipeline
            .rules
            .matches(&event(&config, ev, file))
            .iter()
            .map(|r| r.name.clone())
            .collect();
        assert_eq!(names, [*rule], "{file}");
    }
}

#[test]
fn a_failed_workflow_run_stands_out() {
    let (config, pipeline) = shipped();
    let render = |file: &str, kind| {
        let e = event(&config, "workflow_run", file);
        let body = pipeline
            .renderer
            .render("github/workflow_run", kind, e.context())
            .unwrap();
        serde_json::from_str::<Value>(&body).unwrap()
    };
    let failed = render(
        "workflow_run.completed-failure.1.derived.json",
        CardKind::Teams,
    );
    assert_eq!(failed["themeColor"], "D73A49");
    assert!(failed["title"].as_str().unwrap().contains("Failed"));
    let ok = render("workflow_run.completed.1.json", CardKind::Teams);
    assert_ne!(ok["themeColor"], "D73A49");
    assert!(!ok["title"].as_str().unwrap().contains("Failed"));
    let failed = render(
        "workflow_run.completed-failure.1.derived.json",
        CardKind::Workflow,
    );
    assert_eq!(
        failed["attachments"][0]["content"]["body"][0]["color"],
        "Attention"
    );
}

/// Every shipped rule is taken by at least one fixture, and every fixture a rule takes renders
/// in both kinds.
#[test]
fn every_fixture_renders_with_every_rule_that_takes_it() {
    let (config, pipeline) = shipped();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/github");
    let mut used = std::collections::HashSet::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    files.sort();
    for file in files.iter().filter(|f| f.ends_with(".json")) {
        let ev = file.split('.').next().unwrap();
        let e = event(&config, ev, file);
        for rule in pipeline.rules.matches(&e) {
            used.insert(rule.name.clone());
            for kind in CardKind::ALL {
                pipeline
                    .renderer
                    .render(&rule.template, kind, e.context())
                    .unwrap_or_else(|err| {
                        panic!("{file} with {} ({}): {err}", rule.name, kind.as_str())
                    });
            }
        }
    }
    for rule in pipeline.rules.rules() {
        assert!(
            used.contains(&rule.name),
            "no fixture exercises rule {}",
            rule.name
        );
    }
}

//! Hot reload of rules and templates, `GET /api/rules`, and `?explain=1`.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::utils::*;

/// Copies a folder tree.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A gateway whose rules and templates are private copies the test may edit.
async fn editable() -> (Gateway, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&root().join("rules"), &dir.path().join("rules"));
    copy_dir(&root().join("templates"), &dir.path().join("templates"));
    let mut config = test_config(&dir.path().join("data"));
    config.rules_dir = Some(dir.path().join("rules"));
    config.templates_dir = Some(dir.path().join("templates"));
    (Gateway::start_with(config).await, dir)
}

async fn rules(g: &Gateway) -> Value {
    g.admin_get("/api/rules").await
}

const EXTRA_RULE: &str = "\n- name: github-star\n  source: github\n  event: star\n  template: github/release\n  channel: stars\n";

#[tokio::test]
async fn a_valid_change_is_applied_and_a_bad_one_rejected_while_the_old_set_serves() {
    let (g, dir) = editable().await;
    let before = rules(&g).await;
    assert!(before["last_rejected"].is_null());
    let count = before["rules"].as_array().unwrap().len();

    // A good change: one more rule.
    let file = dir.path().join("rules/github.yaml");
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str(EXTRA_RULE);
    std::fs::write(&file, &text).unwrap();
    let after = g
        .admin_get_until("/api/rules", |v| {
            v["rules"].as_array().unwrap().len() == count + 1
        })
        .await;
    assert!(after["loaded_at_ms"].as_u64() > before["loaded_at_ms"].as_u64());
    // The set's hash follows its files: another set, another hash.
    let digest = |v: &Value| v["digest"].as_str().unwrap_or_default().to_string();
    assert!(digest(&before).starts_with("sha256:"), "{before}");
    assert_eq!(digest(&before).len(), "sha256:".len() + 64);
    assert_ne!(digest(&after), digest(&before));
    assert!(after["rules"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["name"] == "github-star"));

    // A bad change: a typo in a template reference and a broken template.
    std::fs::write(
        &file,
        text.replace(
            "template: github/release\n  channel: stars",
            "template: github/nope\n  channel: stars",
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("templates/github/issue.teams.hbs"),
        "{{#if payload}}",
    )
    .unwrap();
    let rejected = g
        .admin_get_until("/api/rules", |v| !v["last_rejected"].is_null())
        .await;
    let errors: Vec<&str> = rejected["last_rejected"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("issue.teams.hbs") && e.contains("template syntax")),
        "{errors:#?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("github.yaml") && e.contains("github/nope")),
        "{errors:#?}"
    );
    // The last good set still serves: the extra rule is there, and events are carded.
    assert_eq!(rejected["rules"].as_array().unwrap().len(), count + 1);
    assert_eq!(
        digest(&rejected),
        digest(&after),
        "the hash of the set in force"
    );
    let rx = Receiver::start().await;
    g.connect(&rx.url("t"), "teams", &[]).await;
    assert_eq!(
        g.github("issues", &fixture("github/issues.opened.15.json"), None)
            .await
            .status(),
        202
    );
    let got = rx.wait_for(1).await;
    assert_eq!(got[0].body["@type"], "MessageCard");
}

#[tokio::test]
async fn explain_over_http_needs_the_admin_token_and_queues_nothing() {
    let g = Gateway::start().await;
    let rx = Receiver::start().await;
    g.connect(&rx.url("t"), "teams", &[]).await;
    let body = fixture("github/pull_request.closed.3.json");
    let post = |auth: Option<&'static str>| {
        let mut r = g
            .client
            .post(g.url("/hooks/github?explain=1"))
            .header("X-GitHub-Event", "pull_request")
            .body(body.clone());
        if let Some(t) = auth {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(post(None).await.unwrap().status(), 401);
    let res = post(Some(ADMIN_TOKEN)).await.unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(
        (v["event"].as_str(), v["action"].as_str()),
        (Some("pull_request"), Some("closed"))
    );
    let by_name = |n: &str| {
        v["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["rule"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(
        by_name("github-pr-closed"),
        json!({"rule": "github-pr-closed", "matched": true})
    );
    assert_eq!(
        by_name("github-pr-merged")["reason"],
        "when: pull_request.merged is false, expected true"
    );
    assert_eq!(
        by_name("github-push-branch")["reason"],
        "event is \"pull_request\", the rule wants \"push\""
    );
    assert!(
        g.deliveries("").await.is_empty(),
        "explain must not queue cards"
    );
    assert!(rx.received().is_empty());
}

/// A template that yields an invalid card for an event: a fallback card goes instead, and the
/// delivery names the template and the problem; the other kind's own card still goes out.
#[tokio::test]
async fn an_invalid_card_is_replaced_by_a_fallback_visible_in_the_api() {
    let (g, dir) = editable().await;
    let before = rules(&g).await["loaded_at_ms"].as_u64().unwrap();
    // Reload times are in milliseconds; make sure the next load is later.
    tokio::time::sleep(Duration::from_millis(5)).await;
    // A Teams override beside the portable template, with a color Teams does not take.
    let file = dir.path().join("templates/github/issue.teams.hbs");
    std::fs::write(
        &file,
        r#"{"@type": "MessageCard", "@context": "https://schema.org/extensions",
  "summary": "Issue #{{payload.issue.number}}", "themeColor": "green-ish",
  "title": "{{md payload.issue.title}}"}"#,
    )
    .unwrap();
    g.admin_get_until("/api/rules", |v| {
        v["loaded_at_ms"].as_u64().unwrap() > before
    })
    .await;
    let rx = Receiver::start().await;
    let teams = g.connect(&rx.url("teams"), "teams", &[]).await;
    g.connect(&rx.url("workflow"), "workflow", &[]).await;
    assert_eq!(
        g.github("issues", &fixture("github/issues.opened.15.json"), None)
            .await
            .status(),
        202
    );
    let got = rx.wait_for(2).await;
    let teams_card = got.iter().find(|r| r.path == "/teams").unwrap();
    assert_eq!(
        teams_card.body["themeColor"], "BF8700",
        "the fallback's, not the broken one"
    );
    assert!(teams_card
        .body
        .to_string()
        .contains("github/issue.teams.hbs"));
    let workflow_card = got.iter().find(|r| r.path == "/workflow").unwrap();
    assert!(
        !workflow_card
            .body
            .to_string()
            .contains("The template failed"),
        "the portable template is fine: the workflow card goes"
    );
    let list = g
        .admin_get_until(
            &format!("/api/deliveries?state=delivered&connection={teams}"),
            |v| v["deliveries"].as_array().is_some_and(|a| !a.is_empty()),
        )
        .await;
    let shown = &list["deliveries"][0];
    assert_eq!(shown["rule"], "github-issue-opened");
    assert_eq!(shown["fallback"]["template"], "github/issue.teams.hbs");
    let reason = shown["fallback"]["reason"].as_str().unwrap();
    assert!(reason.contains("/themeColor"), "{reason}");
    let res = g
        .client
        .get(g.url("/api/deliveries?state=lost"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

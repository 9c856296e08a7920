//! The playground's API: what a payload does before it goes live, edited templates with
//! positioned errors, previews, and the ring of recent events.

use serde_json::{json, Value};

use crate::utils::*;

async fn post(g: &Gateway, path: &str, body: Value) -> (u16, Value) {
    let res = g
        .client
        .post(g.url(path))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

fn payload(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).unwrap()
}

#[tokio::test]
async fn render_explains_every_rule_and_renders_the_matches() {
    let g = Gateway::start().await;
    let (status, v) = post(
        &g,
        "/api/render",
        json!({"source": "github", "headers": {"X-GitHub-Event": "issues"},
               "payload": payload("github/issues.opened.15.json")}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["event"], "issues");
    assert_eq!(v["action"], "opened");
    let rules = v["rules"].as_array().unwrap();
    let opened = rules
        .iter()
        .find(|r| r["rule"] == "github-issue-opened")
        .unwrap();
    assert_eq!(opened["matched"], true);
    let closed = rules
        .iter()
        .find(|r| r["rule"] == "github-issue-closed")
        .unwrap();
    assert_eq!(closed["matched"], false);
    assert!(
        closed["reason"].as_str().unwrap().contains("opened"),
        "{closed}"
    );

    let cards = v["cards"].as_array().unwrap();
    let kinds: Vec<&str> = cards.iter().map(|c| c["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["teams", "workflow"], "{v}");
    for c in cards {
        assert_eq!(c["rule"], "github-issue-opened");
        assert_eq!(c["valid"], true, "{c}");
        assert!(c["bytes"].as_u64().unwrap() <= c["limit"].as_u64().unwrap());
    }
    assert_eq!(cards[0]["body"]["@type"], "MessageCard");
}

#[tokio::test]
async fn an_edited_template_renders_or_names_its_error_position() {
    let g = Gateway::start().await;
    let edited = r#"{"@type": "MessageCard", "@context": "https://schema.org/extensions",
  "summary": "edited", "text": "Issue {{payload.issue.title}} by {{payload.sender.login}}"}"#;
    let body = json!({"source": "github", "headers": {"X-GitHub-Event": "issues"},
        "payload": payload("github/issues.opened.15.json"),
        "rule": "github-issue-opened", "template": edited, "kind": "teams"});
    let (status, v) = post(&g, "/api/render", body.clone()).await;
    assert_eq!(status, 200, "{v}");
    let cards = v["cards"].as_array().unwrap();
    assert_eq!(cards.len(), 1, "{v}");
    assert_eq!(cards[0]["valid"], true, "{v}");
    let text = cards[0]["body"]["text"].as_str().unwrap();
    assert!(text.starts_with("Issue "), "{text}");
    assert!(!text.contains("{{"), "{text}");

    // An unclosed block on line 2: the error names the line.
    let broken = "{\"@type\": \"MessageCard\",\n  \"text\": \"{{#if payload.issue}}open\"}";
    let mut b = body.clone();
    b["template"] = json!(broken);
    let (status, v) = post(&g, "/api/render", b).await;
    assert_eq!(status, 200, "{v}");
    let card = &v["cards"][0];
    assert_eq!(card["valid"], false, "{v}");
    let err = &card["errors"][0];
    assert!(err["message"].as_str().is_some(), "{err}");
    assert!(
        err["line"].as_u64().is_some(),
        "the error names its line: {err}"
    );

    // The loaded template is untouched by the edit.
    let (_, v) = post(
        &g,
        "/api/render",
        json!({"source": "github", "headers": {"X-GitHub-Event": "issues"},
               "payload": payload("github/issues.opened.15.json"), "rule": "github-issue-opened"}),
    )
    .await;
    assert_eq!(v["cards"][0]["valid"], true, "{v}");
    assert_ne!(v["cards"][0]["body"]["summary"], "edited");
}

#[tokio::test]
async fn render_rejects_what_it_cannot_do_with_a_clear_error() {
    let g = Gateway::start().await;
    let (status, v) = post(&g, "/api/render", json!({"source": "nope", "payload": {}})).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("unknown_source")),
        "{v}"
    );
    let (status, v) = post(
        &g,
        "/api/render",
        json!({"source": "github", "headers": {"X-GitHub-Event": "issues"}, "payload": {},
               "template": "{}"}),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("rule"), "{v}");
    let (status, v) = post(
        &g,
        "/api/render",
        json!({"source": "github", "headers": {"X-GitHub-Event": "issues"}, "payload": {},
               "rule": "no-such-rule"}),
    )
    .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("unknown_rule")),
        "{v}"
    );
    // Without the admin token, nothing.
    let res = g
        .client
        .post(g.url("/api/render"))
        .json(&json!({"source": "github", "payload": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn preview_lays_the_card_out_with_markdown_and_no_html() {
    let g = Gateway::start().await;
    let card = json!({"@type": "MessageCard", "@context": "https://schema.org/extensions",
        "summary": "s", "title": "Deploy",
        "sections": [{"text": "Deploy **done**: see [the run](https://example.com/run) <script>alert(1)</script>",
                      "facts": [{"name": "Env", "value": "prod"}]}]});
    let (status, v) = post(&g, "/api/preview", json!({"kind": "teams", "body": card})).await;
    assert_eq!(status, 200, "{v}");
    let html = v["html"].as_str().unwrap();
    assert!(html.contains("<strong>done</strong>"), "{html}");
    assert!(html.contains("href=\"https://example.com/run\""), "{html}");
    assert!(html.contains("prod"), "{html}");
    assert!(!html.contains("<script>"), "{html}");
    assert_eq!(v["valid"], true, "{v}");

    let (_, v) = post(
        &g,
        "/api/preview",
        json!({"kind": "workflow", "body": {"type": "message", "attachments": []}}),
    )
    .await;
    assert_eq!(v["valid"], false, "{v}");
    assert!(!v["errors"].as_array().unwrap().is_empty(), "{v}");
}

#[tokio::test]
async fn recent_events_keep_the_last_fifty_without_credentials() {
    let g = Gateway::start().await;
    let body = fixture("github/issues.opened.15.json");
    for i in 0..55 {
        let res = g.github("issues", &body, Some(&format!("d-{i}"))).await;
        assert_eq!(res.status(), 202);
    }
    let v = g.admin_get("/api/events/recent").await;
    let events = v["events"].as_array().unwrap();
    assert_eq!(events.len(), 50);
    assert_eq!(
        events[0]["headers"]["x-github-delivery"], "d-54",
        "newest first"
    );
    assert_eq!(events[49]["headers"]["x-github-delivery"], "d-5");
    for e in events {
        assert_eq!(e["source"], "github");
        assert_eq!(e["event"], "issues");
        assert!(e["headers"].get("x-hub-signature-256").is_none(), "{e}");
        assert_eq!(e["payload"]["action"], "opened");
    }
    // A recent event replays through /api/render as it came.
    let e = &events[0];
    let (status, v) = post(
        &g,
        "/api/render",
        json!({"source": e["source"], "headers": e["headers"], "payload": e["payload"]}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["cards"].as_array().unwrap().len(), 2, "{v}");
}

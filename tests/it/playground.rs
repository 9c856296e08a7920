//! The playground's API: what a payload does before it goes live, edited templates with
//! positioned errors, previews, and the ring of recent events.

use serde_json::{json, Value};

use crate::utils::*;

async fn post(g: &Gateway, path: &str, body: Value) -> (u16, Value) {
    call(g, reqwest::Method::POST, path, body).await
}

async fn call(g: &Gateway, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
    let res = g
        .client
        .request(method, g.url(path))
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
    assert_eq!(
        kinds,
        [
            "teams",
            "workflow",
            "slack",
            "discord",
            "google_chat",
            "mattermost"
        ],
        "every kind: the MessageCard template read as a portable card for the four others; {v}"
    );
    for c in cards {
        assert_eq!(c["rule"], "github-issue-opened");
        assert_eq!(c["valid"], true, "{c}");
        assert!(c["bytes"].as_u64().unwrap() <= c["limit"].as_u64().unwrap());
    }
    assert_eq!(cards[0]["body"]["@type"], "MessageCard");
}

#[tokio::test]
async fn render_says_what_a_later_card_with_the_same_key_does_on_each_kind() {
    let g = Gateway::start().await;
    let (status, v) = post(
        &g,
        "/api/render",
        json!({"source": "github", "headers": {"X-GitHub-Event": "pull_request"},
               "payload": payload("github/pull_request.opened.0.json")}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let effect = |kind: &str| {
        let c = v["cards"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["kind"] == kind)
            .unwrap()
            .clone();
        assert_eq!(c["subject"]["key"], "Codertocat/Hello-World#2", "{c}");
        assert_eq!(c["subject"]["update"], "replace");
        c["subject"]["effect"].as_str().unwrap().to_string()
    };
    assert_eq!(effect("discord"), "edits the first message");
    assert_eq!(
        effect("google_chat"),
        "replies in the first message's thread"
    );
    assert!(effect("workflow").contains("neither edit nor reply"));
    // A card with a `thread` replies in it.
    let (_, v) = post(
        &g,
        "/api/render",
        json!({"source": "github", "headers": {"X-GitHub-Event": "issues"},
               "payload": payload("github/issues.opened.15.json"), "rule": "github-issue-opened"}),
    )
    .await;
    assert_eq!(v["cards"][0]["subject"]["update"], "reply", "{v}");
}

#[tokio::test]
async fn an_edited_template_renders_or_names_its_error_position() {
    let g = Gateway::start().await;
    // The rule's template is portable: an edit is a portable card, shown here as Teams'.
    let edited = r#"{"title": "edited", "text": "Issue {{md payload.issue.title}} by {{payload.sender.login}}"}"#;
    let body = json!({"source": "github", "headers": {"X-GitHub-Event": "issues"},
        "payload": payload("github/issues.opened.15.json"),
        "rule": "github-issue-opened", "template": edited, "kind": "teams"});
    let (status, v) = post(&g, "/api/render", body.clone()).await;
    assert_eq!(status, 200, "{v}");
    let cards = v["cards"].as_array().unwrap();
    assert_eq!(cards.len(), 1, "{v}");
    assert_eq!(cards[0]["valid"], true, "{v}");
    assert_eq!(cards[0]["body"]["summary"], "edited", "{v}");
    let text = cards[0]["body"]["sections"][0]["text"].as_str().unwrap();
    assert!(text.starts_with("Issue Spelling error"), "{text}");
    assert!(!text.contains("{{"), "{text}");

    // An unclosed block on line 2: the error names the line.
    let broken = "{\"title\": \"x\",\n  \"text\": \"{{#if payload.issue}}open\"}";
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
    assert_eq!(v["cards"].as_array().unwrap().len(), 6, "{v}");
}

#[tokio::test]
async fn send_queues_a_valid_card_through_the_outbox() {
    let g = Gateway::start().await;
    let r = Receiver::start().await;
    let con = g.connect(&r.url("/hook"), "teams", &["github"]).await;
    let card = json!({"@type": "MessageCard", "@context": "https://schema.org/extensions",
        "summary": "from the playground", "text": "hello"});
    let (status, v) = post(&g, "/api/send", json!({"connection": con, "body": card})).await;
    assert_eq!(status, 202, "{v}");
    let id = v["delivery"].as_str().unwrap().to_string();
    let got = r.wait_for(1).await;
    assert_eq!(got[0].body, card);
    g.admin_get_until(&format!("/api/deliveries/{id}"), |d| {
        d["state"] == "delivered"
    })
    .await;

    // A card that is not valid for the connection's kind, or no such connection: nothing queued.
    let (status, v) = post(
        &g,
        "/api/send",
        json!({"connection": con, "body": {"type": "message", "attachments": []}}),
    )
    .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (422, Some("invalid_card")),
        "{v}"
    );
    let (status, v) = post(
        &g,
        "/api/send",
        json!({"connection": "con_nope", "body": card}),
    )
    .await;
    assert_eq!(status, 404, "{v}");
    // A paused connection is refused rather than left waiting.
    let res = g
        .client
        .patch(g.url(&format!("/api/connections/{con}")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"paused": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (status, v) = post(&g, "/api/send", json!({"connection": con, "body": card})).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (409, Some("connection_not_sending")),
        "{v}"
    );
    g.wait_settled().await;
    assert_eq!(
        g.deliveries("").await.len(),
        1,
        "the refused send queued nothing"
    );
    assert_eq!(r.received().len(), 1);
}

#[tokio::test]
async fn a_signed_in_page_uses_the_api_with_its_csrf_token() {
    let g = Gateway::start().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = client
        .post(g.url("/connections/login"))
        .form(&[("token", ADMIN_TOKEN), ("next", "/playground")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["location"], "/playground");
    let cookie = res.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    // Only our own pages: no open redirect.
    let res = client
        .post(g.url("/connections/login"))
        .form(&[("token", ADMIN_TOKEN), ("next", "https://evil.example/")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["location"], "/connections");

    let html = client
        .get(g.url("/playground"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = html
        .split("name=\"csrf\" content=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    assert!(html.contains("/assets/adaptivecards.min.js"));

    let res = client
        .get(g.url("/api/samples"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let samples: Value = res.json().await.unwrap();
    let push = samples["samples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "github/push.event.4.json")
        .unwrap();
    assert_eq!(push["headers"]["X-GitHub-Event"], "push");

    let body =
        json!({"source": push["source"], "headers": push["headers"], "payload": push["payload"]});
    let res = client
        .post(g.url("/api/render"))
        .header("cookie", &cookie)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        403,
        "a POST without the CSRF token is refused"
    );
    let res = client
        .post(g.url("/api/render"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // Without a session the page asks to sign in and the assets are served from the binary.
    let html = page(&client, &g.url("/playground")).await;
    assert!(
        html.contains("name=\"next\" value=\"/playground\""),
        "{html}"
    );
    let js = client
        .get(g.url("/assets/adaptivecards.min.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), 200);
    assert!(js.text().await.unwrap().contains("AdaptiveCards"));
}

/// Reads server-sent events until `n` have arrived: (event, data) pairs.
pub(crate) async fn read_events(res: &mut reqwest::Response, n: usize) -> Vec<(String, Value)> {
    let mut buf = String::new();
    let mut out = Vec::new();
    while out.len() < n {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), res.chunk())
            .await
            .expect("the stream went quiet")
            .unwrap()
            .expect("the stream ended");
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut event = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = e.to_string();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            if !event.is_empty() {
                out.push((event, serde_json::from_str(&data).unwrap()));
            }
        }
    }
    out
}

#[tokio::test]
async fn the_live_tail_streams_receipt_match_queue_and_outcome() {
    let mut g = Gateway::start().await;
    let r = Receiver::start().await;
    let con = g.connect(&r.url("/hook"), "teams", &["github"]).await;
    let mut stream = g
        .client
        .get(g.url("/api/stream"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let res = g
        .github("push", &fixture("github/push.event.4.json"), Some("live-1"))
        .await;
    assert_eq!(res.status(), 202);
    let event_id: Value = res.json().await.unwrap();
    let events = read_events(&mut stream, 4).await;
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        ["received", "matched", "queued", "delivered"],
        "{events:?}"
    );
    assert_eq!(events[0].1["event_type"], "push");
    assert_eq!(events[0].1["event"], event_id["id"]);
    assert_eq!(events[1].1["rule"], "github-push-branch");
    assert_eq!(events[2].1["connection"], con.as_str());
    assert_eq!(events[3].1["delivery"], events[2].1["delivery"]);
    assert_eq!(events[3].1["status"], 200);

    // An open stream does not hold up a graceful stop.
    tokio::time::timeout(std::time::Duration::from_secs(10), g.stop())
        .await
        .expect("the server stops with a listener attached");
}

/// A copy of the shipped templates in a temp folder, to save into.
fn templates_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let from = root().join("templates");
    for entry in walk(&from) {
        let rel = entry.strip_prefix(&from).unwrap();
        let to = dir.path().join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &to).unwrap();
    }
    dir
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

async fn put(g: &Gateway, body: Value) -> (u16, Value) {
    call(g, reqwest::Method::PUT, "/api/templates", body).await
}

#[tokio::test]
async fn save_template_writes_reloads_or_takes_a_rejected_text_back() {
    // Off by default.
    let g = Gateway::start().await;
    let (status, v) = put(
        &g,
        json!({"template": "github/issue", "kind": "teams", "text": "{}"}),
    )
    .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (403, Some("read_only")),
        "{v}"
    );
    drop(g);

    let data = tempfile::tempdir().unwrap();
    let templates = templates_copy();
    // An override for Slack beside the portable template.
    std::fs::write(
        templates.path().join("github/issue.slack.hbs"),
        r#"{"text": "an override"}"#,
    )
    .unwrap();
    let mut config = test_config(data.path());
    config.templates_dir = Some(templates.path().to_path_buf());
    config.watch_files = false;
    config.playground.write = true;
    let mut g = Gateway::start_with(config).await;
    g.keep(data);
    let file = templates.path().join("github/issue.card.hbs");
    let original = std::fs::read_to_string(&file).unwrap();
    let render = json!({"source": "github", "headers": {"X-GitHub-Event": "issues"},
        "payload": payload("github/issues.opened.15.json"), "rule": "github-issue-opened"});

    // Each card names the file it is rendered from and what Save writes.
    let (_, v) = post(&g, "/api/render", render.clone()).await;
    let file_of = |kind: &str| {
        v["cards"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["kind"] == kind)
            .map(|c| c["template_file"].clone())
            .unwrap()
    };
    assert_eq!(file_of("slack")["file"], "templates/github/issue.slack.hbs");
    assert!(
        file_of("slack")["save"]
            .as_str()
            .unwrap()
            .contains("the slack override only"),
        "{v}"
    );
    for kind in ["teams", "discord"] {
        assert_eq!(
            file_of(kind)["file"],
            "templates/github/issue.card.hbs",
            "{kind}"
        );
        assert!(
            file_of(kind)["save"]
                .as_str()
                .unwrap()
                .contains("the portable template, for every kind without an override"),
            "{kind}: {v}"
        );
    }

    // A good edit: on disk and in force.
    let edited = original.replacen("\"title\": \"", "\"title\": \"[saved] ", 1);
    assert_ne!(edited, original, "the template has a title to edit");
    let (status, v) = put(
        &g,
        json!({"template": "github/issue", "kind": "teams", "text": edited}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["reloaded"], true);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), edited);
    let (_, v) = post(&g, "/api/render", render.clone()).await;
    assert!(
        v["cards"][0]["body"]["summary"]
            .as_str()
            .unwrap()
            .starts_with("[saved] "),
        "{v}"
    );

    // A broken edit: rejected with its position, the file back as it was, the old one in force.
    let broken = format!("{edited}\n{{{{#if payload}}}}");
    let (status, v) = put(
        &g,
        json!({"template": "github/issue", "kind": "teams", "text": broken}),
    )
    .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (422, Some("template_rejected")),
        "{v}"
    );
    assert!(
        v["detail"].as_str().unwrap().contains("issue.card.hbs:"),
        "the problem names the file and position: {v}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), edited);
    let (_, v) = post(&g, "/api/render", render).await;
    assert_eq!(v["cards"][0]["valid"], true, "{v}");

    // Only templates that exist; no paths made up by the request.
    let (status, _) = put(
        &g,
        json!({"template": "../../etc/passwd", "kind": "teams", "text": "x"}),
    )
    .await;
    assert_eq!(status, 404);
    assert!(std::fs::read_dir(templates.path().join("github"))
        .unwrap()
        .all(|e| !e.unwrap().file_name().to_string_lossy().starts_with('.')));
}

#[tokio::test]
async fn preview_takes_render_input_and_flags_oversize_cards() {
    let g = Gateway::start().await;
    let (status, v) = post(
        &g,
        "/api/preview",
        json!({"source": "github", "headers": {"X-GitHub-Event": "push"},
               "payload": payload("github/push.event.4.json")}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let cards = v["cards"].as_array().unwrap();
    assert_eq!(cards.len(), 6, "{v}");
    assert!(cards.iter().all(|c| c["valid"] == true), "{v}");
    let html = v["html"].as_str().unwrap();
    for kind in [
        "teams",
        "workflow",
        "slack",
        "discord",
        "google_chat",
        "mattermost",
    ] {
        assert!(html.contains(&format!("data-kind=\"{kind}\"")), "{kind}");
    }
    // Each kind laid out: the headline and the button of each.
    assert!(
        html.matches("Codertocat/Hello-World: pushed to master")
            .count()
            >= 6,
        "{html}"
    );
    // A button where the platform has buttons; Discord and Mattermost link the title instead.
    assert!(html.matches("View changes</a>").count() >= 4, "{html}");

    let big = "x".repeat(30_000);
    let (_, v) = post(
        &g,
        "/api/preview",
        json!({"kind": "teams", "body": {"@type": "MessageCard", "@context": "https://schema.org/extensions",
               "summary": "s", "text": big}}),
    )
    .await;
    assert_eq!(v["valid"], false, "{}", v["errors"]);
    assert!(v["bytes"].as_u64().unwrap() > v["limit"].as_u64().unwrap());
    assert!(
        v["errors"][0].as_str().unwrap().contains("28672"),
        "{}",
        v["errors"]
    );
}

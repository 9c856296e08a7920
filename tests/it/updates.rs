//! Cards with a key: one message per subject, edited in place or replied to as it changes,
//! on every chat that allows it, through restarts.

use serde_json::Value;

use crate::utils::*;

/// The emulated Discord channel `#deploys`'s webhook (its channel id and a digit).
const DISCORD_HOOK: &str = "/emulator/discord/api/webhooks/3456266692249824020/emulated-token";

/// A pull request's lifecycle on the shipped rules, all of Codertocat/Hello-World#2
/// (`@octokit/webhooks-examples`; the merged close derived from the close).
const PR_STEPS: &[(&str, &str)] = &[
    ("pull_request", "github/pull_request.opened.0.json"),
    (
        "pull_request",
        "github/pull_request.review_requested.21.json",
    ),
    (
        "pull_request",
        "github/pull_request.closed-merged.3.derived.json",
    ),
];

/// The messages of an emulated channel (`discord/deploys`), as data.
async fn channel(g: &Gateway, inbox: &str) -> Vec<Value> {
    let res = g
        .client
        .get(g.url(&format!("/emulator/{inbox}")))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json::<Value>()
        .await
        .unwrap()
        .as_array()
        .cloned()
        .unwrap()
}

async fn send_steps(g: &Gateway, steps: &[(&str, &str)]) {
    for (event, fixture_name) in steps {
        let res = g.github(event, &fixture(fixture_name), None).await;
        assert_eq!(res.status(), 202);
        // One at a time, as a chat would see them arrive.
        g.wait_settled().await;
    }
}

/// What each delivered card's attempts said, oldest card first.
async fn results(g: &Gateway) -> Vec<String> {
    let mut out = Vec::new();
    let mut delivered = g.deliveries("state=delivered").await;
    delivered.sort_by_key(|d| d["created_ms"].as_u64());
    for d in delivered {
        let one = g
            .admin_get(&format!("/api/deliveries/{}", d["id"].as_str().unwrap()))
            .await;
        for a in one["attempt_log"].as_array().unwrap() {
            out.push(a["result"].as_str().unwrap().to_string());
        }
    }
    out
}

fn title(card: &Value) -> &str {
    card["embeds"][0]["title"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_pull_request_is_one_discord_message_that_changes() {
    let g = emulated().await;
    g.connect(&g.url(DISCORD_HOOK), "discord", &[]).await;
    send_steps(&g, PR_STEPS).await;
    let messages = channel(&g, "discord/inbox/deploys").await;
    assert_eq!(messages.len(), 1, "one message: {messages:#?}");
    let m = &messages[0];
    assert!(
        title(&m["card"]).ends_with("pull request #2 merged"),
        "{m:#?}"
    );
    let edits = m["edits"].as_array().unwrap();
    assert_eq!(edits.len(), 2, "opened, then review requested, then merged");
    assert!(title(&edits[0]).ends_with("pull request #2 opened"));
    // Each delivery says what it did.
    for d in g.deliveries("state=delivered").await {
        assert_eq!(d["key"], "Codertocat/Hello-World#2");
        assert_eq!(d["update"], "replace");
    }
    let results = results(&g).await;
    let id = m["id"].as_str().unwrap();
    assert_eq!(
        results
            .iter()
            .filter(|r| **r == format!("delivered: edited message {id}"))
            .count(),
        2,
        "{results:?}"
    );
    // The page shows it edited, with its history on click.
    let page = g.get_text("/emulator/discord/inbox/deploys").await;
    assert!(page.contains("edited (2 earlier versions)"), "{page}");
}

#[tokio::test]
async fn a_message_deleted_in_the_chat_is_posted_anew_and_followed_from_then_on() {
    let g = emulated().await;
    g.connect(&g.url(DISCORD_HOOK), "discord", &[]).await;
    send_steps(&g, &PR_STEPS[..1]).await;
    let first = channel(&g, "discord/inbox/deploys").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Someone deletes it in the channel.
    let res = g
        .client
        .delete(g.url(&format!("{DISCORD_HOOK}/messages/{first}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert!(channel(&g, "discord/inbox/deploys").await.is_empty());
    send_steps(&g, &PR_STEPS[1..]).await;
    let messages = channel(&g, "discord/inbox/deploys").await;
    assert_eq!(messages.len(), 1, "{messages:#?}");
    let second = messages[0]["id"].as_str().unwrap();
    assert_ne!(second, first);
    // Posted anew for the review request, then that message edited for the merge.
    assert!(title(&messages[0]["card"]).ends_with("merged"));
    assert_eq!(messages[0]["edits"].as_array().unwrap().len(), 1);
    let results = results(&g).await;
    assert!(
        results.contains(&"delivered: its key's message was deleted; posted anew".to_string()),
        "{results:?}"
    );
    // The connection is not broken by the 404 of a message.
    let conns = g.admin_get("/api/connections").await;
    assert!(conns["connections"][0]["broken"].is_null(), "{conns}");
}

#[tokio::test]
async fn an_update_that_is_throttled_waits_and_edits_once() {
    let g = Gateway::start().await;
    let rx = Receiver::start().await;
    g.connect(&rx.url("api/webhooks/1/t"), "discord", &[]).await;
    // The post answers its message; the first edit is throttled, the second goes.
    rx.script(&[(200, r#"{"id": "9001", "channel_id": "42"}"#)]);
    rx.throttle("0.2");
    send_steps(&g, &PR_STEPS[..2]).await;
    let got = rx.received();
    let seen: Vec<(String, String, Option<String>)> = got
        .iter()
        .map(|r| (r.method.clone(), r.path.clone(), r.query.clone()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (
                "POST".into(),
                "/api/webhooks/1/t".into(),
                Some("wait=true".into())
            ),
            (
                "PATCH".into(),
                "/api/webhooks/1/t/messages/9001".into(),
                None
            ),
            (
                "PATCH".into(),
                "/api/webhooks/1/t/messages/9001".into(),
                None
            ),
        ]
    );
    // Both attempts of the edit carried the card's Idempotency-Key; the edit takes no username.
    assert_eq!(
        got[1].headers["idempotency-key"],
        got[2].headers["idempotency-key"]
    );
    assert!(got[2].body.get("username").is_none());
}

#[tokio::test]
async fn a_restart_between_the_post_and_the_update_edits_the_same_message() {
    let mut g = Gateway::start().await;
    let rx = Receiver::start().await;
    g.connect(&rx.url("api/webhooks/1/t"), "discord", &[]).await;
    rx.script(&[(200, r#"{"id": "9001", "channel_id": "42"}"#)]);
    send_steps(&g, &PR_STEPS[..1]).await;
    g.restart().await;
    send_steps(&g, &PR_STEPS[1..]).await;
    let seen: Vec<(String, String)> = rx
        .received()
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("POST".into(), "/api/webhooks/1/t".into()),
            ("PATCH".into(), "/api/webhooks/1/t/messages/9001".into()),
            ("PATCH".into(), "/api/webhooks/1/t/messages/9001".into()),
        ]
    );
}

#[tokio::test]
async fn google_chat_replies_in_the_keys_thread_and_teams_posts_anew() {
    let g = Gateway::start().await;
    let chat = Receiver::start().await;
    chat.answer(
        200,
        r#"{"name": "spaces/AAA/messages/x", "thread": {"name": "spaces/AAA/threads/t"}}"#,
    );
    g.connect(&chat.url("chat"), "google_chat", &[]).await;
    let teams = Receiver::start().await;
    g.connect(&teams.url("workflow"), "workflow", &[]).await;
    send_steps(&g, PR_STEPS).await;
    let got = chat.received();
    assert_eq!(got.len(), 3);
    for r in &got {
        assert_eq!(r.method, "POST");
        assert_eq!(r.body["thread"]["threadKey"], "Codertocat/Hello-World#2");
        assert_eq!(
            r.query.as_deref(),
            Some("messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD")
        );
    }
    // Teams' webhooks can neither edit nor reply: three posts, as before.
    let got = teams.received();
    assert_eq!(got.len(), 3);
    assert!(got
        .iter()
        .all(|r| r.method == "POST" && r.path == "/workflow"));
}

#[tokio::test]
async fn a_rules_update_new_makes_every_card_a_new_message() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(
        rules.join("prs.yaml"),
        "- name: every-step-anew\n  source: github\n  event: pull_request\n  template: github/pull_request\n  update: new\n",
    )
    .unwrap();
    let mut config = test_config(dir.path());
    config.rules_dir = Some(rules);
    let mut g = Gateway::start_with(config).await;
    g.keep(dir);
    let rx = Receiver::start().await;
    g.connect(&rx.url("api/webhooks/1/t"), "discord", &[]).await;
    send_steps(&g, PR_STEPS).await;
    let got = rx.received();
    assert_eq!(got.len(), 3);
    assert!(
        got.iter().all(|r| r.method == "POST" && r.query.is_none()),
        "{got:#?}"
    );
    for d in g.deliveries("state=delivered").await {
        assert_eq!(d["update"], "new");
    }
}

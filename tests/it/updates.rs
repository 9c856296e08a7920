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

/// The pull request's steps sent, its one message in `inbox`: edited twice, opened first.
async fn one_message_edited_twice(g: &Gateway, inbox: &str) -> Value {
    send_steps(g, PR_STEPS).await;
    let messages = channel(g, inbox).await;
    assert_eq!(messages.len(), 1, "one message: {messages:#?}");
    let edits = messages[0]["edits"].as_array().unwrap();
    assert_eq!(edits.len(), 2, "opened, then review requested, then merged");
    messages[0].clone()
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
    assert_eq!(rx.calls(), discord_post_then_two_edits());
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

/// Add to Slack through the emulator, `#deploys` picked: the connection's id.
async fn add_to_slack(g: &Gateway) -> String {
    let b = browser();
    let authorize = crate::oauth::start(g, &b, "slack", &[]).await;
    let callback = crate::oauth::decide(&b, &authorize, "C0EMUDEPLOY", "allow").await;
    let res = b.get(&callback).send().await.unwrap();
    assert_eq!(res.status(), 302);
    let all = g.admin_get("/api/connections").await;
    let c = all
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "slack")
        .unwrap()
        .clone();
    assert_eq!(c["bot"], true, "{c}");
    c["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_pull_request_is_one_slack_message_edited_by_the_installs_bot() {
    let g = emulated().await;
    add_to_slack(&g).await;
    let m = &one_message_edited_twice(&g, "slack/inbox/deploys").await;
    let text = m["card"]["text"].as_str().unwrap();
    assert!(text.contains("pull request #2 merged"), "{m:#?}");
    // Posted and edited in the channel the install picked, as Slack's ts names it.
    assert_eq!(m["card"]["channel"], "C0EMUDEPLOY");
    let ts = m["id"].as_str().unwrap();
    assert!(ts.contains('.'), "{ts}");
    let results = results(&g).await;
    assert_eq!(
        results
            .iter()
            .filter(|r| **r == format!("delivered: edited message {ts}"))
            .count(),
        2,
        "{results:?}"
    );
    // Cards without a key still go through the webhook.
    g.github("push", &fixture("github/push.event.4.json"), None)
        .await;
    g.wait_settled().await;
    assert_eq!(channel(&g, "slack/inbox/deploys").await.len(), 2);
}

#[tokio::test]
async fn a_revoked_slack_token_breaks_its_connection_and_keeps_the_card() {
    let g = emulated().await;
    add_to_slack(&g).await;
    send_steps(&g, &PR_STEPS[..1]).await;
    // The app is removed from the workspace in Slack: its tokens are revoked.
    let res = g
        .client
        .post(g.url("/emulator/slack/workspaces/T0EMULATED/uninstall"))
        .send()
        .await
        .unwrap();
    // Back to the channel's page.
    assert_eq!(res.status(), 200);
    assert!(res.url().path().ends_with("/emulator/slack/inbox/deploys"));
    let res = g
        .github("pull_request", &fixture(PR_STEPS[1].1), None)
        .await;
    assert_eq!(res.status(), 202);
    g.wait_settled().await;
    let dead = g.deliveries("state=dead").await;
    assert_eq!(
        dead.len(),
        1,
        "the update is kept as a dead letter: {dead:#?}"
    );
    let one = g
        .admin_get(&format!(
            "/api/deliveries/{}",
            dead[0]["id"].as_str().unwrap()
        ))
        .await;
    assert!(
        one["reason"]
            .as_str()
            .unwrap()
            .contains("Slack API: token_revoked"),
        "{one}"
    );
    let conns = g.admin_get("/api/connections").await;
    assert!(
        conns[0]["broken"]
            .as_str()
            .unwrap()
            .contains("token_revoked"),
        "{conns}"
    );
    // The message stays as it was.
    let messages = channel(&g, "slack/inbox/deploys").await;
    assert_eq!(messages.len(), 1);
    assert!(messages[0]["edits"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn slacks_api_throttling_and_a_deleted_message_on_updates() {
    // Slack's side scripted: the code exchange and the Web API on a receiver.
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.connect.emulator = Some(true);
    config.connect.slack = Some(cardwire::config::OAuthClient {
        client_id: "1000000000.2000000000".into(),
        client_secret: "emulator-secret".into(),
        team: None,
        authorize_url: None,
        token_url: Some(rx.url("api/oauth.v2.access")),
        updates: true,
    });
    let mut g = Gateway::start_with(config).await;
    g.keep(dir);
    rx.script(&[(
        200,
        r##"{"ok": true, "scope": "incoming-webhook,chat:write", "token_type": "bot",
            "access_token": "xoxb-1-2-3", "team": {"id": "T1", "name": "W"},
            "incoming_webhook": {"channel": "#deploys", "channel_id": "C1",
              "url": "http://127.0.0.1:9/services/T1/B1/x"}}"##,
    )]);
    let b = browser();
    let authorize = crate::oauth::start(&g, &b, "slack", &[]).await;
    let callback = crate::oauth::decide(&b, &authorize, "C0EMUDEPLOY", "allow").await;
    assert_eq!(b.get(&callback).send().await.unwrap().status(), 302);
    // The post answers its ts; the first edit is throttled, the second finds the message
    // deleted: the update is posted anew, and the next edits that one.
    rx.script(&[(
        200,
        r#"{"ok": true, "channel": "C1", "ts": "1700000000.000001"}"#,
    )]);
    rx.script_with(
        429,
        r#"{"ok": false, "error": "ratelimited"}"#,
        &[("retry-after", "1")],
    );
    rx.script(&[
        (200, r#"{"ok": false, "error": "message_not_found"}"#),
        (
            200,
            r#"{"ok": true, "channel": "C1", "ts": "1700000000.000002"}"#,
        ),
        (
            200,
            r#"{"ok": true, "channel": "C1", "ts": "1700000000.000002"}"#,
        ),
    ]);
    send_steps(&g, PR_STEPS).await;
    let calls: Vec<(String, String, String)> = rx.received()[1..]
        .iter()
        .map(|r| {
            (
                r.path.clone(),
                r.body["ts"].as_str().unwrap_or("-").to_string(),
                r.headers["authorization"].to_str().unwrap().to_string(),
            )
        })
        .collect();
    let bearer = "Bearer xoxb-1-2-3".to_string();
    assert_eq!(
        calls,
        vec![
            ("/api/chat.postMessage".into(), "-".into(), bearer.clone()),
            (
                "/api/chat.update".into(),
                "1700000000.000001".into(),
                bearer.clone()
            ),
            (
                "/api/chat.update".into(),
                "1700000000.000001".into(),
                bearer.clone()
            ),
            ("/api/chat.postMessage".into(), "-".into(), bearer.clone()),
            (
                "/api/chat.update".into(),
                "1700000000.000002".into(),
                bearer
            ),
        ]
    );
    // The throttled edit waited for Retry-After.
    let got = rx.received();
    assert!(got[3].at - got[2].at >= std::time::Duration::from_millis(900));
    // Every call went to the channel the install picked.
    assert!(got[1..].iter().all(|r| r.body["channel"] == "C1"));
}

/// The emulated Mattermost's `~deploys`: its webhook's path, its id, and the bot's token.
const MATTERMOST_HOOK: &str = "/emulator/mattermost/hooks/emuhookdeploys0000000000aa";
const MATTERMOST_DEPLOYS: &str = "4yqrg8o1h7dm5f3k9b2n6c0e1p";
const MATTERMOST_BOT: &str = "emubottoken000000000000000";

/// A Mattermost connection with the emulated bot, made through the API: its id.
async fn mattermost_with_bot(g: &Gateway) -> String {
    mattermost_bot_at(g, &g.url(MATTERMOST_HOOK)).await
}

/// A Mattermost connection to the webhook `url` with the emulated bot's token and `~deploys`.
async fn mattermost_bot_at(g: &Gateway, url: &str) -> String {
    let res = g
        .client
        .post(g.url("/api/connections"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({
            "name": "mm", "url": url, "kind": "mattermost",
            "bot": {"token": MATTERMOST_BOT, "channel": MATTERMOST_DEPLOYS},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["bot"], true, "{v}");
    assert!(
        !v.to_string().contains(MATTERMOST_BOT),
        "the token is never shown"
    );
    v["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_pull_request_is_one_mattermost_post_patched_by_its_bot() {
    let g = emulated().await;
    mattermost_with_bot(&g).await;
    send_steps(&g, PR_STEPS).await;
    let messages = channel(&g, "mattermost/inbox/deploys").await;
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert_eq!(messages[0]["edits"].as_array().unwrap().len(), 2);
    let title = messages[0]["card"]["attachments"][0]["title"]
        .as_str()
        .unwrap();
    assert!(title.ends_with("pull request #2 merged"), "{messages:#?}");
    // A post deleted in the channel: the next update is a new post.
    let id = messages[0]["id"].as_str().unwrap();
    let res = g
        .client
        .delete(g.url(&format!("/emulator/mattermost/api/v4/posts/{id}")))
        .bearer_auth(MATTERMOST_BOT)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    send_steps(&g, &PR_STEPS[1..2]).await;
    let messages = channel(&g, "mattermost/inbox/deploys").await;
    assert_eq!(messages.len(), 1);
    assert_ne!(messages[0]["id"], id);
    assert!(messages[0]["edits"].as_array().unwrap().is_empty());
    // The bot's token revoked: the connection breaks, the card is kept.
    g.client
        .post(g.url("/emulator/mattermost/bot/revoke"))
        .send()
        .await
        .unwrap();
    send_steps(&g, &PR_STEPS[2..]).await;
    let conns = g.admin_get("/api/connections").await;
    assert!(
        conns[0]["broken"].as_str().unwrap().contains("HTTP 401"),
        "{conns}"
    );
    assert_eq!(g.deliveries("state=dead").await.len(), 1);
}

#[tokio::test]
async fn a_bot_is_checked_where_it_is_given() {
    let g = emulated().await;
    let post = |body: Value| {
        let g = &g;
        async move {
            let res = g
                .client
                .post(g.url("/api/connections"))
                .bearer_auth(ADMIN_TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    // Not a Mattermost connection.
    let (status, v) = post(serde_json::json!({
        "name": "d", "url": g.url(DISCORD_HOOK), "kind": "discord",
        "bot": {"token": MATTERMOST_BOT, "channel": MATTERMOST_DEPLOYS}}))
    .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("invalid_connection"))
    );
    assert!(v["detail"].as_str().unwrap().contains("Mattermost"), "{v}");
    // A channel id of the wrong shape.
    let (status, v) = post(serde_json::json!({
        "name": "m", "url": g.url(MATTERMOST_HOOK), "kind": "mattermost",
        "bot": {"token": MATTERMOST_BOT, "channel": "town-square"}}))
    .await;
    assert_eq!(status, 400);
    assert!(v["detail"].as_str().unwrap().contains("channel id"), "{v}");
    // Added later, and removed, with PATCH.
    let id = g.connect(&g.url(MATTERMOST_HOOK), "mattermost", &[]).await;
    let patch = |body: Value| {
        let g = &g;
        let id = id.clone();
        async move {
            let res = g
                .client
                .patch(g.url(&format!("/api/connections/{id}")))
                .bearer_auth(ADMIN_TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    let (status, v) =
        patch(serde_json::json!({"bot": {"token": MATTERMOST_BOT, "channel": MATTERMOST_DEPLOYS}}))
            .await;
    assert_eq!((status, v["bot"].as_bool()), (200, Some(true)), "{v}");
    let (status, v) = patch(serde_json::json!({"bot": null})).await;
    assert_eq!(status, 200);
    assert!(v.get("bot").is_none(), "{v}");
    // Pasted on /connect with the form's bot fields.
    let res = g
        .client
        .post(g.url("/connect/paste"))
        .form(&[
            ("name", "pasted"),
            ("url", g.url(MATTERMOST_HOOK).as_str()),
            ("kind", "mattermost"),
            ("token", ADMIN_TOKEN),
            ("bot_token", MATTERMOST_BOT),
            ("bot_channel", MATTERMOST_DEPLOYS),
        ])
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.text().await.unwrap());
    let all = g.admin_get("/api/connections").await;
    let pasted = all
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "pasted")
        .unwrap();
    assert_eq!(pasted["bot"], true);
}

/// A gateway whose one rule renders generic `step` events into a card keyed by the payload's
/// `key`, with the payload's `update`, and a Mattermost connection with the emulated bot.
async fn stepping_gateway() -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let (rules, templates) = (dir.path().join("rules"), dir.path().join("templates"));
    std::fs::create_dir_all(templates.join("prop")).unwrap();
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("steps.yaml"),
        "- name: steps\n  source: generic\n  event: step\n  template: prop/step\n",
    )
    .unwrap();
    std::fs::write(
        templates.join("prop/step.card.hbs"),
        r#"{"title": "{{payload.key}} step {{payload.step}}", "key": "{{payload.key}}", "update": "{{payload.update}}"}"#,
    )
    .unwrap();
    let mut config = test_config(dir.path());
    config.connect.emulator = Some(true);
    config.rules_dir = Some(rules);
    config.templates_dir = Some(templates);
    let mut g = Gateway::start_with(config).await;
    g.keep(dir);
    mattermost_with_bot(&g).await;
    g
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(6))]

    /// For any sequence of events over 50 keys (even keys replace, odd keys reply), the
    /// channel ends with one message per replacing key showing its last step, its earlier
    /// steps as its edits in order, and one thread per replying key with every later step as
    /// a reply, in order: nothing lost, nothing out of order. (At most 90 events: the
    /// emulated channel keeps 100 messages.)
    #[test]
    fn any_sequence_ends_with_one_message_or_one_thread_per_key(
        keys in proptest::collection::vec(0usize..50, 1..90),
    ) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let g = stepping_gateway().await;
            for (step, k) in keys.iter().enumerate() {
                let update = if k % 2 == 0 { "replace" } else { "reply" };
                let body = serde_json::json!({"type": "step", "key": format!("k{k}"), "step": step, "update": update});
                let res = g
                    .client
                    .post(g.url("/hooks/generic"))
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 202);
            }
            g.wait_settled().await;
            let messages = channel(&g, "mattermost/inbox/deploys").await;
            let step_of = |card: &Value| -> (String, usize) {
                let title = card["attachments"][0]["title"].as_str().unwrap().to_string();
                let (key, step) = title.split_once(" step ").unwrap();
                (key.to_string(), step.parse().unwrap())
            };
            let mut expected: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
            for (step, k) in keys.iter().enumerate() {
                expected.entry(*k).or_default().push(step);
            }
            let roots: Vec<&Value> = messages.iter().filter(|m| m["thread"].is_null()).collect();
            assert_eq!(roots.len(), expected.len(), "one message per key: {messages:#?}");
            for (k, steps) in &expected {
                let key = format!("k{k}");
                let root = roots
                    .iter()
                    .find(|m| step_of(&m["card"]).0 == key)
                    .unwrap_or_else(|| panic!("no message for {key}"));
                if k % 2 == 0 {
                    // Its card shows the last step; its edits, the earlier ones in order.
                    let mut seen: Vec<usize> = root["edits"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|c| step_of(c).1)
                        .collect();
                    seen.push(step_of(&root["card"]).1);
                    assert_eq!(&seen, steps, "{key}");
                } else {
                    // The first step opens the thread; every later one is a reply, in order.
                    let mut seen = vec![step_of(&root["card"]).1];
                    seen.extend(
                        messages
                            .iter()
                            .filter(|m| m["thread"] == root["id"])
                            .map(|m| step_of(&m["card"]).1),
                    );
                    assert_eq!(&seen, steps, "{key}");
                    assert!(root["edits"].as_array().unwrap().is_empty());
                }
            }
        });
    }
}

#[tokio::test]
async fn a_post_whose_answer_was_lost_is_found_on_mattermost_not_posted_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.delivery.timeout = std::time::Duration::from_millis(300);
    let mut g = Gateway::start_with(config).await;
    g.keep(dir);
    let rx = Receiver::start().await;
    mattermost_bot_at(&g, &rx.url("hooks/abc")).await;
    // The post arrives, but its answer comes after cardwire stopped waiting.
    rx.delay(std::time::Duration::from_millis(600));
    let res = g
        .github("pull_request", &fixture(PR_STEPS[0].1), None)
        .await;
    assert_eq!(res.status(), 202);
    let first = rx.wait_for(1).await;
    rx.delay(std::time::Duration::ZERO);
    let delivery = first[0].body["props"]["cardwire_delivery"]
        .as_str()
        .unwrap()
        .to_string();
    // What the channel's posts then say: the post is there, with the delivery's id.
    rx.answer(
        200,
        &serde_json::json!({"order": ["p1"], "posts": {"p1": {
            "id": "p1", "channel_id": MATTERMOST_DEPLOYS, "props": {"cardwire_delivery": delivery}}}})
        .to_string(),
    );
    g.wait_settled().await;
    let calls = rx.calls();
    assert_eq!(
        calls,
        vec![
            ("POST".to_string(), "/api/v4/posts".to_string()),
            (
                "GET".to_string(),
                format!("/api/v4/channels/{MATTERMOST_DEPLOYS}/posts")
            ),
        ],
        "looked up, not posted again"
    );
    let results = results(&g).await;
    assert_eq!(results[0], "transport: timed out");
    assert_eq!(
        results[1],
        "delivered: an earlier attempt got no answer; its post p1 was found, not posted again"
    );
    // The next card of the key edits the post found.
    rx.answer(
        200,
        r#"{"id": "p1", "channel_id": "4yqrg8o1h7dm5f3k9b2n6c0e1p"}"#,
    );
    send_steps(&g, &PR_STEPS[1..2]).await;
    assert_eq!(
        rx.calls()[2],
        ("PUT".to_string(), "/api/v4/posts/p1/patch".to_string())
    );
}

/// A gateway on the emulators whose pull request rule replies rather than edits.
async fn replying_gateway() -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(
        rules.join("prs.yaml"),
        "- name: pr-thread\n  source: github\n  event: pull_request\n  template: github/pull_request\n  update: reply\n",
    )
    .unwrap();
    let mut config = test_config(dir.path());
    config.connect.emulator = Some(true);
    config.rules_dir = Some(rules);
    let mut g = Gateway::start_with(config).await;
    g.keep(dir);
    g
}

#[tokio::test]
async fn replies_thread_under_the_first_message_on_slack() {
    let g = replying_gateway().await;
    add_to_slack(&g).await;
    send_steps(&g, PR_STEPS).await;
    let messages = channel(&g, "slack/inbox/deploys").await;
    assert_eq!(messages.len(), 3, "{messages:#?}");
    let root = &messages[0];
    assert!(root["thread"].is_null());
    assert!(root["edits"].as_array().unwrap().is_empty());
    for reply in &messages[1..] {
        assert_eq!(reply["thread"], root["id"], "{reply:#?}");
        assert_eq!(reply["card"]["thread_ts"], root["id"]);
    }
    assert!(messages[2]["card"]["text"]
        .as_str()
        .unwrap()
        .contains("merged"));
    // The page shows the replies under their message.
    let page = g.get_text("/emulator/slack/inbox/deploys").await;
    assert!(page.contains("2 replies in its thread"), "{page}");
}

#[tokio::test]
async fn a_throttled_mattermost_patch_waits_and_goes_once() {
    let g = Gateway::start().await;
    let rx = Receiver::start().await;
    mattermost_bot_at(&g, &rx.url("hooks/abc")).await;
    rx.script(&[(
        201,
        r#"{"id": "p1", "channel_id": "4yqrg8o1h7dm5f3k9b2n6c0e1p"}"#,
    )]);
    rx.throttle("0.2");
    rx.answer(200, r#"{"id": "p1"}"#);
    send_steps(&g, &PR_STEPS[..2]).await;
    assert_eq!(
        rx.calls(),
        vec![
            ("POST".to_string(), "/api/v4/posts".to_string()),
            ("PUT".to_string(), "/api/v4/posts/p1/patch".to_string()),
            ("PUT".to_string(), "/api/v4/posts/p1/patch".to_string()),
        ]
    );
    let got = rx.received();
    assert_eq!(
        got[1].headers["authorization"],
        format!("Bearer {MATTERMOST_BOT}")
    );
    assert!(got[2].at - got[1].at >= std::time::Duration::from_millis(150));
}

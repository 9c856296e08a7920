//! Delivery to Slack, Discord, Google Chat and Mattermost by each platform's own rules, against
//! the scriptable receiver answering as each platform documents
//! (`shared/reference/more-chats.md`): success, the answers that break a connection, the ones
//! that bury one card, retries, each 429's hint, Discord's rate-limit headers, each platform's
//! pace, and Google Chat's threads. (A kill -9 mid-delivery for every kind is in `crash`.)

use std::time::Duration;

use serde_json::Value;

use crate::utils::*;

/// What became of a connection's one card.
#[derive(Debug, PartialEq)]
enum Fate {
    Delivered,
    /// The connection is broken; its card is a dead letter.
    Broken,
    /// The card is a dead letter whose reason holds this text; the connection is fine.
    Dead(&'static str),
}

/// A connection's kind, its receiver's answers in order, and what should become of its card.
type Case = (&'static str, &'static [(u16, &'static str)], Fate);

#[tokio::test]
async fn each_platforms_answers_deliver_break_bury_or_retry() {
    use Fate::*;
    // (kind, answers in order, what follows), each answer from the platform's documentation.
    let cases: &[Case] = &[
        ("slack", &[(200, "ok")], Delivered),
        ("slack", &[(404, "no_service")], Broken),
        ("slack", &[(404, "channel_not_found")], Broken),
        ("slack", &[(410, "channel_is_archived")], Broken),
        ("slack", &[(403, "action_prohibited")], Broken),
        (
            "slack",
            &[(400, "invalid_payload")],
            Dead("invalid_payload"),
        ),
        ("slack", &[(400, "no_text")], Dead("no_text")),
        ("slack", &[(500, "rollup_error"), (200, "ok")], Delivered),
        ("discord", &[(204, "")], Delivered),
        (
            "discord",
            &[(
                200,
                r#"{"id": "1", "type": 0, "content": "", "channel_id": "2"}"#,
            )],
            Delivered,
        ),
        (
            "discord",
            &[(404, r#"{"message": "Unknown Webhook", "code": 10015}"#)],
            Broken,
        ),
        (
            "discord",
            &[(400, r#"{"message": "Invalid Form Body", "code": 50035}"#)],
            Dead("Invalid Form Body"),
        ),
        ("discord", &[(502, "bad gateway"), (204, "")], Delivered),
        (
            "google_chat",
            &[(200, r#"{"name": "spaces/AAA/messages/x", "text": ""}"#)],
            Delivered,
        ),
        (
            "google_chat",
            &[(
                404,
                r#"{"error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND"}}"#,
            )],
            Broken,
        ),
        (
            "google_chat",
            &[(
                403,
                r#"{"error": {"code": 403, "message": "The caller does not have permission", "status": "PERMISSION_DENIED"}}"#,
            )],
            Broken,
        ),
        (
            "google_chat",
            &[(
                400,
                r#"{"error": {"code": 400, "message": "Invalid JSON payload received.", "status": "INVALID_ARGUMENT"}}"#,
            )],
            Dead("Invalid JSON payload"),
        ),
        ("mattermost", &[(200, "ok")], Delivered),
        ("mattermost", &[(404, "")], Broken),
        (
            "mattermost",
            &[(
                400,
                r#"{"id": "web.incoming_webhook.parse.app_error", "message": "Unable to parse incoming data"}"#,
            )],
            Dead("Unable to parse incoming data"),
        ),
        ("mattermost", &[(503, "busy"), (200, "ok")], Delivered),
    ];
    let g = Gateway::start().await;
    let mut connections = Vec::new();
    for (kind, answers, _) in cases {
        let rx = Receiver::start().await;
        rx.script(answers);
        let id = g.connect(&rx.url(kind), kind, &[]).await;
        connections.push((id, rx));
    }
    g.github("push", &fixture("github/push.event.4.json"), None)
        .await;
    g.wait_settled().await;
    let delivered = g.deliveries("state=delivered").await;
    let dead = g.deliveries("state=dead").await;
    let mut wrong = Vec::new();
    for ((id, rx), (kind, answers, want)) in connections.iter().zip(cases) {
        let con = g.admin_get(&format!("/api/connections/{id}")).await;
        let mine = |list: &[Value]| -> Vec<Value> {
            list.iter()
                .filter(|d| d["connection"] == id.as_str())
                .cloned()
                .collect()
        };
        let got = if con["broken"].is_string() {
            Broken
        } else if let [d] = mine(&dead).as_slice() {
            let reason = d["reason"].as_str().unwrap_or_default().to_string();
            match want {
                Dead(text) if reason.contains(text) => Dead(text),
                _ => {
                    wrong.push(format!("{kind} {answers:?}: dead with {reason:?}"));
                    continue;
                }
            }
        } else if mine(&delivered).len() == 1 {
            Delivered
        } else {
            wrong.push(format!(
                "{kind} {answers:?}: neither delivered, dead nor broken"
            ));
            continue;
        };
        if got != *want {
            wrong.push(format!("{kind} {answers:?}: {got:?}, want {want:?}"));
        }
        // Every answer scripted was asked for, and no more: a gone or refused card is never
        // sent again.
        assert_eq!(rx.received().len(), answers.len(), "{kind} {answers:?}");
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The first request was refused with a 429; how long until the second came.
async fn pause_after_429(kind: &str, answer: (u16, &str), headers: &[(&str, &str)]) -> Duration {
    let g = Gateway::start().await;
    let rx = Receiver::start().await;
    rx.script_with(answer.0, answer.1, headers);
    g.connect(&rx.url(kind), kind, &[]).await;
    g.github("push", &fixture("github/push.event.4.json"), None)
        .await;
    let got = rx.wait_for(2).await;
    g.wait_settled().await;
    assert_eq!(g.deliveries("state=delivered").await.len(), 1, "{kind}");
    got[1].at.duration_since(got[0].at)
}

#[tokio::test]
async fn a_429_pauses_for_each_platforms_own_hint() {
    // Slack: the Retry-After header.
    let slack = pause_after_429("slack", (429, "rate_limited"), &[("retry-after", "1")]).await;
    assert!(
        slack >= Duration::from_millis(950),
        "slack resumed after {slack:?}"
    );
    // Discord: `retry_after` in the JSON body, in seconds with decimals, no header.
    let discord = pause_after_429(
        "discord",
        (
            429,
            r#"{"message": "You are being rate limited.", "retry_after": 0.8, "global": false}"#,
        ),
        &[("x-ratelimit-scope", "user")],
    )
    .await;
    assert!(
        discord >= Duration::from_millis(750),
        "discord resumed after {discord:?}"
    );
    // Google Chat gives no hint: an exponential pause, starting at a second.
    let chat = pause_after_429(
        "google_chat",
        (
            429,
            r#"{"error": {"code": 429, "message": "Resource has been exhausted", "status": "RESOURCE_EXHAUSTED"}}"#,
        ),
        &[],
    )
    .await;
    assert!(
        chat >= Duration::from_millis(750),
        "google chat resumed after {chat:?}"
    );
    // Mattermost, when its server's rate limit is on: the Retry-After header.
    let mm = pause_after_429(
        "mattermost",
        (429, "rate limit exceeded"),
        &[("retry-after", "1")],
    )
    .await;
    assert!(
        mm >= Duration::from_millis(950),
        "mattermost resumed after {mm:?}"
    );
}

#[tokio::test]
async fn discord_holds_a_webhook_while_its_bucket_is_empty() {
    let g = Gateway::start().await;
    let rx = Receiver::start().await;
    g.connect(&rx.url("discord"), "discord", &[]).await;
    // The bucket is empty after the first card, for 1.2 s; the second card waits for it.
    rx.script_with(
        204,
        "",
        &[
            ("x-ratelimit-limit", "5"),
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset-after", "1.2"),
            ("x-ratelimit-bucket", "abcd1234"),
        ],
    );
    rx.answer(204, "");
    for n in 0..2 {
        g.github(
            "push",
            &fixture("github/push.event.4.json"),
            Some(&format!("b{n}")),
        )
        .await;
    }
    let got = rx.wait_for(2).await;
    let gap = got[1].at.duration_since(got[0].at);
    assert!(
        gap >= Duration::from_millis(1100),
        "the second card came after {gap:?}"
    );
}

/// At most `count` requests in any `period`: every `count + 1` consecutive ones span at least
/// the period (less a little for the network between cardwire and the receiver).
fn within(kind: &str, got: &[Received], count: usize, period: Duration) {
    for w in got.windows(count + 1) {
        let span = w[count].at.duration_since(w[0].at);
        assert!(
            span + Duration::from_millis(100) >= period,
            "{kind}: {} requests within {span:?}, over {count} per {period:?}",
            count + 1
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_20_cards_keeps_to_each_platforms_pace() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    // The defaults: each platform's documented limits.
    config.delivery.pacing = cardwire::config::PacingConfig::Switch(true);
    let mut g = Gateway::start_with(config).await;
    g.keep(dir);
    let mut receivers = Vec::new();
    for kind in ["slack", "discord", "google_chat", "mattermost"] {
        let rx = Receiver::start().await;
        rx.answer(200, "ok");
        g.connect(&rx.url(kind), kind, &[]).await;
        receivers.push((kind, rx));
    }
    for n in 0..20 {
        g.github(
            "push",
            &fixture("github/push.event.4.json"),
            Some(&format!("burst-{n}")),
        )
        .await;
    }
    for (kind, rx) in &receivers {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while rx.received().len() < 20 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{kind}: {} of 20",
                rx.received().len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let got = rx.received();
        match *kind {
            // Slack: about one a second per webhook.
            "slack" => within(kind, &got, 1, Duration::from_secs(1)),
            // Discord: 5 per 2 s per webhook.
            "discord" => within(kind, &got, 5, Duration::from_secs(2)),
            // Google Chat: one a second per space.
            "google_chat" => within(kind, &got, 1, Duration::from_secs(1)),
            // Mattermost: not paced by default (its server's own limit is off by default;
            // `config`'s unit tests hold the defaults), all 20 arrived.
            _ => {}
        }
    }
}

#[tokio::test]
async fn google_chat_cards_carry_their_thread_and_the_reply_option() {
    let g = Gateway::start().await;
    let rx = Receiver::start().await;
    rx.answer(200, r#"{"name": "spaces/AAA/messages/x"}"#);
    g.connect(&rx.url("chat"), "google_chat", &[]).await;
    g.github("push", &fixture("github/push.event.4.json"), None)
        .await;
    let got = rx.wait_for(1).await;
    assert_eq!(
        got[0].query.as_deref(),
        Some("messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD")
    );
    // The push card's thread: one per repository and branch.
    assert_eq!(
        got[0].body["thread"]["threadKey"],
        "Codertocat/Hello-World refs/heads/master"
    );
}

#[tokio::test]
async fn a_discord_forum_opens_a_thread_per_key_and_replies_in_it() {
    let g = Gateway::start().await;
    let rx = Receiver::start().await;
    let forum = g.connect(&rx.url("forum"), "discord", &[]).await;
    let patch = |id: &str, body: serde_json::Value| {
        g.client
            .patch(g.url(&format!("/api/connections/{id}")))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
    };
    let res = patch(&forum, serde_json::json!({"forum": true}))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["forum"], true);
    g.connect(&rx.url("text"), "discord", &[]).await;
    let slack = g.connect(&rx.url("slack"), "slack", &[]).await;
    let res = patch(&slack, serde_json::json!({"forum": true}))
        .await
        .unwrap();
    assert_eq!(res.status(), 400, "forum is Discord's");
    // With `?wait=true` Discord answers the message; in a forum its channel is the new thread.
    rx.answer(200, r#"{"id": "1", "type": 0, "channel_id": "998877"}"#);
    for n in 0..2 {
        g.github(
            "push",
            &fixture("github/push.event.4.json"),
            Some(&format!("f{n}")),
        )
        .await;
    }
    rx.wait_for(6).await;
    g.wait_settled().await;
    let got = rx.received();
    let on = |p: &str| -> Vec<&Received> { got.iter().filter(|r| r.path == p).collect() };
    let forum = on("/forum");
    // The first card opens the push's thread (one per repository and branch)...
    assert_eq!(forum[0].query.as_deref(), Some("wait=true"));
    assert_eq!(
        forum[0].body["thread_name"],
        "Codertocat/Hello-World refs/heads/master"
    );
    // ...the second replies in it.
    assert_eq!(forum[1].query.as_deref(), Some("thread_id=998877"));
    assert!(forum[1].body.get("thread_name").is_none());
    // A text channel gets no thread (Discord refuses `thread_name` there).
    for r in on("/text") {
        assert!(
            r.query.is_none() && r.body.get("thread_name").is_none(),
            "{r:?}"
        );
    }
}

#[tokio::test]
async fn pause_dead_letters_and_replay_work_for_every_platform() {
    let g = Gateway::start().await;
    for kind in ["slack", "discord", "google_chat", "mattermost"] {
        let rx = Receiver::start().await;
        // Refused once (a dead letter), then taken.
        rx.script(&[(400, "invalid_payload")]);
        rx.answer(200, "ok");
        let id = g.connect(&rx.url(kind), kind, &[]).await;
        let g = &g;
        let push = |key: String| async move {
            g.github("push", &fixture("github/push.event.4.json"), Some(&key))
                .await
                .status()
        };
        assert_eq!(push(format!("{kind}-1")).await, 202);
        g.wait_settled().await;
        let dead = g.deliveries(&format!("state=dead&connection={id}")).await;
        assert_eq!(dead.len(), 1, "{kind}");
        // Replay: the dead letter goes out again, and is taken.
        let res = g
            .client
            .post(g.url("/api/deliveries/retry"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&serde_json::json!({"connection": id}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.json::<Value>().await.unwrap()["retried"], 1, "{kind}");
        rx.wait_for(2).await;
        g.wait_settled().await;
        let delivered = g
            .deliveries(&format!("state=delivered&connection={id}"))
            .await;
        assert_eq!(delivered.len(), 1, "{kind}");
        // Paused: the next event is counted and not sent.
        let res = g
            .client
            .patch(g.url(&format!("/api/connections/{id}")))
            .bearer_auth(ADMIN_TOKEN)
            .json(&serde_json::json!({"paused": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(push(format!("{kind}-2")).await, 202);
        g.wait_settled().await;
        let con = g.admin_get(&format!("/api/connections/{id}")).await;
        assert_eq!(con["skipped"], 1, "{kind}: {con}");
        assert_eq!(
            rx.received().len(),
            2,
            "{kind}: a paused connection gets nothing"
        );
    }
}

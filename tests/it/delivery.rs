//! Delivery: success criteria per kind, retries, dead letters, restart.

use std::time::Duration;

use crate::utils::*;

#[tokio::test]
async fn cards_carry_json_and_a_stable_idempotency_key() {
    let g = Gateway::start().await;
    let rx = Receiver::start().await;
    g.connect(&rx.url("teams"), "teams", &[]).await;
    // The legacy connector's 200-with-error-text is a failure: retried with the same key.
    rx.script(&[(
        200,
        "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 429 with ContextId x",
    )]);
    assert_eq!(
        g.github("push", &fixture("github/push.event.4.json"), None)
            .await
            .status(),
        202
    );
    let got = rx.wait_for(2).await;
    let key = |r: &Received| r.headers["idempotency-key"].to_str().unwrap().to_string();
    assert_eq!(key(&got[0]), key(&got[1]));
    assert!(key(&got[0]).starts_with("dlv_"));
    assert_eq!(got[0].headers["content-type"], "application/json");
    assert_eq!(got[0].body, got[1].body);
}

#[tokio::test]
async fn a_workflow_url_takes_any_2xx() {
    let g = Gateway::start().await;
    let rx = Receiver::start().await;
    rx.answer(202, "");
    g.connect(&rx.url("wf"), "workflow", &[]).await;
    g.github("push", &fixture("github/push.event.4.json"), None)
        .await;
    let got = rx.wait_for(1).await;
    assert_eq!(got[0].body["type"], "message");
    g.wait_settled().await;
    assert_eq!(g.deliveries("state=delivered").await.len(), 1);
    assert_eq!(
        rx.received().len(),
        1,
        "a 202 from a Workflows URL must count as delivered"
    );
}

#[tokio::test]
async fn transient_failures_are_retried_then_delivered_in_order() {
    let g = Gateway::start().await;
    let rx = Receiver::start().await;
    g.connect(&rx.url("teams"), "teams", &[]).await;
    rx.script(&[(500, "oops"), (503, ""), (429, "slow down")]);
    for n in [4, 5] {
        let body = fixture(&format!("github/push.event.{n}.json"));
        assert_eq!(
            g.github("push", &body, Some(&format!("d{n}")))
                .await
                .status(),
            202
        );
    }
    let got = rx.wait_for(5).await;
    // The first card failed three times before it went through; the second waited behind it.
    let first_id = got[0].headers["idempotency-key"].clone();
    assert!(got[..4]
        .iter()
        .all(|r| r.headers["idempotency-key"] == first_id));
    assert_ne!(got[4].headers["idempotency-key"], first_id);
}

#[tokio::test]
async fn a_permanent_failure_does_not_block_the_next_card() {
    let g = Gateway::start().await;
    let rx = Receiver::start().await;
    g.connect(&rx.url("teams"), "teams", &[]).await;
    rx.script(&[(400, "Summary or Text is required")]);
    g.github("push", &fixture("github/push.event.4.json"), Some("a"))
        .await;
    g.github("push", &fixture("github/push.event.5.json"), Some("b"))
        .await;
    let got = rx.wait_for(2).await;
    assert_ne!(
        got[0].headers["idempotency-key"],
        got[1].headers["idempotency-key"]
    );
}

#[tokio::test]
async fn channels_route_cards_to_the_connections_that_want_them() {
    let g = Gateway::start().await;
    let rx = Receiver::start().await;
    g.connect(&rx.url("github"), "teams", &["github"]).await;
    let other = g.connect(&rx.url("other"), "teams", &["alerts"]).await;
    g.github("push", &fixture("github/push.event.4.json"), None)
        .await;
    // Decided before the 202: no card for the connection that wants only alerts.
    assert!(g
        .deliveries(&format!("connection={other}"))
        .await
        .is_empty());
    let got = rx.wait_for(1).await;
    g.wait_settled().await;
    assert_eq!(rx.received().len(), 1);
    assert_eq!(got[0].path, "/github");
}

#[tokio::test]
async fn connections_and_queued_cards_survive_a_restart() {
    let mut g = Gateway::start().await;
    let rx = Receiver::start().await;
    // The receiver is down (500) while the gateway runs, so cards stay queued.
    rx.answer(500, "down");
    let con = g.connect(&rx.url("teams"), "teams", &[]).await;
    for n in [4, 5] {
        let body = fixture(&format!("github/push.event.{n}.json"));
        assert_eq!(
            g.github("push", &body, Some(&format!("r{n}")))
                .await
                .status(),
            202
        );
    }
    rx.wait_for(1).await;
    g.stop().await;
    let attempts_before = rx.received().len();

    rx.answer(200, "1");
    g.restart().await;
    let list = g.admin_get("/api/connections").await;
    assert_eq!(list[0]["id"], con.as_str());
    let got = rx.wait_for(attempts_before + 2).await;
    let delivered: Vec<_> = got[attempts_before..]
        .iter()
        .map(|r| r.headers["idempotency-key"].clone())
        .collect();
    assert_eq!(delivered.len(), 2);
    assert_ne!(delivered[0], delivered[1]);
    // Both cards are the ones accepted before the restart, in order.
    assert_eq!(got[0].headers["idempotency-key"], delivered[0]);
}

#[tokio::test]
async fn a_429_pauses_that_connection_for_retry_after_and_no_other() {
    let g = Gateway::start().await;
    let slow = Receiver::start().await;
    let fine = Receiver::start().await;
    g.connect(&slow.url("a"), "teams", &[]).await;
    g.connect(&fine.url("b"), "teams", &[]).await;
    slow.throttle("2");
    g.github("push", &fixture("github/push.event.4.json"), Some("t1"))
        .await;
    let first = slow.wait_for(1).await[0].at;
    fine.wait_for(1).await;
    // The other connection keeps flowing while this one waits.
    g.github("push", &fixture("github/push.event.5.json"), Some("t2"))
        .await;
    let b2 = fine.wait_for(2).await[1].at;
    assert!(
        b2.duration_since(first) < Duration::from_millis(1500),
        "the other connection was held up"
    );
    let got = slow.wait_for(3).await;
    let resumed = got[1].at.duration_since(first);
    assert!(
        resumed >= Duration::from_millis(1900),
        "the throttled connection was asked again after {resumed:?}"
    );
    // In order: the throttled card first, then the next one.
    assert_eq!(
        got[0].headers["idempotency-key"],
        got[1].headers["idempotency-key"]
    );
    assert_ne!(
        got[1].headers["idempotency-key"],
        got[2].headers["idempotency-key"]
    );
}

#[tokio::test]
async fn a_gone_url_breaks_the_connection_keeps_its_cards_and_a_retry_sends_them() {
    let g = Gateway::start().await;
    let rx = Receiver::start().await;
    let id = g.connect(&rx.url("gone"), "teams", &[]).await;
    rx.script(&[(410, "Gone")]);
    g.github("push", &fixture("github/push.event.4.json"), Some("g1"))
        .await;
    rx.wait_for(1).await;
    let c = g
        .admin_get_until(&format!("/api/connections/{id}"), |c| {
            c["broken"].is_string()
        })
        .await;
    assert!(c["broken"].as_str().unwrap().contains("410"));
    // While broken, new cards are kept as dead letters, not sent.
    g.github("push", &fixture("github/push.event.5.json"), Some("g2"))
        .await;
    g.wait_settled().await;
    assert_eq!(rx.received().len(), 1);
    let dead = g.admin_get("/api/deliveries?state=dead").await;
    let dead = dead["deliveries"].as_array().unwrap();
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert!(dead.iter().all(|d| d["reason"]
        .as_str()
        .unwrap()
        .starts_with("connection broken")));
    let one = g
        .admin_get(&format!(
            "/api/deliveries/{}",
            dead[0]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(one["attempt_log"][0]["status"], 410);
    // Fixed on the other side: retrying the connection's dead letters sends them, in order.
    let res = g
        .client
        .post(g.url("/api/deliveries/retry"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"connection": id}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<serde_json::Value>().await.unwrap()["retried"], 2);
    let got = rx.wait_for(3).await;
    assert_eq!(
        got[0].headers["idempotency-key"],
        got[1].headers["idempotency-key"]
    );
    assert!(g.admin_get(&format!("/api/connections/{id}")).await["broken"].is_null());
    g.admin_get_until("/api/deliveries?state=delivered", |d| {
        d["deliveries"].as_array().map(Vec::len) == Some(2)
    })
    .await;
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.delivery.max_queued = 2;
    let g = Gateway::start_with(config).await;
    let rx = Receiver::start().await;
    rx.answer(500, "down");
    g.connect(&rx.url("t"), "teams", &[]).await;
    for n in 0..2 {
        assert_eq!(
            g.github(
                "push",
                &fixture("github/push.event.4.json"),
                Some(&format!("q{n}"))
            )
            .await
            .status(),
            202
        );
    }
    let res = g
        .github("push", &fixture("github/push.event.4.json"), Some("q2"))
        .await;
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "30");
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["error"], "queue_full");
}

#[tokio::test]
async fn pacing_keeps_a_url_within_its_window() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.delivery.pacing = cardwire::config::PacingConfig::PerKind {
        teams: vec!["2/1s".into()],
        workflow: vec![],
        slack: vec![],
        discord: vec![],
        google_chat: vec![],
        mattermost: vec![],
    };
    let g = Gateway::start_with(config).await;
    let rx = Receiver::start().await;
    g.connect(&rx.url("t"), "teams", &[]).await;
    for n in 0..5 {
        g.github(
            "push",
            &fixture("github/push.event.4.json"),
            Some(&format!("p{n}")),
        )
        .await;
    }
    let got = rx.wait_for(5).await;
    for w in got.windows(3) {
        let span = w[2].at.duration_since(w[0].at);
        assert!(
            span >= Duration::from_millis(900),
            "three requests within {span:?}: over 2 per second"
        );
    }
}

#[tokio::test]
async fn metrics_count_events_deliveries_and_queue_depth() {
    let g = Gateway::start().await;
    let rx = Receiver::start().await;
    g.connect(&rx.url("t"), "teams", &[]).await;
    g.github("push", &fixture("github/push.event.4.json"), Some("m1"))
        .await;
    g.github("push", b"not json", None).await;
    rx.wait_for(1).await;
    // The outcome is recorded just after the receiver answered.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = g.get_text("/metrics").await;
        if text.contains(r#"cardwire_queue_depth{state="delivered"} 1"#)
            || tokio::time::Instant::now() >= deadline
        {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for want in [
        r#"cardwire_events_total{source="github",outcome="accepted",reason=""} 1"#,
        r#"cardwire_events_total{source="github",outcome="rejected",reason="invalid_json"} 1"#,
        r#"cardwire_cards_total{rule="github-push-branch",result="rendered"} 1"#,
        r#"outcome="delivered"} 1"#,
        r#"cardwire_queue_depth{state="delivered"} 1"#,
        "cardwire_delivery_latency_seconds_count 1",
    ] {
        assert!(text.contains(want), "{want} missing in:\n{text}");
    }
}

#[tokio::test]
async fn sync_durability_accepts_and_delivers_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.durability = cardwire::config::Durability::Sync;
    let g = Gateway::start_with(config).await;
    let rx = Receiver::start().await;
    g.connect(&rx.url("t"), "teams", &[]).await;
    assert_eq!(
        g.github("push", &fixture("github/push.event.4.json"), None)
            .await
            .status(),
        202
    );
    rx.wait_for(1).await;
}

/// A connection of each of the other platforms gets its native card for an event whose rule
/// has only Teams templates (read as a portable card), posted as that platform expects and
/// judged by its answers (any 2xx is delivered: Slack's and Mattermost's `ok`, Discord's 204,
/// Google Chat's message JSON); a 404 (a deleted webhook) breaks the connection that got it and
/// no other.
#[tokio::test]
async fn every_platform_gets_its_native_card_and_its_answers_are_judged() {
    let g = Gateway::start().await;
    let rx = Receiver::start().await;
    let slack = g.connect(&rx.url("slack"), "slack", &[]).await;
    let discord = g.connect(&rx.url("discord"), "discord", &[]).await;
    let chat = g.connect(&rx.url("chat"), "google_chat", &[]).await;
    let mm = g.connect(&rx.url("mm"), "mattermost", &[]).await;
    rx.answer(200, "ok");
    g.github("push", &fixture("github/push.event.4.json"), None)
        .await;
    let got = rx.wait_for(4).await;
    let by = |p: &str| {
        got.iter()
            .find(|r| r.path.ends_with(p))
            .unwrap()
            .body
            .clone()
    };
    let s = by("/slack");
    assert_eq!(s["text"], "Codertocat/Hello-World: pushed to master");
    assert_eq!(s["attachments"][0]["blocks"][0]["type"], "header");
    let d = by("/discord");
    assert_eq!(
        d["embeds"][0]["title"],
        "Codertocat/Hello-World: pushed to master"
    );
    assert_eq!(d["allowed_mentions"]["parse"], serde_json::json!([]));
    let c = by("/chat");
    assert_eq!(
        c["cardsV2"][0]["card"]["header"]["title"],
        "Codertocat/Hello-World: pushed to master"
    );
    let m = by("/mm");
    assert_eq!(
        m["attachments"][0]["title"],
        "Codertocat/Hello-World: pushed to master"
    );
    g.wait_settled().await;
    let delivered = g.deliveries("state=delivered").await;
    for con in [&slack, &discord, &chat, &mm] {
        assert!(
            delivered.iter().any(|d| d["connection"] == con.as_str()),
            "{con}: {delivered:?}"
        );
    }

    // Discord's 404 for a deleted webhook: that connection is broken, the others are not.
    rx.script(&[(404, r#"{"message": "Unknown Webhook", "code": 10015}"#)]);
    let before = rx.received().len();
    g.github("push", &fixture("github/push.event.4.json"), None)
        .await;
    rx.wait_for(before + 4).await;
    g.wait_settled().await;
    let cons = g.admin_get("/api/connections").await;
    let broken: Vec<&str> = cons
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| !c["broken"].is_null())
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert_eq!(broken.len(), 1, "{cons}");
}

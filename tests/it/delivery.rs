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
    tokio::time::sleep(Duration::from_millis(400)).await;
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
    g.connect(&rx.url("other"), "teams", &["alerts"]).await;
    g.github("push", &fixture("github/push.event.4.json"), None)
        .await;
    let got = rx.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
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

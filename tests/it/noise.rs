//! Noise control through the running gateway: dedup and folding with their stats, and the
//! digest choice. (Summaries and digests over time: `noise::tests`, on a fake clock.)

use serde_json::{json, Value};

use crate::utils::*;

const RULES: &str = "\
- name: deduped
  source: github
  event: push
  dedup: {key: '{{payload.after}}', window: 10m}
  template: github/push
  channel: dedup
- name: limited
  source: github
  event: push
  limit: {rate: 2/1m, per: '{{payload.repository.full_name}}'}
  template: github/push
  channel: limit
";

#[tokio::test]
async fn repeats_are_dropped_and_bursts_folded_and_both_counted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("rules/noise.yaml"), RULES).unwrap();
    let mut config = test_config(&dir.path().join("data"));
    config.rules_dir = Some(dir.path().join("rules"));
    let g = Gateway::start_with(config).await;
    let dedup = Receiver::start().await;
    let limit = Receiver::start().await;
    g.connect(&dedup.url("d"), "teams", &["dedup"]).await;
    g.connect(&limit.url("l"), "teams", &["limit"]).await;
    for n in 0..5 {
        let res = g
            .github(
                "push",
                &fixture("github/push.event.4.json"),
                Some(&format!("n{n}")),
            )
            .await;
        assert_eq!(res.status(), 202);
    }
    dedup.wait_for(1).await;
    limit.wait_for(2).await;
    g.wait_settled().await;
    assert_eq!(
        dedup.received().len(),
        1,
        "the same push four more times: dropped"
    );
    assert_eq!(limit.received().len(), 2, "2 a minute: the rest folded");
    let rules = g.admin_get("/api/rules").await;
    let stats = |name: &str| rule_stats(&rules, name);
    assert_eq!(stats("deduped"), json!({"deduped": 4, "folded": 0}));
    assert_eq!(stats("limited"), json!({"deduped": 0, "folded": 3}));
    let metrics = g.get_text("/metrics").await;
    assert!(
        metrics.contains(r#"cardwire_deduped_total{rule="deduped"} 4"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"cardwire_folded_total{rule="limited"} 3"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_digest_is_chosen_and_checked_and_holds_cards_back() {
    let g = Gateway::start().await;
    let rx = Receiver::start().await;
    let id = g.connect(&rx.url("t"), "teams", &[]).await;
    let patch = |body: Value| {
        g.client
            .patch(g.url(&format!("/api/connections/{id}")))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
    };
    let res = patch(json!({"digest": {"at": "09:00", "tz": "Mars/Olympus"}}))
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"], "invalid_digest");
    assert!(v["detail"].as_str().unwrap().contains("Mars/Olympus"));
    let res =
        patch(json!({"digest": {"at": "09:00", "days": ["mon", "fri"], "tz": "Europe/Berlin"}}))
            .await
            .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap()["digest"]["tz"],
        "Europe/Berlin"
    );
    g.github("push", &fixture("github/push.event.4.json"), Some("dg1"))
        .await;
    g.github(
        "issues",
        &fixture("github/issues.opened.15.json"),
        Some("dg2"),
    )
    .await;
    // Decided before the 202: the cards wait for the digest, none is queued.
    g.wait_settled().await;
    assert!(g.deliveries("").await.is_empty());
    assert!(rx.received().is_empty(), "the card waits for the digest");
    // Turning the digest off sends what was waiting, as one digest.
    patch(json!({"digest": null})).await.unwrap();
    let got = rx.wait_for(1).await;
    let card = got[0].body.to_string();
    assert!(card.contains("Digest: 2 events"), "{card}");
    // Each item is named by what it is about, linked, with the card's title after it.
    // (Regression: items showed only "…: issue #1 opened", without the issue's title.)
    assert!(
        card.contains(
            "[#1 Spelling error in the README file](https://github.com/Codertocat/Hello-World/issues/1) · Codertocat/Hello-World: issue #1 opened"
        ),
        "{card}"
    );
    assert!(!card.contains("(s)"), "{card}");
}

#[tokio::test]
async fn a_connection_limit_is_set_checked_and_folds() {
    let g = Gateway::start().await;
    let rx = Receiver::start().await;
    let id = g.connect(&rx.url("t"), "teams", &[]).await;
    let patch = |body: Value| {
        g.client
            .patch(g.url(&format!("/api/connections/{id}")))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
    };
    let res = patch(json!({"limit": "lots"})).await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_limit");
    let res = patch(json!({"limit": "1/1h"})).await.unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["limit"], "1/1h");
    for n in 0..3 {
        g.github(
            "push",
            &fixture("github/push.event.4.json"),
            Some(&format!("cl{n}")),
        )
        .await;
    }
    rx.wait_for(1).await;
    g.wait_settled().await;
    assert_eq!(
        g.deliveries("").await.len(),
        1,
        "one card made, the rest folded"
    );
    assert_eq!(rx.received().len(), 1, "one an hour: the rest folded");
    let res = patch(json!({"limit": null})).await.unwrap();
    assert!(res.json::<Value>().await.unwrap()["limit"].is_null());
}

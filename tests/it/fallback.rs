//! A template that fails on an event never loses it: the connection gets a plain card built
//! without the template, and the failure is recorded where an operator looks.

use serde_json::Value;

use crate::utils::*;

const RULE: &str = "- name: my-pushes\n  source: github\n  event: push\n  template: mine/push\n";
/// A user's template that assumes every push has a sender (GitHub Enterprise Server sends
/// `"sender": null` for pushes no user made).
const TEAMS: &str = "{\"@type\": \"MessageCard\", \"@context\": \"https://schema.org/extensions\",\n  \"summary\": \"push\", \"title\": \"{{md payload.sender.login}} pushed\"}\n";
const WORKFLOW: &str = "{\"type\": \"message\", \"attachments\": [{\"contentType\": \"application/vnd.microsoft.card.adaptive\", \"content\": {\"type\": \"AdaptiveCard\", \"version\": \"1.4\",\n  \"body\": [{\"type\": \"TextBlock\", \"text\": \"{{md payload.sender.login}} pushed\"}]}}]}\n";

/// A gateway whose only rule uses the template above; `render_errors` as given.
async fn gateway(render_errors: &str) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::create_dir_all(dir.path().join("templates/mine")).unwrap();
    std::fs::write(dir.path().join("rules/mine.yaml"), RULE).unwrap();
    std::fs::write(dir.path().join("templates/mine/push.teams.hbs"), TEAMS).unwrap();
    std::fs::write(
        dir.path().join("templates/mine/push.workflow.hbs"),
        WORKFLOW,
    )
    .unwrap();
    let mut config = test_config(&dir.path().join("data"));
    config.rules_dir = Some(dir.path().join("rules"));
    config.templates_dir = Some(dir.path().join("templates"));
    config.render_errors = serde_json::from_value(Value::from(render_errors)).unwrap();
    let mut g = Gateway::start_with(config).await;
    g.keep(dir);
    g
}

fn senderless_push() -> Vec<u8> {
    let mut p: Value = serde_json::from_slice(&fixture("github/push.event.4.json")).unwrap();
    p["sender"] = Value::Null;
    serde_json::to_vec(&p).unwrap()
}

/// Regression: a matched card whose template failed became a dead letter that nobody saw.
#[tokio::test]
async fn a_failing_template_sends_a_fallback_card_and_records_why() {
    let g = gateway("fallback").await;
    let rx = Receiver::start().await;
    let teams = g.connect(&rx.url("webhookb2/t"), "teams", &[]).await;
    g.connect(&rx.url("workflows/w"), "workflow", &[]).await;
    let mut stream = g
        .client
        .get(g.url("/api/stream"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    for n in 0..2 {
        let res = g
            .github("push", &senderless_push(), Some(&format!("fb{n}")))
            .await;
        assert_eq!(res.status(), 202);
    }
    let got = rx.wait_for(4).await;
    let teams_card = got.iter().find(|r| r.path.contains("webhookb2")).unwrap();
    let body = teams_card.body.to_string();
    assert_eq!(teams_card.body["@type"], "MessageCard");
    assert!(
        body.contains("Codertocat/Hello-World: push")
            && body.contains("mine/push.teams.hbs at 2:")
            && body.contains("\"uri\":\"https://github.com/Codertocat/Hello-World/commit/6113728"),
        "{body}"
    );
    let workflow_card = got.iter().find(|r| r.path.contains("workflows")).unwrap();
    assert_eq!(
        workflow_card.body["attachments"][0]["content"]["type"],
        "AdaptiveCard"
    );
    assert!(workflow_card
        .body
        .to_string()
        .contains("mine/push.workflow.hbs"));

    // Recorded: on the delivery, in the live tail, in the metrics.
    let list = g
        .admin_get_until(
            &format!("/api/deliveries?state=delivered&connection={teams}"),
            |v| v["deliveries"].as_array().is_some_and(|a| a.len() == 2),
        )
        .await;
    let id = list["deliveries"][0]["id"].as_str().unwrap();
    let shown = g.admin_get(&format!("/api/deliveries/{id}")).await;
    assert_eq!(shown["fallback"]["template"], "mine/push.teams.hbs");
    assert_eq!(shown["fallback"]["line"], 2);
    assert!(shown["fallback"]["column"].as_u64().unwrap() > 1, "{shown}");
    assert!(
        shown["fallback"]["reason"].as_str().unwrap().contains("md"),
        "{shown}"
    );
    let events = crate::playground::read_events(&mut stream, 4).await;
    let queued: Vec<&Value> = events
        .iter()
        .filter(|(k, _)| k == "queued")
        .map(|(_, v)| v)
        .collect();
    assert!(!queued.is_empty(), "{events:?}");
    assert!(queued.iter().all(|q| q["fallback"]["template"]
        .as_str()
        .is_some_and(|t| t.starts_with("mine/push."))));
    let metrics = g.get_text("/metrics").await;
    assert!(
        metrics.contains("cardwire_cards_total{rule=\"my-pushes\",result=\"fallback\"} 4"),
        "{metrics}"
    );
    assert!(
        g.admin_get("/api/deliveries?state=dead").await["deliveries"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

/// `render_errors: dead_letter` keeps the earlier behaviour: no card, a dead letter saying why.
#[tokio::test]
async fn render_errors_dead_letter_keeps_the_failure_as_a_dead_letter() {
    let g = gateway("dead_letter").await;
    let rx = Receiver::start().await;
    g.connect(&rx.url("webhookb2/t"), "teams", &[]).await;
    assert_eq!(
        g.github("push", &senderless_push(), Some("dl0"))
            .await
            .status(),
        202
    );
    // Decided before the 202: visible at once.
    let dead = g.admin_get("/api/deliveries?state=dead").await;
    let dead = dead["deliveries"].as_array().unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0]["reason"]
        .as_str()
        .unwrap()
        .starts_with("render: template mine/push.teams.hbs at 2:"));
    assert!(rx.received().is_empty());
    let metrics = g.get_text("/metrics").await;
    assert!(
        metrics.contains("cardwire_cards_total{rule=\"my-pushes\",result=\"invalid\"} 1"),
        "{metrics}"
    );
}

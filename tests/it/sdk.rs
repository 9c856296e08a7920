//! The chat bodies cardwire sends, checked with the platforms' own SDK models: Slack's
//! (`slack_sdk`: Block Kit blocks and the attachment) and Google's (`google-apps-chat`: the
//! Chat API's `Message`, cardsV2 included), as Workflows cards are checked with Microsoft's
//! schema. The models run in Python (`tests/sdk/check_cards.py`), from PyPI into
//! `target/sdk-venv`, which `.ci/run` makes.

use std::io::Write;
use std::process::{Command, Stdio};

use cardwire::render::CardKind;
use serde_json::{json, Value};

use crate::shipped::{request, shipped, TABLE};
use crate::utils::*;

/// The kinds the SDKs check.
pub const CHECKED: [CardKind; 2] = [CardKind::Slack, CardKind::GoogleChat];

/// What the SDK models refuse of `bodies` ((name, kind, body JSON)): one line each.
pub fn refused(bodies: &[(String, CardKind, String)]) -> Vec<String> {
    let python = root().join("target/sdk-venv/bin/python");
    assert!(
        python.exists(),
        "the SDK models are not installed: run .ci/run (README's test command), or \
         `python3 -m venv target/sdk-venv && target/sdk-venv/bin/pip install -r tests/sdk/requirements.txt`"
    );
    let mut child = Command::new(python)
        .arg(root().join("tests/sdk/check_cards.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = String::new();
    for (name, kind, body) in bodies {
        let body: Value = serde_json::from_str(body).unwrap();
        input.push_str(&json!({"name": name, "kind": kind.as_str(), "body": body}).to_string());
        input.push('\n');
    }
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("checked {} bodies", bodies.len())),
        "the checker did not read every body: {stderr}"
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn every_shipped_card_passes_slacks_and_googles_models() {
    let (config, pipeline) = shipped();
    let mut bodies = Vec::new();
    for (fixture_name, rules) in TABLE.iter().filter(|(_, r)| !r.is_empty()) {
        let (source, headers) = request(fixture_name);
        let payload: Value = serde_json::from_slice(&fixture(fixture_name)).unwrap();
        let event =
            cardwire::ingest::verify::Verified::trusted(source, &config.sources[source], &headers)
                .event(payload)
                .unwrap();
        for rule in pipeline.rules.matches(&event) {
            assert!(rules.contains(&rule.name.as_str()));
            for kind in CHECKED {
                let body = pipeline
                    .renderer
                    .render(&rule.template, kind, event.context())
                    .unwrap();
                bodies.push((format!("{fixture_name} {}", rule.name), kind, body));
            }
        }
    }
    assert!(bodies.len() > 100, "{}", bodies.len());
    let refused = refused(&bodies);
    assert!(
        refused.is_empty(),
        "{} of {} bodies refused:\n{}",
        refused.len(),
        bodies.len(),
        refused.join("\n")
    );
}

/// The checker is no rubber stamp: what Slack's and Google's models refuse, it names.
#[test]
fn the_sdk_check_names_what_the_models_refuse() {
    let bodies = [
        (
            "colour without #",
            CardKind::Slack,
            r#"{"text": "t", "attachments": [{"color": "2DA44E", "fallback": "t", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x"}}]}]}"#,
        ),
        (
            "header too long",
            CardKind::Slack,
            &format!(r#"{{"blocks": [{{"type": "header", "text": {{"type": "plain_text", "text": "{}"}}}}]}}"#, "x".repeat(151)),
        ),
        ("unknown block", CardKind::Slack, r#"{"blocks": [{"type": "sectoin"}]}"#),
        (
            "unknown widget field",
            CardKind::GoogleChat,
            r#"{"cardsV2": [{"cardId": "c", "card": {"sections": [{"widgets": [{"textParagraph": {"txt": "x"}}]}]}}]}"#,
        ),
        (
            "a good one",
            CardKind::GoogleChat,
            r#"{"text": "t", "cardsV2": [{"cardId": "c", "card": {"header": {"title": "t"}, "sections": [{"widgets": [{"textParagraph": {"text": "x"}}]}]}}]}"#,
        ),
    ]
    .map(|(n, k, b)| (n.to_string(), k, b.to_string()));
    let refused = refused(&bodies);
    let named = |n: &str| refused.iter().any(|l| l.starts_with(n));
    for bad in [
        "colour without #",
        "header too long",
        "unknown block",
        "unknown widget field",
    ] {
        assert!(named(bad), "{bad} passed: {refused:#?}");
    }
    assert!(!named("a good one"), "{refused:#?}");
}

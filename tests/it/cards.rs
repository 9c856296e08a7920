//! Cards always render: hostile upstream text in every field a template reads still gives
//! valid cards within 28 KB, and the main cards are pinned by snapshots (tests/it/snapshots/).

use cardwire::config::Config;
use cardwire::pipeline::Pipeline;
use cardwire::render::CardKind;
use cardwire::samples::Sample;
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::utils::test_config;

fn shipped() -> &'static (Config, Pipeline, Vec<Sample>) {
    static SHIPPED: std::sync::OnceLock<(Config, Pipeline, Vec<Sample>)> =
        std::sync::OnceLock::new();
    SHIPPED.get_or_init(|| {
        let config = test_config(&std::env::temp_dir());
        let pipeline = Pipeline::load(&config).unwrap();
        (config, pipeline, cardwire::samples::all())
    })
}

/// The event a sample makes, from the first configured source of its kind.
fn event_of(sample: &Sample, payload: Value) -> Result<cardwire::event::Event, String> {
    let (config, _, _) = shipped();
    let (name, source) = config
        .sources
        .iter()
        .find(|(_, s)| s.kind == sample.kind)
        .unwrap();
    let mut headers = axum::http::HeaderMap::new();
    match sample.kind {
        cardwire::event::SourceKind::Github => {
            headers.insert("x-github-event", sample.event.parse().unwrap());
        }
        cardwire::event::SourceKind::Gitlab => {
            headers.insert("x-gitlab-event", sample.event.parse().unwrap());
        }
        _ => {}
    }
    cardwire::ingest::verify::Verified::trusted(name, source, &headers)
        .event(payload)
        .map_err(|e| e.detail)
}

/// Renders every rule of the sample's event (disabled ones too) in both kinds with `payload`;
/// returns the bodies or the first error.
fn render_all(sample: &Sample, payload: Value) -> Result<Vec<(CardKind, String)>, String> {
    let (_, pipeline, _) = shipped();
    let event = event_of(sample, payload)?;
    let name = &event.source;
    let mut out = Vec::new();
    for rule in pipeline
        .rules
        .rules()
        .iter()
        .filter(|r| &r.source == name && r.event == event.event_type)
    {
        for kind in CardKind::ALL {
            let body = pipeline
                .renderer
                .render(&rule.template, kind, event.context())
                .map_err(|e| format!("{} ({}): {e}", rule.name, kind.as_str()))?;
            out.push((kind, body));
        }
    }
    Ok(out)
}

fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("\"quoted\" \\ back\\slash \\\" \\n".to_string()),
        Just("\u{0}nul \u{1}\u{7}\u{8}\u{b}\u{c}\u{1b}[31mred\u{7f}".to_string()),
        Just("{{payload.x}} }} {{#each}} {{/if}} {{{raw}}}".to_string()),
        Just("<b>bold</b><script>alert(1)</script><img src=x onerror=alert(1)></at><at>x".to_string()),
        Just("**bold** _it_ [link](javascript:alert(1))\n# heading\n- item\n> quote\n| a | b |\n```code```".to_string()),
        Just("👨‍👩‍👧‍👦 😀 🏳️‍🌈 e\u{301}".to_string()),
        Just("\u{202E}reversed\u{202C} \u{05D0}\u{05D1}\u{05D2} عربي \u{200F}".to_string()),
        Just(String::new()),
        (1usize..4).prop_map(|n| "long ".repeat(n * 20_000)),
        ".{0,40}",
    ]
}

/// Replaces string leaves with hostile text. URLs stay: they come from the upstream's own API,
/// and a card's links must be http(s).
fn poison(v: &mut Value, texts: &[String], i: &mut usize) {
    match v {
        Value::Object(o) => {
            for (k, child) in o.iter_mut() {
                let url_like = k.contains("url")
                    || k.contains("href")
                    || child.as_str().is_some_and(|s| s.starts_with("http"));
                if child.is_string() && !url_like {
                    *child = Value::String(texts[*i % texts.len()].clone());
                    *i += 1;
                } else if !child.is_string() {
                    poison(child, texts, i);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|c| poison(c, texts, i)),
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn hostile_text_still_gives_valid_cards_within_the_limit(
        pick in any::<prop::sample::Index>(),
        texts in prop::collection::vec(hostile(), 1..6),
    ) {
        let (_, _, samples) = shipped();
        let sample = pick.get(samples);
        let mut payload = sample.payload.clone();
        let mut i = 0;
        poison(&mut payload, &texts, &mut i);
        let bodies = render_all(sample, payload);
        prop_assert!(bodies.is_ok(), "{}: {}", sample.name, bodies.unwrap_err());
        for (kind, body) in bodies.unwrap() {
            // Each kind within its own limit: Teams' 28 KB, Slack's 40,000 bytes, ...
            prop_assert!(
                body.len() <= kind.max_bytes(),
                "{} ({}): {} bytes",
                sample.name,
                kind.as_str(),
                body.len()
            );
            let v: Value = serde_json::from_str(&body).unwrap();
            // No raw HTML tag survives in a MessageCard: every `<` left is escaped, for
            // Markdown (`\\<`), the rest became `&lt;`.
            if v.get("@type").is_some() {
                let mut texts = Vec::new();
                strings(&v, &mut texts);
                for t in texts {
                    let tag_open = t.match_indices('<').any(|(i, _)| {
                        !t[..i].ends_with('\\')
                            && t[i + 1..].starts_with(|c: char| c.is_ascii_alphabetic() || matches!(c, '/' | '!' | '?'))
                    });
                    prop_assert!(!tag_open, "{t}");
                }
            }
        }
    }
}

fn strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

#[test]
fn a_500_commit_push_with_megabyte_messages_fits() {
    let (_, _, samples) = shipped();
    let sample = samples
        .iter()
        .find(|s| s.name == "github/push.event.4.json")
        .unwrap();
    let mut payload = sample.payload.clone();
    let commit = payload["commits"][0].clone();
    payload["commits"] = Value::Array(
        (0..500)
            .map(|i| {
                let mut c = commit.clone();
                c["id"] = json!(format!("{i:040x}"));
                c["message"] = json!(format!(
                    "commit {i}: {}",
                    "m".repeat(if i == 0 { 1_000_000 } else { 300 })
                ));
                c
            })
            .collect(),
    );
    payload["repository"]["full_name"] = json!("r".repeat(1_000_000));
    for (kind, body) in render_all(sample, payload).unwrap() {
        assert!(
            body.len() <= kind.max_bytes(),
            "{}: {} bytes",
            kind.as_str(),
            body.len()
        );
        let v: Value = serde_json::from_str(&body).unwrap();
        if v["type"] == "message" {
            // 500 commits are 500 text blocks: folded, saying how many more.
            assert!(v.to_string().contains("…and "), "{v}");
        } else {
            assert!(
                v.to_string().contains('…'),
                "long texts are cut with an ellipsis"
            );
        }
    }
}

/// The main cards, pinned: a change in a template's output shows up in review, not by accident.
/// After an intended change: `cargo insta review` (or `INSTA_UPDATE=always cargo test`).
#[test]
fn snapshots_of_the_main_cards() {
    let (_, _, samples) = shipped();
    for name in [
        "github/push.event.4.json",
        "github/pull_request.opened.0.json",
        "github/pull_request.closed-merged.3.derived.json",
        "github/workflow_run.completed-failure.1.derived.json",
        "github/issues.opened.15.json",
        "gitlab/merge_request.json",
        "gitlab/pipeline.failed.derived.json",
        "alertmanager/firing.json",
    ] {
        let sample = samples.iter().find(|s| s.name == name).unwrap();
        let (_, pipeline, _) = shipped();
        let event = event_of(sample, sample.payload.clone()).unwrap();
        let rule = pipeline.rules.matches(&event)[0];
        for kind in CardKind::ALL {
            let body: Value = serde_json::from_str(
                &pipeline
                    .renderer
                    .render(&rule.template, kind, event.context())
                    .unwrap(),
            )
            .unwrap();
            let snap = format!(
                "{}.{}",
                name.trim_end_matches(".json").replace('/', "__"),
                kind.as_str()
            );
            insta::assert_json_snapshot!(snap, body);
        }
    }
}

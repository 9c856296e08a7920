//! Slack's Block Kit from a portable card.

use serde_json::{json, Value};

use super::dialect::*;
use super::model::*;

/// Slack: Block Kit inside one attachment (for the color bar), `text` as the notification
/// fallback. Limits: 50 blocks, header 150, section text 3,000, 10 fields of 2,000, 25
/// buttons of 75, `text` 40,000 (kept far below).
pub(super) fn slack(card: &Card) -> Value {
    let d = Dialect::Slack;
    let mut blocks = Vec::new();
    if let Some(t) = &card.title {
        blocks.push(json!({"type": "header", "text": {"type": "plain_text", "text": cut(&slack_plain(t).replace('\n', " "), 150), "emoji": true}}));
    }
    let mut context = Vec::new();
    if let Some(a) = &card.author {
        if let Some(img) = &a.avatar {
            context.push(json!({"type": "image", "image_url": img, "alt_text": cut(&slack_plain(&a.name), 100)}));
        }
        context.push(json!({"type": "mrkdwn", "text": cut(&match &a.link {
            Some(u) => format!("<{}|{}>", u.replace('|', "%7C"), literal(&clean(&a.name), d).replace('|', "¦")),
            None => plain(&a.name, d),
        }, 3000)}));
    }
    if let Some(s) = &card.subtitle {
        context.push(json!({"type": "mrkdwn", "text": cut(&plain(s, d), 3000)}));
    }
    if !context.is_empty() {
        blocks.push(json!({"type": "context", "elements": context}));
    }
    if let Some(t) = &card.text {
        blocks.push(slack_section(&markdown(t, d)));
    }
    if !card.facts.is_empty() {
        blocks.push(slack_fields(&card.facts));
    }
    if !card.list.is_empty() {
        blocks.push(slack_section(&bullets(&card.list, d)));
    }
    for s in &card.sections {
        blocks.push(json!({"type": "divider"}));
        if let Some(h) = &s.heading {
            blocks.push(slack_section(&format!("*{}*", plain(h, d))));
        }
        if let Some(t) = &s.text {
            blocks.push(slack_section(&markdown(t, d)));
        }
        if !s.facts.is_empty() {
            blocks.push(slack_fields(&s.facts));
        }
        if !s.items.is_empty() {
            blocks.push(slack_section(&bullets(&s.items, d)));
        }
    }
    let links = buttons(card, 25);
    if !links.is_empty() {
        blocks.push(
            json!({"type": "actions", "elements": links.iter().map(|l| json!({
            "type": "button",
            "text": {"type": "plain_text", "text": cut(&slack_plain(&l.label), 75), "emoji": true},
            "url": l.url,
        })).collect::<Vec<_>>()}),
        );
    }
    if let Some(f) = &card.footer {
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": cut(&plain(f, d), 3000)}]}));
    }
    let blocks = fold(&blocks, 50, |n| slack_section(&format!("…and {n} more")));
    let fallback = card
        .title
        .as_deref()
        .or(card.text.as_deref())
        .map(|t| cut(&plain(t, d), 3000))
        .unwrap_or_default();
    let mut attachment = json!({"blocks": blocks, "fallback": fallback});
    if let Some(c) = color(card) {
        attachment["color"] = json!(c);
    }
    let mut v = json!({"text": fallback, "attachments": [attachment]});
    // 40,000 bytes in all: drop blocks from the end (the footer and buttons go last).
    while v.to_string().len() > 40_000 {
        let Some(b) = v["attachments"][0]["blocks"].as_array_mut() else {
            break;
        };
        if b.len() <= 1 {
            break;
        }
        let at = b.len().saturating_sub(2).max(1);
        b.remove(at);
    }
    v
}

pub(super) fn slack_section(text: &str) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": cut(text, 3000)}})
}

pub(super) fn slack_fields(facts: &[Fact]) -> Value {
    let d = Dialect::Slack;
    json!({"type": "section", "fields": fold(facts, 10, |n| Fact { name: "…".into(), value: format!("{n} more") })
        .iter()
        .map(|f| json!({"type": "mrkdwn", "text": cut(&format!("*{}*\n{}", plain(&f.name, d), markdown(&f.value, d)), 2000)}))
        .collect::<Vec<_>>()})
}

//! An Adaptive Card in the Teams message envelope (Workflows) from a portable card.

use serde_json::{json, Value};

use super::dialect::*;
use super::model::*;

pub(super) fn workflow(card: &Card) -> Value {
    let d = Dialect::Teams;
    let mut body = Vec::new();
    if let Some(t) = &card.title {
        let mut tb = json!({"type": "TextBlock", "size": "Medium", "weight": "Bolder", "wrap": true, "text": plain(t, d)});
        if let Some(c) = card.severity {
            tb["color"] = json!(match c {
                Severity::Success => "Good",
                Severity::Warning => "Warning",
                Severity::Error | Severity::Critical => "Attention",
                Severity::Info => "Accent",
            });
        }
        body.push(tb);
    }
    let mut sub = Vec::new();
    if let Some(a) = &card.author {
        sub.push(match &a.link {
            Some(u) => format!("[{}]({u})", plain(&a.name, d)),
            None => plain(&a.name, d),
        });
    }
    if let Some(s) = &card.subtitle {
        sub.push(plain(s, d));
    }
    if !sub.is_empty() {
        body.push(json!({"type": "TextBlock", "isSubtle": true, "spacing": "None", "wrap": true, "text": sub.join(" · ")}));
    }
    if let Some(t) = &card.text {
        body.push(json!({"type": "TextBlock", "wrap": true, "text": markdown(t, d)}));
    }
    if !card.facts.is_empty() {
        body.push(workflow_facts(&card.facts));
    }
    // A line a block (as Teams shows commits): the size policy then folds lines, not
    // characters, when a card is too big.
    for l in fold(&card.list, 20, and_more) {
        body.push(
            json!({"type": "TextBlock", "wrap": true, "spacing": "Small", "text": markdown(&l, d)}),
        );
    }
    for s in &card.sections {
        if let Some(h) = &s.heading {
            body.push(json!({"type": "TextBlock", "weight": "Bolder", "wrap": true, "separator": true, "text": plain(h, d)}));
        }
        if let Some(t) = &s.text {
            body.push(json!({"type": "TextBlock", "wrap": true, "text": markdown(t, d)}));
        }
        if !s.facts.is_empty() {
            body.push(workflow_facts(&s.facts));
        }
        if !s.items.is_empty() {
            body.push(json!({"type": "TextBlock", "wrap": true, "text": bullets(&s.items, d)}));
        }
    }
    if let Some(f) = &card.footer {
        body.push(json!({"type": "TextBlock", "isSubtle": true, "size": "Small", "wrap": true, "text": plain(f, d)}));
    }
    let mut content = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "msteams": {"width": "Full"},
        "body": body,
    });
    let actions: Vec<Value> = buttons(card, 6)
        .iter()
        .map(|l| json!({"type": "Action.OpenUrl", "title": cut(&bare(&l.label), 60), "url": l.url}))
        .collect();
    if !actions.is_empty() {
        content["actions"] = json!(actions);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": content,
        }]
    })
}

pub(super) fn workflow_facts(facts: &[Fact]) -> Value {
    let d = Dialect::Teams;
    json!({"type": "FactSet", "facts": fold(facts, 20, |n| Fact { name: "…".into(), value: format!("{n} more") })
        .iter()
        .map(|f| json!({"title": plain(&f.name, d), "value": markdown(&f.value, d)}))
        .collect::<Vec<_>>()})
}

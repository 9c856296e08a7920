//! A Mattermost attachment from a portable card.

use serde_json::{json, Map, Value};

use super::dialect::*;
use super::model::*;

/// Mattermost: one Slack-style attachment, in Mattermost's Markdown. At most 16,383
/// characters of text.
pub(super) fn mattermost(card: &Card) -> Value {
    let d = Dialect::Mattermost;
    let mut a = Map::new();
    let fallback = card
        .title
        .as_deref()
        .or(card.text.as_deref())
        .map(|t| cut(&bare(t), 300))
        .unwrap_or_default();
    a.insert("fallback".into(), json!(fallback));
    if let Some(c) = color(card) {
        a.insert("color".into(), json!(c));
    }
    if let Some(au) = &card.author {
        a.insert("author_name".into(), json!(cut(&bare(&au.name), 256)));
        if let Some(u) = &au.link {
            a.insert("author_link".into(), json!(u));
        }
        if let Some(i) = &au.avatar {
            a.insert("author_icon".into(), json!(i));
        }
    }
    if let Some(t) = &card.title {
        a.insert("title".into(), json!(cut(&bare(t).replace('\n', " "), 256)));
    }
    if let Some(u) = &card.link {
        a.insert("title_link".into(), json!(u));
    }
    let mut text = Vec::new();
    if let Some(s) = &card.subtitle {
        text.push(format!("_{}_", plain(s, d)));
    }
    if let Some(t) = &card.text {
        text.push(markdown(t, d));
    }
    if !card.list.is_empty() {
        text.push(bullets(&card.list, d));
    }
    for s in &card.sections {
        if let Some(h) = &s.heading {
            text.push(format!("**{}**", plain(h, d)));
        }
        if let Some(t) = &s.text {
            text.push(markdown(t, d));
        }
        for f in &s.facts {
            text.push(format!(
                "**{}**: {}",
                plain(&f.name, d),
                markdown(&f.value, d)
            ));
        }
        if !s.items.is_empty() {
            text.push(bullets(&s.items, d));
        }
    }
    let links = buttons(card, 10);
    if shows_links(card, &links) {
        text.push(inline_links(&links, d));
    }
    if !text.is_empty() {
        a.insert("text".into(), json!(cut(&text.join("\n\n"), 12_000)));
    }
    if !card.facts.is_empty() {
        a.insert(
            "fields".into(),
            json!(fold(&card.facts, 20, |n| Fact { name: "…".into(), value: format!("{n} more") })
                .iter()
                .map(|f| json!({"title": cut(&bare(&f.name), 256), "value": cut(&markdown(&f.value, d), 1000), "short": true}))
                .collect::<Vec<_>>()),
        );
    }
    if let Some(f) = &card.footer {
        a.insert("footer".into(), json!(cut(&bare(f), 2000)));
    }
    json!({"attachments": [Value::Object(a)]})
}

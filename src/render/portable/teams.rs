//! Teams' MessageCard (Office 365 connectors) from a portable card.

use serde_json::{json, Map, Value};

use super::dialect::*;
use super::model::*;

pub(super) fn teams(card: &Card) -> Value {
    let d = Dialect::Teams;
    let mut first = Map::with_capacity(6);
    if let Some(a) = &card.author {
        first.insert("activityTitle".into(), plain(&a.name, d).into());
        if let Some(img) = &a.avatar {
            first.insert("activityImage".into(), img.as_str().into());
        }
    }
    if let Some(s) = &card.subtitle {
        first.insert("activitySubtitle".into(), plain(s, d).into());
    }
    if card.text.is_some() || !card.list.is_empty() {
        let mut text = String::new();
        if let Some(t) = &card.text {
            markdown_into(t, d, &mut text);
        }
        if !card.list.is_empty() {
            if !text.is_empty() {
                text.push_str("\n\n");
            }
            bullets_into(&card.list, d, &mut text);
        }
        first.insert("text".into(), Value::String(text));
    }
    if !card.facts.is_empty() {
        first.insert("facts".into(), teams_facts(&card.facts));
    }
    let mut sections = Vec::new();
    if !first.is_empty() {
        first.insert("markdown".into(), true.into());
        sections.push(Value::Object(first));
    }
    for s in &card.sections {
        let mut v = Map::new();
        if let Some(h) = &s.heading {
            v.insert(
                "activityTitle".into(),
                json!(format!("**{}**", plain(h, d))),
            );
        }
        let mut text: Vec<String> = s.text.iter().map(|t| markdown(t, d)).collect();
        if !s.items.is_empty() {
            text.push(bullets(&s.items, d));
        }
        if !text.is_empty() {
            v.insert("text".into(), json!(text.join("\n\n")));
        }
        if !s.facts.is_empty() {
            v.insert("facts".into(), teams_facts(&s.facts));
        }
        v.insert("markdown".into(), json!(true));
        sections.push(Value::Object(v));
    }
    if let Some(f) = &card.footer {
        sections.push(json!({"text": plain(f, d), "markdown": true}));
    }
    let title = card.title.as_deref().map(|t| plain(t, d));
    let summary = [&card.title, &card.text, &card.subtitle]
        .into_iter()
        .flatten()
        .map(|t| clean(t))
        .find(|t| !t.trim().is_empty())
        .map(|t| t.trim().replace('\n', " "))
        .unwrap_or_else(|| "cardwire".into());
    // Built in place: `json!` would copy a tree given to it by serializing it again.
    let mut v = Map::with_capacity(7);
    v.insert("@type".into(), "MessageCard".into());
    v.insert("@context".into(), "https://schema.org/extensions".into());
    v.insert("summary".into(), cut(&bare(&summary), 200).into());
    v.insert("sections".into(), Value::Array(sections));
    if let Some(t) = title {
        v.insert("title".into(), t.into());
    }
    if let Some(c) = color(card) {
        v.insert("themeColor".into(), c.trim_start_matches('#').into());
    }
    let actions: Vec<Value> = buttons(card, 4)
        .into_iter()
        .map(|l| {
            let mut target = Map::with_capacity(2);
            target.insert("os".into(), "default".into());
            target.insert("uri".into(), l.url.into());
            let mut a = Map::with_capacity(3);
            a.insert("@type".into(), "OpenUri".into());
            a.insert("name".into(), cut(&bare(&l.label), 60).into());
            a.insert("targets".into(), Value::Array(vec![Value::Object(target)]));
            Value::Object(a)
        })
        .collect();
    if !actions.is_empty() {
        v.insert("potentialAction".into(), Value::Array(actions));
    }
    Value::Object(v)
}

pub(super) fn teams_facts(facts: &[Fact]) -> Value {
    let d = Dialect::Teams;
    const N: usize = 20;
    let fact = |name: String, value: String| {
        let mut m = Map::with_capacity(2);
        m.insert("name".into(), Value::String(name));
        m.insert("value".into(), Value::String(value));
        Value::Object(m)
    };
    let shown = if facts.len() > N { N - 1 } else { facts.len() };
    let mut out: Vec<Value> = facts[..shown]
        .iter()
        .map(|f| fact(plain(&f.name, d), markdown(&f.value, d)))
        .collect();
    if facts.len() > N {
        out.push(fact("…".into(), format!("{} more", facts.len() - shown)));
    }
    Value::Array(out)
}

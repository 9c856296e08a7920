//! Google Chat's cardsV2 from a portable card.

use serde_json::{json, Map, Value};

use super::dialect::*;
use super::model::*;

/// Google Chat: cardsV2 with a header and one section of widgets, `text` as the
/// notification. At most 32,000 bytes.
pub(super) fn google_chat(card: &Card) -> Value {
    let d = Dialect::ChatHtml;
    let mut header = Map::new();
    if let Some(t) = &card.title {
        header.insert("title".into(), json!(cut(&bare(t).replace('\n', " "), 200)));
    }
    if let Some(s) = &card.subtitle {
        header.insert("subtitle".into(), json!(cut(&bare(s), 200)));
    } else if let Some(a) = &card.author {
        header.insert("subtitle".into(), json!(cut(&bare(&a.name), 200)));
    }
    if let Some(i) = card.author.as_ref().and_then(|a| a.avatar.as_ref()) {
        header.insert("imageUrl".into(), json!(i));
        header.insert("imageType".into(), json!("CIRCLE"));
    }
    let mut widgets = Vec::new();
    if let Some(t) = &card.text {
        widgets.push(json!({"textParagraph": {"text": cut(&markdown(t, d), 4000)}}));
    }
    for f in fold(&card.facts, 20, |n| Fact {
        name: "…".into(),
        value: format!("{n} more"),
    }) {
        widgets.push(json!({"decoratedText": {"topLabel": cut(&bare(&f.name), 200), "text": cut(&markdown(&f.value, d), 2000), "wrapText": true}}));
    }
    if !card.list.is_empty() {
        widgets.push(json!({"textParagraph": {"text": bullets(&card.list, d)}}));
    }
    let mut sections = vec![json!({"widgets": widgets})];
    for s in &card.sections {
        let mut w = Vec::new();
        if let Some(t) = &s.text {
            w.push(json!({"textParagraph": {"text": cut(&markdown(t, d), 4000)}}));
        }
        for f in &s.facts {
            w.push(json!({"decoratedText": {"topLabel": cut(&bare(&f.name), 200), "text": cut(&markdown(&f.value, d), 2000), "wrapText": true}}));
        }
        if !s.items.is_empty() {
            w.push(json!({"textParagraph": {"text": bullets(&s.items, d)}}));
        }
        if w.is_empty() {
            continue;
        }
        let mut section = json!({"widgets": w});
        if let Some(h) = &s.heading {
            section["header"] = json!(cut(&literal(&clean(h), d), 200));
        }
        sections.push(section);
    }
    let links = buttons(card, 6);
    if !links.is_empty() {
        sections.push(
            json!({"widgets": [{"buttonList": {"buttons": links.iter().map(|l| json!({
            "text": cut(&bare(&l.label), 60),
            "onClick": {"openLink": {"url": l.url}},
        })).collect::<Vec<_>>()}}]}),
        );
    }
    if let Some(f) = &card.footer {
        sections.push(json!({"widgets": [{"textParagraph": {"text": cut(&plain(f, d), 2000)}}]}));
    }
    sections.retain(|s| s["widgets"].as_array().is_some_and(|w| !w.is_empty()));
    if sections.is_empty() {
        // A card of a title alone: Google Chat wants a section, so the title is its text.
        let only = card.title.as_deref().unwrap_or("…");
        sections
            .push(json!({"widgets": [{"textParagraph": {"text": cut(&plain(only, d), 4000)}}]}));
    }
    let text = card
        .title
        .as_deref()
        .map(|t| cut(&bare(t).replace('<', "‹").replace('>', "›"), 400))
        .unwrap_or_default();
    let mut inner = json!({"sections": sections});
    if !header.is_empty() {
        inner["header"] = Value::Object(header);
    }
    let mut v = json!({"text": text, "cardsV2": [{"cardId": "cardwire", "card": inner}]});
    if let Some(t) = &card.thread {
        v["thread"] = json!({"threadKey": cut(&clean(t), 100)});
    }
    // 32,000 bytes: drop widgets from the end of the last section until it fits.
    while v.to_string().len() > 32_000 {
        let Some(sections) = v["cardsV2"][0]["card"]["sections"].as_array_mut() else {
            break;
        };
        let Some(last) = sections.last_mut() else {
            break;
        };
        let emptied = last["widgets"]
            .as_array_mut()
            .map(|w| {
                w.pop();
                w.is_empty()
            })
            .unwrap_or(true);
        if emptied {
            sections.pop();
        }
    }
    v
}

//! A Discord embed from a portable card.

use serde_json::{json, Map, Value};

use super::dialect::*;
use super::model::*;

/// Discord: one embed; nothing in it may ping (`allowed_mentions` parses nothing). Limits:
/// title 256, description 4,096, 25 fields (name 256, value 1,024), footer 2,048, author 256,
/// 6,000 characters across the embed.
pub(super) fn discord(card: &Card) -> Value {
    let d = Dialect::Discord;
    let mut embed = Map::new();
    if let Some(t) = &card.title {
        embed.insert("title".into(), json!(cut(&bare(t).replace('\n', " "), 256)));
    }
    if let Some(u) = &card.link {
        embed.insert("url".into(), json!(u));
    }
    let mut description = Vec::new();
    if let Some(s) = &card.subtitle {
        description.push(format!("_{}_", plain(s, d)));
    }
    if let Some(t) = &card.text {
        description.push(markdown(t, d));
    }
    if !card.list.is_empty() {
        description.push(bullets(&card.list, d));
    }
    let links = buttons(card, 10);
    if shows_links(card, &links) {
        description.push(inline_links(&links, d));
    }
    if !description.is_empty() {
        embed.insert(
            "description".into(),
            json!(cut(&description.join("\n\n"), 4096)),
        );
    }
    if let Some(c) = color(card).and_then(|c| rgb(&c)) {
        embed.insert("color".into(), json!(c));
    }
    if let Some(a) = &card.author {
        let mut author = json!({"name": cut(&bare(&a.name), 256)});
        if let Some(u) = &a.link {
            author["url"] = json!(u);
        }
        if let Some(i) = &a.avatar {
            author["icon_url"] = json!(i);
        }
        embed.insert("author".into(), author);
    }
    let mut fields: Vec<Value> = card
        .facts
        .iter()
        .map(|f| discord_field(&f.name, &markdown(&f.value, d), true))
        .collect();
    for s in &card.sections {
        let mut value = Vec::new();
        if let Some(t) = &s.text {
            value.push(markdown(t, d));
        }
        for f in &s.facts {
            value.push(format!(
                "**{}**: {}",
                plain(&f.name, d),
                markdown(&f.value, d)
            ));
        }
        if !s.items.is_empty() {
            value.push(bullets(&s.items, d));
        }
        let name = s.heading.as_deref().unwrap_or("\u{200B}");
        fields.push(discord_field(name, &value.join("\n"), false));
    }
    if !fields.is_empty() {
        embed.insert(
            "fields".into(),
            json!(fold(&fields, 25, |n| discord_field(
                "…",
                &format!("{n} more"),
                true
            ))),
        );
    }
    if let Some(f) = &card.footer {
        embed.insert("footer".into(), json!({"text": cut(&bare(f), 2048)}));
    }
    let mut embed = Value::Object(embed);
    fit_discord(&mut embed);
    let mut v = json!({"embeds": [embed], "allowed_mentions": {"parse": []}});
    // A forum channel's thread (Discord: 100 characters). Delivery keeps it only for a
    // connection marked `forum`, and replies in the thread once it exists.
    if let Some(t) = &card.thread {
        v["thread_name"] = json!(cut(&bare(t).replace('\n', " "), 100));
    }
    v
}

pub(super) fn discord_field(name: &str, value: &str, inline: bool) -> Value {
    let value = if value.trim().is_empty() {
        "\u{200B}"
    } else {
        value
    };
    json!({"name": cut(&bare(name), 256), "value": cut(value, 1024), "inline": inline})
}

/// The characters Discord counts toward an embed's 6,000.
pub(super) fn discord_chars(e: &Value) -> usize {
    let n = |v: &Value| v.as_str().map_or(0, |s| s.chars().count());
    n(&e["title"])
        + n(&e["description"])
        + n(&e["footer"]["text"])
        + n(&e["author"]["name"])
        + e["fields"].as_array().map_or(0, |f| {
            f.iter().map(|f| n(&f["name"]) + n(&f["value"])).sum()
        })
}

/// Cuts an embed to Discord's 6,000 characters: the description first, then the fields from
/// the last.
pub(super) fn fit_discord(e: &mut Value) {
    const MAX: usize = 6000;
    let total = discord_chars(e);
    if total <= MAX {
        return;
    }
    let over = total - MAX;
    if let Some(d) = e["description"].as_str() {
        let len = d.chars().count();
        let keep = len.saturating_sub(over + 1).max(len.min(200));
        e["description"] = json!(cut(d, keep));
    }
    while discord_chars(e) > MAX {
        let Some(fields) = e["fields"].as_array_mut() else {
            break;
        };
        if fields.pop().is_none() {
            break;
        }
    }
}

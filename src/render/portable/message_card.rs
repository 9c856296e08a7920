//! A MessageCard read as a portable card, so that a template written for Teams alone renders
//! for every other platform.

use serde_json::Value;

use super::dialect::unmarkdown;
use super::model::{rgb, web_url};
use super::model::{Card, Fact, Link, Section};

/// A MessageCard (what a `<name>.teams.hbs` renders) read as a portable card, so that a
/// template written for Teams alone also renders for every other platform: the title and
/// summary, the color, the first section's author, picture, subtitle, text and facts, the
/// other sections, and the OpenUri actions as links. Teams' Markdown is the portable subset.
pub fn from_message_card(v: &Value) -> Card {
    let s = |v: &Value| {
        v.as_str()
            .filter(|s| !s.trim().is_empty())
            .map(str::to_string)
    };
    let url = |v: &Value| s(v).filter(|u| web_url(u));
    let facts = |v: &Value| {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| {
                Some(Fact {
                    name: unmarkdown(&s(&f["name"]).unwrap_or_default()),
                    value: s(&f["value"])?,
                })
            })
            .collect::<Vec<_>>()
    };
    let sections: &[Value] = v["sections"].as_array().map_or(&[], Vec::as_slice);
    let mut card = Card {
        title: s(&v["title"])
            .or_else(|| s(&v["summary"]))
            .map(|t| unmarkdown(&t)),
        text: s(&v["text"]),
        color: s(&v["themeColor"])
            .map(|c| format!("#{}", c.trim_start_matches('#')))
            .filter(|c| rgb(c).is_some()),
        ..Card::default()
    };
    if let Some(first) = sections.first() {
        // The activity title is a line of its own (a person, or an issue's linked title),
        // kept as Markdown so that its link stays.
        let title_line = s(&first["activityTitle"]).map(|t| format!("**{t}**"));
        card.subtitle = s(&first["activitySubtitle"]).map(|t| unmarkdown(&t));
        let text: Vec<String> = [
            title_line,
            card.text.take(),
            s(&first["activityText"]),
            s(&first["text"]),
        ]
        .into_iter()
        .flatten()
        .collect();
        card.text = (!text.is_empty()).then(|| text.join("\n"));
        card.facts = facts(&first["facts"]);
    }
    for sec in sections.iter().skip(1) {
        let section = Section {
            heading: s(&sec["activityTitle"]).map(|t| unmarkdown(&t)),
            text: [s(&sec["activityText"]), s(&sec["text"])]
                .into_iter()
                .flatten()
                .reduce(|a, b| format!("{a}\n{b}")),
            facts: facts(&sec["facts"]),
            items: Vec::new(),
        };
        if section.heading.is_some() || section.text.is_some() || !section.facts.is_empty() {
            card.sections.push(section);
        }
    }
    for a in v["potentialAction"].as_array().into_iter().flatten() {
        let target = a["targets"][0]["uri"].clone();
        if let (Some(label), Some(u)) = (s(&a["name"]), url(&target)) {
            card.links.push(Link {
                label: unmarkdown(&label),
                url: u,
            });
        }
    }
    card.link = card.links.first().map(|l| l.url.clone());
    if card.title.is_none() && card.text.is_none() && card.facts.is_empty() {
        card.title = Some("cardwire".into());
    }
    card
}

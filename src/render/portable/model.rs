//! The portable card's model: the vocabulary a `<name>.card.hbs` renders ([`Card`]), read and
//! checked ([`parse`], [`parse_str`]), with its JSON Schema ([`SCHEMA`]).

use serde::Deserialize;
use serde_json::Value;

pub const SCHEMA: &str = include_str!("../portable-card.schema.json");

/// A portable card.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Card {
    /// The headline (plain text).
    #[serde(default)]
    pub title: Option<String>,
    /// A line under the title (plain text).
    #[serde(default)]
    pub subtitle: Option<String>,
    /// The body (Markdown subset).
    #[serde(default)]
    pub text: Option<String>,
    /// The accent color, `#RRGGBB`.
    #[serde(default)]
    pub color: Option<String>,
    /// How serious: `info`, `success`, `warning`, `error` or `critical` (a color when `color`
    /// is not given).
    #[serde(default)]
    pub severity: Option<Severity>,
    /// Who did it.
    #[serde(default)]
    pub author: Option<Author>,
    /// Name / value pairs (names plain, values Markdown subset).
    #[serde(default)]
    pub facts: Vec<Fact>,
    /// Further sections.
    #[serde(default)]
    pub sections: Vec<Section>,
    /// Short lines, e.g. commits (Markdown subset each).
    #[serde(default)]
    pub list: Vec<String>,
    /// Buttons where the platform has them, links elsewhere.
    #[serde(default)]
    pub links: Vec<Link>,
    /// Upstream identities (GitHub logins, …) to mention where the platform can.
    #[serde(default)]
    pub mentions: Vec<String>,
    /// A last line (plain text).
    #[serde(default)]
    pub footer: Option<String>,
    /// The card's main URL.
    #[serde(default)]
    pub link: Option<String>,
    /// A key that groups related cards where the platform threads (Google Chat, a Discord
    /// forum): the same as `key` with `update: reply`.
    #[serde(default)]
    pub thread: Option<String>,
    /// The card's subject (a pull request, a pipeline, an alert group): a later card with the
    /// same key and connection changes the first one's message, as `update` says.
    #[serde(default)]
    pub key: Option<String>,
    /// What a later card with the same `key` does (`replace` when not given).
    #[serde(default)]
    pub update: Option<Update>,
}

/// What a card with the key of an earlier one does to the earlier one's message.
#[derive(Debug, Clone, Copy, Default, Deserialize, serde::Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Update {
    /// Edits the first message in place (where the chat can; else as `reply`).
    #[default]
    Replace,
    /// Replies in the first message's thread (where the chat can; else as `new`).
    Reply,
    /// A new message, as if it had no key.
    New,
}

impl Update {
    /// As a rule or a template writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Replace => "replace",
            Self::Reply => "reply",
            Self::New => "new",
        }
    }

    /// Read as a rule or a template writes it.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "replace" => Some(Self::Replace),
            "reply" => Some(Self::Reply),
            "new" => Some(Self::New),
            _ => None,
        }
    }

    /// Every value, as written.
    pub const NAMES: [&'static str; 3] = ["replace", "reply", "new"];
}

impl Card {
    /// The card's subject and what a later card of it does: its `key` and `update`
    /// (`replace` when not given), or its `thread` as a key whose cards reply. `None`: every
    /// card of it is a new message.
    pub fn subject(&self) -> Option<(&str, Update)> {
        match (&self.key, &self.thread) {
            (Some(k), _) => Some((k.as_str(), self.update.unwrap_or_default())),
            (None, Some(t)) => Some((t.as_str(), self.update.unwrap_or(Update::Reply))),
            (None, None) => None,
        }
    }
}

/// How serious a card is.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Neutral news.
    Info,
    /// Something went well.
    Success,
    /// Worth a look.
    Warning,
    /// Something failed.
    Error,
    /// Act now.
    Critical,
}

impl Severity {
    fn color(self) -> &'static str {
        match self {
            Self::Info => "#0969DA",
            Self::Success => "#2DA44E",
            Self::Warning => "#BF8700",
            Self::Error => "#CF222E",
            Self::Critical => "#8B0000",
        }
    }
}

/// Who did it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Author {
    /// The name shown.
    pub name: String,
    /// Their page.
    #[serde(default)]
    pub link: Option<String>,
    /// Their picture.
    #[serde(default)]
    pub avatar: Option<String>,
}

/// A name / value pair.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Fact {
    /// The name (plain text).
    pub name: String,
    /// The value (Markdown subset: a link, a bold word).
    pub value: String,
}

/// A further section.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Section {
    /// Its heading (plain text).
    #[serde(default)]
    pub heading: Option<String>,
    /// Its body (Markdown subset).
    #[serde(default)]
    pub text: Option<String>,
    /// Its facts.
    #[serde(default)]
    pub facts: Vec<Fact>,
    /// Its short lines (Markdown subset each).
    #[serde(default)]
    pub items: Vec<String>,
}

/// A link or button.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Link {
    /// What it says.
    pub label: String,
    /// Where it goes.
    pub url: String,
}

/// Parses a portable card from a template's JSON output; the message names the field.
pub fn parse(v: Value) -> Result<Card, String> {
    let card: Card = serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        }
    })?;
    checked(card)
}

/// Why a template's text is not a portable card.
#[derive(Debug)]
pub enum ParseError {
    /// It is not JSON.
    Json(serde_json::Error),
    /// It is JSON, not a valid card: the message names the field.
    Card(String),
}

/// Like [`parse`], straight from the text: no JSON tree is built on the way (the hot path of
/// every portable card).
pub fn parse_str(text: &str) -> Result<Card, ParseError> {
    // The path to a bad field is tracked only to explain an error: read again for it.
    if let Ok(card) = serde_json::from_str::<Card>(text) {
        return checked(card).map_err(ParseError::Card);
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let card: Card = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ParseError::Json(inner)
        } else if path == "." {
            ParseError::Card(inner.to_string())
        } else {
            ParseError::Card(format!("{path}: {inner}"))
        }
    })?;
    de.end().map_err(ParseError::Json)?;
    checked(card).map_err(ParseError::Card)
}

/// A deserialized card normalized and checked.
pub(super) fn checked(mut card: Card) -> Result<Card, String> {
    normalize(&mut card);
    if card.title.is_none() && card.text.is_none() && card.facts.is_empty() {
        return Err("a card needs a title, a text or facts".into());
    }
    for url in card
        .link
        .iter()
        .chain(card.links.iter().map(|l| &l.url))
        .chain(card.author.iter().filter_map(|a| a.link.as_ref()))
        .chain(card.author.iter().filter_map(|a| a.avatar.as_ref()))
    {
        if !web_url(url) {
            return Err(format!("{url:?} is not an http(s) URL"));
        }
    }
    if let Some(c) = &card.color {
        if rgb(c).is_none() {
            return Err(format!("color {c:?} is not #RRGGBB"));
        }
    }
    Ok(card)
}

/// The longest URL a card keeps (bytes).
pub(super) const MAX_URL: usize = 2_000;

/// A blank text is no text: a template that renders `""` for a field the payload lacks (a
/// release without notes, a null avatar) leaves the field out, as it would have with `{{#if}}`.
pub(super) fn normalize(card: &mut Card) {
    let blank = |o: &mut Option<String>| {
        if o.as_deref().is_some_and(|s| s.trim().is_empty()) {
            *o = None;
        }
    };
    for o in [
        &mut card.title,
        &mut card.subtitle,
        &mut card.text,
        &mut card.color,
        &mut card.footer,
        &mut card.link,
        &mut card.thread,
        &mut card.key,
    ] {
        blank(o);
    }
    if let Some(a) = &mut card.author {
        blank(&mut a.link);
        blank(&mut a.avatar);
    }
    if card
        .author
        .as_ref()
        .is_some_and(|a| a.name.trim().is_empty())
    {
        card.author = None;
    }
    let facts = |f: &mut Vec<Fact>| {
        f.retain(|f| !f.name.trim().is_empty() || !f.value.trim().is_empty());
        for f in f.iter_mut().filter(|f| f.value.trim().is_empty()) {
            f.value = "—".into();
        }
    };
    facts(&mut card.facts);
    card.list.retain(|l| !l.trim().is_empty());
    // A link longer than any platform takes (Slack's buttons: 3,000) is broken anyway (an
    // upstream field gone wild inside a URL): left out rather than cut into another address.
    let absurd = |u: &Option<String>| u.as_ref().is_some_and(|u| u.len() > MAX_URL);
    if absurd(&card.link) {
        card.link = None;
    }
    if let Some(a) = &mut card.author {
        if absurd(&a.link) {
            a.link = None;
        }
        if absurd(&a.avatar) {
            a.avatar = None;
        }
    }
    card.links
        .retain(|l| !l.url.trim().is_empty() && l.url.len() <= MAX_URL);
    card.mentions.retain(|m| !m.trim().is_empty());
    for s in &mut card.sections {
        blank(&mut s.heading);
        blank(&mut s.text);
        facts(&mut s.facts);
        s.items.retain(|l| !l.trim().is_empty());
    }
    card.sections.retain(|s| {
        s.heading.is_some() || s.text.is_some() || !s.facts.is_empty() || !s.items.is_empty()
    });
}

pub(super) fn web_url(u: &str) -> bool {
    (u.starts_with("https://") || u.starts_with("http://"))
        && (u.bytes().all(|b| b > b' ' && b < 0x7f)
            || !u.chars().any(|c| c.is_whitespace() || c.is_control()))
}

pub(super) fn rgb(c: &str) -> Option<u32> {
    let hex = c.strip_prefix('#').unwrap_or(c);
    (hex.len() == 6)
        .then(|| u32::from_str_radix(hex, 16).ok())
        .flatten()
}

/// The card's color, `#RRGGBB` (with its `#` whether or not the template wrote one: Slack and
/// Mattermost refuse a colour without it): its own, its severity's, or none.
pub(super) fn color(card: &Card) -> Option<String> {
    match &card.color {
        Some(c) => rgb(c).map(|n| format!("#{n:06X}")),
        None => card.severity.map(|s| s.color().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_colour_goes_out_with_its_hash_however_the_template_wrote_it() {
        let with = |c: &str| parse(serde_json::json!({"title": "t", "color": c})).unwrap();
        assert_eq!(
            color(&with("2DA44E")).as_deref(),
            Some("#2DA44E"),
            "the color helper's form"
        );
        assert_eq!(color(&with("#2da44e")).as_deref(), Some("#2DA44E"));
        let severe = parse(serde_json::json!({"title": "t", "severity": "error"})).unwrap();
        assert_eq!(color(&severe).as_deref(), Some("#CF222E"));
        assert!(parse(serde_json::json!({"title": "t", "color": "red"})).is_err());
    }
}

//! The portable card: what a `<name>.card.hbs` template renders, one model for every chat,
//! turned into each platform's native card.
//!
//! In: the JSON a portable template renders (the vocabulary of [`Card`], checked with
//! `deny_unknown_fields`; its JSON Schema is [`SCHEMA`]). Out: the body to POST for a
//! [`CardKind`]: a MessageCard (Teams connectors), an Adaptive Card in the Teams envelope
//! (Workflows), Block Kit (Slack), embeds (Discord), cardsV2 (Google Chat), attachments
//! (Mattermost). Guarantees: text is Markdown only in `text`, section `text` and `list`
//! items (a CommonMark subset: `**bold**`, `*italic*` / `_italic_`, `` `code` ``,
//! `[label](https://…)`, backslash escapes, `- ` bullets), and in fact values; plain
//! everywhere else; each
//! platform gets its own dialect, and upstream text comes out literal and inert on every
//! platform: no markup, no link it did not ask for, no mention or ping (`@everyone`, `@here`,
//! `<!channel>`, `<@U…>`, role mentions), control characters dropped. Each platform's limits
//! are met by cutting texts (with `…`) and folding lists (`…and N more`), never by refusing.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::kind::CardKind;

/// The portable card's JSON Schema, as `cardwire check --print-schema card` prints it.
pub const SCHEMA: &str = include_str!("portable-card.schema.json");

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
    /// A key that groups related cards where the platform threads (Google Chat).
    #[serde(default)]
    pub thread: Option<String>,
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
fn checked(mut card: Card) -> Result<Card, String> {
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
const MAX_URL: usize = 2_000;

/// A blank text is no text: a template that renders `""` for a field the payload lacks (a
/// release without notes, a null avatar) leaves the field out, as it would have with `{{#if}}`.
fn normalize(card: &mut Card) {
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

fn web_url(u: &str) -> bool {
    (u.starts_with("https://") || u.starts_with("http://"))
        && (u.bytes().all(|b| b > b' ' && b < 0x7f)
            || !u.chars().any(|c| c.is_whitespace() || c.is_control()))
}

fn rgb(c: &str) -> Option<u32> {
    let hex = c.strip_prefix('#').unwrap_or(c);
    (hex.len() == 6)
        .then(|| u32::from_str_radix(hex, 16).ok())
        .flatten()
}

/// The card's color, `#RRGGBB`: its own, its severity's, or none.
fn color(card: &Card) -> Option<String> {
    card.color
        .clone()
        .or_else(|| card.severity.map(|s| s.color().to_string()))
}

/// The card as `kind`'s native body.
pub fn convert(card: &Card, kind: CardKind) -> Value {
    match kind {
        CardKind::Teams => teams(card),
        CardKind::Workflow => workflow(card),
        CardKind::Slack => slack(card),
        CardKind::Discord => discord(card),
        CardKind::GoogleChat => google_chat(card),
        CardKind::Mattermost => mattermost(card),
    }
}

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

/// The text a reader sees of portable Markdown: escapes undone, markers and link targets
/// dropped.
pub fn unmarkdown(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (n, line) in clean(s).split('\n').enumerate() {
        if n > 0 {
            out.push('\n');
        }
        let (bullet, rest) = bullet(line);
        if bullet {
            out.push_str("- ");
        }
        scan(rest, &mut |p| {
            if let Piece::Text(t) | Piece::Code(t) = p {
                out.push_str(t)
            }
        });
    }
    out
}

// ---------------------------------------------------------------------------------------
// Markdown: the portable subset, read once, written in each platform's dialect.

/// A piece of a line of portable Markdown, as [`scan`] reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Piece<'a> {
    /// Text as the reader sees it (escapes undone).
    Text(&'a str),
    /// A code span's text.
    Code(&'a str),
    /// Where a marked part starts.
    Open(Mark<'a>),
    /// Where it ends.
    Close(Mark<'a>),
}

/// What marks a part of a line.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mark<'a> {
    Bold,
    Italic,
    /// A link to this URL; the part is its label.
    Link(&'a str),
}

/// Drops control characters but newlines and tabs (a tab becomes a space).
fn clean(s: &str) -> std::borrow::Cow<'_, str> {
    let keep = |c: char| match c {
        '\n' => Some('\n'),
        '\t' => Some(' '),
        '\r' => None,
        c if c.is_control() => None,
        // Bidirectional overrides and zero-width joiners that could disguise text.
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => None,
        c => Some(c),
    };
    // Most texts have nothing to drop: borrowed as they are.
    if !needs_cleaning(s.as_bytes()) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    out.extend(s.chars().filter_map(keep));
    std::borrow::Cow::Owned(out)
}

/// Whether [`clean`] would change a text, read a byte at a time: a control character
/// (U+0000–U+001F but a newline, U+007F, and U+0080–U+009F: `C2 80`–`C2 9F`), or a
/// bidirectional override (U+202A–U+202E: `E2 80 AA`–`AE`; U+2066–U+2069: `E2 81 A6`–`A9`).
fn needs_cleaning(b: &[u8]) -> bool {
    // First a pass without early exits: most texts hold none of the bytes that can start what
    // is dropped, and are done here.
    let suspect = |c: u8| (c < 0x20 && c != b'\n') | (c == 0x7F) | (c == 0xC2) | (c == 0xE2);
    if !b.iter().fold(false, |any, &c| any | suspect(c)) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\n' => {}
            0..=0x1F | 0x7F => return true,
            0xC2 if b.get(i + 1).is_some_and(|n| (0x80..=0x9F).contains(n)) => return true,
            0xE2 => match (b.get(i + 1), b.get(i + 2)) {
                (Some(0x80), Some(0xAA..=0xAE)) | (Some(0x81), Some(0xA6..=0xA9)) => return true,
                _ => {}
            },
            _ => {}
        }
        i += 1;
    }
    false
}

/// A line's bullet (`- ` or `* `) and the rest.
fn bullet(line: &str) -> (bool, &str) {
    match line.strip_prefix("- ").or(line.strip_prefix("* ")) {
        Some(rest) => (true, rest),
        None => (false, line),
    }
}

/// Whether a line's text holds no Markdown marker: it is one run of text (most facts and
/// titles), written without being parsed.
fn unmarked(s: &str) -> bool {
    !s.bytes()
        .any(|b| matches!(b, b'\\' | b'`' | b'*' | b'_' | b'['))
}

/// Reads one line of portable Markdown into pieces, in order. The markers are ASCII, so the
/// line is read a byte at a time: every index it cuts at is a character boundary.
fn scan<'a>(s: &'a str, f: &mut impl FnMut(Piece<'a>)) {
    if unmarked(s) {
        if !s.is_empty() {
            f(Piece::Text(s));
        }
        return;
    }
    let c = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    let flush = |start: usize, end: usize, f: &mut dyn FnMut(Piece<'a>)| {
        if end > start {
            f(Piece::Text(&s[start..end]));
        }
    };
    let prev = |i: usize| s[..i].chars().next_back();
    let next = |i: usize| s[i..].chars().next();
    while i < c.len() {
        let ch = c[i];
        if ch == b'\\' && c.get(i + 1).is_some_and(u8::is_ascii_punctuation) {
            // The escaped character starts the next run of text.
            flush(start, i, f);
            start = i + 1;
            i += 2;
            continue;
        }
        if ch == b'`' {
            if let Some(end) = find(c, i + 1, b"`") {
                flush(start, i, f);
                f(Piece::Code(&s[i + 1..end]));
                i = end + 1;
                start = i;
                continue;
            }
        }
        if ch == b'*' && c.get(i + 1) == Some(&b'*') {
            if let Some(end) = find(c, i + 2, b"**").filter(|&e| e > i + 2) {
                flush(start, i, f);
                f(Piece::Open(Mark::Bold));
                scan(&s[i + 2..end], f);
                f(Piece::Close(Mark::Bold));
                i = end + 2;
                start = i;
                continue;
            }
        }
        if matches!(ch, b'*' | b'_') {
            let opens = next(i + 1).is_some_and(|n| !n.is_whitespace())
                && (ch == b'*' || prev(i).is_none_or(|p| !p.is_alphanumeric()));
            if opens {
                let close = (i + 1..c.len()).find(|&j| {
                    c[j] == ch
                        && c[j - 1] != b'\\'
                        && prev(j).is_some_and(|p| !p.is_whitespace())
                        && (ch == b'*' || next(j + 1).is_none_or(|n| !n.is_alphanumeric()))
                });
                if let Some(end) = close.filter(|&e| e > i + 1) {
                    flush(start, i, f);
                    f(Piece::Open(Mark::Italic));
                    scan(&s[i + 1..end], f);
                    f(Piece::Close(Mark::Italic));
                    i = end + 1;
                    start = i;
                    continue;
                }
            }
        }
        if ch == b'[' {
            if let Some(mid) = find(c, i + 1, b"](") {
                if let Some(end) = find(c, mid + 2, b")") {
                    let url = &s[mid + 2..end];
                    if web_url(url) {
                        flush(start, i, f);
                        f(Piece::Open(Mark::Link(url)));
                        scan(&s[i + 1..mid], f);
                        f(Piece::Close(Mark::Link(url)));
                        i = end + 1;
                        start = i;
                        continue;
                    }
                }
            }
        }
        i += 1;
    }
    flush(start, c.len(), f);
}

/// Where `pat` next starts at or after `from`, skipping backslash-escaped characters.
fn find(c: &[u8], from: usize, pat: &[u8]) -> Option<usize> {
    let mut j = from;
    while j + pat.len() <= c.len() {
        if c[j] == b'\\' {
            j += 2;
            continue;
        }
        if c[j..j + pat.len()] == *pat {
            return Some(j);
        }
        j += 1;
    }
    None
}

/// A Markdown dialect: how each piece is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    /// Teams' Markdown (MessageCard and Adaptive Card TextBlock).
    Teams,
    /// Slack's `mrkdwn`.
    Slack,
    /// Discord's Markdown.
    Discord,
    /// Google Chat card text (an HTML subset).
    ChatHtml,
    /// Mattermost's Markdown.
    Mattermost,
}

/// Text the reader sees literally: escaped for the dialect, and unable to mention anyone.
fn literal(s: &str, d: Dialect) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    literal_into(s, d, &mut out);
    out
}

/// [`literal`], written at the end of `out`.
fn literal_into(s: &str, d: Dialect, out: &mut String) {
    // Most pieces of text have nothing to escape (checked a byte at a time: every character
    // escaped is ASCII).
    let special = |b: u8| match d {
        Dialect::Teams => matches!(
            b,
            b'\\' | b'`' | b'*' | b'_' | b'[' | b']' | b'<' | b'>' | b'~' | b'&' | b'|' | b'#'
        ),
        Dialect::Slack => matches!(b, b'&' | b'<' | b'>'),
        Dialect::ChatHtml => matches!(b, b'&' | b'<' | b'>' | b'"'),
        Dialect::Discord | Dialect::Mattermost => matches!(
            b,
            b'\\'
                | b'`'
                | b'*'
                | b'_'
                | b'['
                | b']'
                | b'('
                | b')'
                | b'<'
                | b'>'
                | b'~'
                | b'|'
                | b'#'
                | b'@'
        ),
    };
    if !s.bytes().any(special) {
        out.push_str(s);
        return;
    }
    out.reserve(s.len());
    // Where a piece starts may be where a line starts: `#` there, followed by a space or
    // nothing after its run, would make a heading; anywhere else (`#123`) it is text.
    let mut prev = '\n';
    for (i, c) in s.char_indices() {
        let heading = || {
            prev == '\n'
                && s[i..]
                    .trim_start_matches('#')
                    .chars()
                    .next()
                    .is_none_or(|n| n == ' ' || n == '\t')
        };
        match d {
            Dialect::Teams => {
                if matches!(
                    c,
                    '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '~' | '&' | '|'
                ) || c == '#' && heading()
                {
                    out.push('\\');
                }
                out.push(c);
            }
            Dialect::Slack => match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                c => out.push(c),
            },
            Dialect::ChatHtml => match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '"' => out.push_str("&quot;"),
                c => out.push(c),
            },
            Dialect::Discord | Dialect::Mattermost => {
                if matches!(
                    c,
                    '\\' | '`' | '*' | '_' | '[' | ']' | '(' | ')' | '<' | '>' | '~' | '|'
                ) || c == '#' && heading()
                {
                    out.push('\\');
                }
                out.push(c);
                // `@everyone`, `@here`, `@channel`, `@user`: a zero-width space after the `@`
                // keeps the text and takes the mention away (Discord also gets
                // allowed_mentions with nothing to parse).
                if c == '@' || (c == '<' && d == Dialect::Mattermost) {
                    out.push('\u{200B}');
                }
            }
        }
        prev = c;
    }
}

/// One line of portable Markdown written in a dialect at the end of `out`.
fn write_line(s: &str, d: Dialect, out: &mut String) {
    // Where the open link's label starts in `out` (links do not nest: a label ends at the
    // first `](`); the label is written, then wrapped.
    let mut label_at = 0;
    scan(s, &mut |p| match p {
        Piece::Text(t) => literal_into(t, d, out),
        Piece::Code(t) => code_into(t, d, out),
        Piece::Open(Mark::Bold) | Piece::Close(Mark::Bold) => out.push_str(match (d, p) {
            (Dialect::Slack, _) => "*",
            (Dialect::ChatHtml, Piece::Open(_)) => "<b>",
            (Dialect::ChatHtml, _) => "</b>",
            _ => "**",
        }),
        Piece::Open(Mark::Italic) | Piece::Close(Mark::Italic) => out.push_str(match (d, p) {
            (Dialect::ChatHtml, Piece::Open(_)) => "<i>",
            (Dialect::ChatHtml, _) => "</i>",
            _ => "_",
        }),
        Piece::Open(Mark::Link(_)) => label_at = out.len(),
        Piece::Close(Mark::Link(url)) => {
            let at = label_at.min(out.len());
            match d {
                Dialect::Slack => {
                    let text = out.split_off(at).replace('|', "¦");
                    out.push('<');
                    out.push_str(&url.replace('|', "%7C"));
                    out.push('|');
                    out.push_str(&text);
                    out.push('>');
                }
                Dialect::ChatHtml => {
                    let text = out.split_off(at);
                    out.push_str("<a href=\"");
                    literal_into(url, Dialect::ChatHtml, out);
                    out.push_str("\">");
                    out.push_str(&text);
                    out.push_str("</a>");
                }
                _ => {
                    out.insert(at, '[');
                    out.push_str("](");
                    if url.contains(['(', ')']) {
                        out.push_str(&url.replace('(', "%28").replace(')', "%29"));
                    } else {
                        out.push_str(url);
                    }
                    out.push(')');
                }
            }
        }
    });
}

/// A code span written in a dialect.
fn code_into(t: &str, d: Dialect, out: &mut String) {
    match d {
        Dialect::ChatHtml => {
            out.push_str("<font face=\"monospace\">");
            literal_into(t, d, out);
            out.push_str("</font>");
        }
        Dialect::Slack => {
            out.push('`');
            literal_into(&t.replace('`', "'"), d, out);
            out.push('`');
        }
        _ => {
            // Inside code nothing is markup; a backtick in it cannot close it early.
            out.push('`');
            for c in t.chars() {
                match c {
                    '`' => out.push('\''),
                    '@' if matches!(d, Dialect::Discord | Dialect::Mattermost) => {
                        out.push_str("@\u{200B}")
                    }
                    c => out.push(c),
                }
            }
            out.push('`');
        }
    }
}

/// No field of any platform shows more than this many characters; longer input is cut before
/// it is parsed, so that a 10 MB commit message costs no more than a long one.
const LONGEST: usize = 16_000;

/// Portable Markdown in a dialect.
fn markdown(s: &str, d: Dialect) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    markdown_into(s, d, &mut out);
    out
}

/// [`markdown`], written at the end of `out`.
fn markdown_into(s: &str, d: Dialect, out: &mut String) {
    let cut = cut_cow(s, LONGEST);
    for (n, line) in clean(&cut).split('\n').enumerate() {
        if n > 0 {
            out.push_str(match d {
                Dialect::ChatHtml => "<br>",
                Dialect::Teams => "\n\n",
                _ => "\n",
            });
        }
        let (bullet, rest) = bullet(line);
        if bullet {
            out.push_str(match d {
                Dialect::Slack | Dialect::ChatHtml => "• ",
                _ => "- ",
            });
        }
        write_line(rest, d, out);
    }
}

/// Plain text in a dialect: literal, one line breaks kept.
fn plain(s: &str, d: Dialect) -> String {
    let cut = cut_cow(s, LONGEST);
    let s = clean(&cut);
    let mut out = String::with_capacity(s.len() + 8);
    for (n, line) in s.split('\n').enumerate() {
        if n > 0 {
            out.push_str(match d {
                Dialect::ChatHtml => "<br>",
                _ => "\n",
            });
        }
        literal_into(line, d, &mut out);
    }
    out
}

/// Text that shows as typed in `kind`'s message text and can mention no one (a name beside
/// real mentions, say).
pub fn inert(s: &str, kind: CardKind) -> String {
    match kind {
        CardKind::Teams | CardKind::Workflow => plain(s, Dialect::Teams),
        CardKind::Slack => slack_plain(s),
        CardKind::Discord => plain(s, Dialect::Discord),
        CardKind::Mattermost => plain(s, Dialect::Mattermost),
        CardKind::GoogleChat => bare(s).replace('<', "‹").replace('>', "›"),
    }
}

/// Plain text for fields that take no markup at all (Discord's embed title and field names,
/// Google Chat's header, a MessageCard's summary and button names): control characters
/// dropped, and a zero-width space after every `@` and `<`, so that no `@everyone`,
/// `<!channel>`, `<users/all>` or `<at>` is read as one.
fn bare(s: &str) -> String {
    let cut = cut_cow(s, LONGEST);
    let s = clean(&cut);
    let mut out = String::with_capacity(s.len() + 8);
    let mut prev = ' ';
    for c in s.chars() {
        if c == '(' && prev == ']' {
            out.push('\u{200B}');
        }
        out.push(c);
        if c == '@' || c == '<' {
            out.push('\u{200B}');
        }
        prev = c;
    }
    out
}

/// At most `n` characters (Unicode scalar values, as the platforms count), with `…` when
/// cut; a grapheme cluster (an emoji with its modifiers) is never split, nor an escape (`&lt;`)
/// or a trailing backslash left to escape the `…`.
fn cut(s: &str, n: usize) -> String {
    cut_cow(s, n).into_owned()
}

/// [`cut`], borrowing what needs no cut.
fn cut_cow(s: &str, n: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= n || s.chars().count() <= n {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(cut_long(s, n))
}

fn cut_long(s: &str, n: usize) -> String {
    use unicode_segmentation::UnicodeSegmentation;
    let mut out = String::new();
    let mut used = 0;
    for g in s.graphemes(true) {
        let c = g.chars().count();
        if used + c + 1 > n {
            break;
        }
        out.push_str(g);
        used += c;
    }
    if let Some(amp) = out.rfind('&') {
        if out[amp + 1..]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '#')
        {
            out.truncate(amp);
        }
    }
    while out.ends_with('\\') {
        out.pop();
    }
    out.push('…');
    out
}

/// The first `n` of `items`, then `…and N more` when some were left out.
fn fold<T: Clone>(items: &[T], n: usize, more: impl Fn(usize) -> T) -> Vec<T> {
    if items.len() <= n {
        return items.to_vec();
    }
    let mut v = items[..n.saturating_sub(1)].to_vec();
    v.push(more(items.len() - v.len()));
    v
}

fn and_more(n: usize) -> String {
    format!("…and {n} more")
}

/// Short Markdown lines as a bulleted list in a dialect, folded after 20.
fn bullets(items: &[String], d: Dialect) -> String {
    let mut out = String::new();
    bullets_into(items, d, &mut out);
    out
}

/// [`bullets`], written at the end of `out`.
fn bullets_into(items: &[String], d: Dialect, out: &mut String) {
    let (mark, sep) = match d {
        Dialect::Slack => ("• ", "\n"),
        Dialect::ChatHtml => ("• ", "<br>"),
        _ => ("- ", "\n"),
    };
    const N: usize = 20;
    let shown = if items.len() > N { N - 1 } else { items.len() };
    let more = (items.len() > N).then(|| and_more(items.len() - shown));
    let lines = items[..shown]
        .iter()
        .map(String::as_str)
        .chain(more.as_deref());
    for (n, l) in lines.enumerate() {
        if n > 0 {
            out.push_str(sep);
        }
        out.push_str(mark);
        markdown_into(l, d, out);
    }
}

/// Links written inline, `[label](url) · …`, for the chats without buttons in a message.
fn inline_links(links: &[Link], d: Dialect) -> String {
    links
        .iter()
        .map(|l| {
            format!(
                "[{}]({})",
                literal(&bare(&l.label), d),
                l.url.replace(')', "%29")
            )
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

// ---------------------------------------------------------------------------------------
// The platforms.

fn teams(card: &Card) -> Value {
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

fn teams_facts(facts: &[Fact]) -> Value {
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

/// The card's buttons: `links` (an empty label reads "Open"), else its main `link` as
/// "Open", at most `n`.
fn buttons(card: &Card, n: usize) -> Vec<Link> {
    let mut links: Vec<Link> = card
        .links
        .iter()
        .map(|l| Link {
            label: if clean(&l.label).trim().is_empty() {
                "Open".into()
            } else {
                l.label.clone()
            },
            url: l.url.clone(),
        })
        .collect();
    if links.is_empty() {
        if let Some(u) = &card.link {
            links.push(Link {
                label: "Open".into(),
                url: u.clone(),
            });
        }
    }
    links.truncate(n);
    links
}

fn workflow(card: &Card) -> Value {
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

fn workflow_facts(facts: &[Fact]) -> Value {
    let d = Dialect::Teams;
    json!({"type": "FactSet", "facts": fold(facts, 20, |n| Fact { name: "…".into(), value: format!("{n} more") })
        .iter()
        .map(|f| json!({"title": plain(&f.name, d), "value": markdown(&f.value, d)}))
        .collect::<Vec<_>>()})
}

/// Slack: Block Kit inside one attachment (for the color bar), `text` as the notification
/// fallback. Limits: 50 blocks, header 150, section text 3,000, 10 fields of 2,000, 25
/// buttons of 75, `text` 40,000 (kept far below).
fn slack(card: &Card) -> Value {
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

/// Text for Slack's `plain_text` objects: no markup, and `&`, `<`, `>` escaped as Slack asks
/// of every text, so that `<!channel>` stays text.
fn slack_plain(s: &str) -> String {
    literal(&clean(s), Dialect::Slack)
}

fn slack_section(text: &str) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": cut(text, 3000)}})
}

fn slack_fields(facts: &[Fact]) -> Value {
    let d = Dialect::Slack;
    json!({"type": "section", "fields": fold(facts, 10, |n| Fact { name: "…".into(), value: format!("{n} more") })
        .iter()
        .map(|f| json!({"type": "mrkdwn", "text": cut(&format!("*{}*\n{}", plain(&f.name, d), markdown(&f.value, d)), 2000)}))
        .collect::<Vec<_>>()})
}

/// Discord: one embed; nothing in it may ping (`allowed_mentions` parses nothing). Limits:
/// title 256, description 4,096, 25 fields (name 256, value 1,024), footer 2,048, author 256,
/// 6,000 characters across the embed.
fn discord(card: &Card) -> Value {
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

/// Whether links go in the text: some, and not only the main link (which is the title's).
fn shows_links(card: &Card, links: &[Link]) -> bool {
    match links {
        [] => false,
        [only] => card.link.as_ref() != Some(&only.url),
        _ => true,
    }
}

fn discord_field(name: &str, value: &str, inline: bool) -> Value {
    let value = if value.trim().is_empty() {
        "\u{200B}"
    } else {
        value
    };
    json!({"name": cut(&bare(name), 256), "value": cut(value, 1024), "inline": inline})
}

/// The characters Discord counts toward an embed's 6,000.
fn discord_chars(e: &Value) -> usize {
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
fn fit_discord(e: &mut Value) {
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

/// Google Chat: cardsV2 with a header and one section of widgets, `text` as the
/// notification. At most 32,000 bytes.
fn google_chat(card: &Card) -> Value {
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

/// Mattermost: one Slack-style attachment, in Mattermost's Markdown. At most 16,383
/// characters of text.
fn mattermost(card: &Card) -> Value {
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

#[cfg(test)]
mod tests;

//! The size and shape policy: every card leaves within Teams' limits, shrunk rather than refused.
//!
//! In order, stopping as soon as the card fits 28 KB (serialized):
//! 1. Caps that always apply: a MessageCard keeps at most 10 sections (the tenth says
//!    "…and N more") and 4 actions per collection; any single text over 2,000 characters is cut.
//! 2. Texts are cut, longest first, to 1,000, 500, 200, then 100 characters, with an ellipsis.
//! 3. Lists are folded: facts, sections (MessageCard) and body elements (Adaptive Card) beyond
//!    8, then 5, 3 and 1 are replaced by one "…and N more" line.
//!
//! Only text is touched: keys that carry structure (`type`, `@type`, `version`, URLs, colors)
//! are never cut, so the card stays valid. A card that cannot be brought under the limit this way
//! is refused by validation.

use serde_json::{json, Value};

use super::{CardKind, MAX_CARD_BYTES};
use crate::render::validate::{MAX_ACTIONS, MAX_SECTIONS};

/// Keys whose string values are structure, not text, and are never cut.
const STRUCTURAL: &[&str] = &[
    "@type",
    "@context",
    "type",
    "version",
    "contentType",
    "contentUrl",
    "os",
    "$schema",
    "color",
    "size",
    "weight",
    "spacing",
    "width",
    "themeColor",
    "style",
    "horizontalAlignment",
    "id",
    "altText",
];

/// Keys whose values are links: cut only when absurdly long (over 2,000 characters), where the
/// link is broken anyway; the start (`https://…`) stays, so the card stays valid.
const LINKS: &[&str] = &["uri", "url", "target", "image", "activityImage", "iconUrl"];

/// Brings a card within limits; returns what it changed, for the log.
pub fn fit(kind: CardKind, card: &mut Value) -> Vec<String> {
    let mut done = caps(kind, card);
    shrink(kind, card, &mut done);
    done
}

/// Step 1, the caps that always apply; returns what it changed, for the log.
pub fn caps(kind: CardKind, card: &mut Value) -> Vec<String> {
    let mut done = Vec::new();
    if kind == CardKind::Teams {
        cap_message_card(card, &mut done);
    }
    if encode_links(card) > 0 {
        done.push("percent-encoded links".into());
    }
    if cut_texts(card, 2000) + cut_links(card, 2000) > 0 {
        done.push("cut texts and links over 2000 characters".into());
    }
    done
}

/// Steps 2 and 3, for a card whose caps are applied: shrinks it until it fits 28 KB, adding
/// what it changed to `done`. (A caller that has the card serialized and knows it fits skips
/// this.)
pub fn shrink(kind: CardKind, card: &mut Value, done: &mut Vec<String>) {
    for limit in [1000, 500, 200, 100] {
        if size(card) <= MAX_CARD_BYTES {
            return;
        }
        if cut_texts(card, limit) > 0 {
            done.push(format!("cut texts to {limit} characters"));
        }
    }
    for keep in [8, 5, 3, 1] {
        if size(card) <= MAX_CARD_BYTES {
            return;
        }
        if fold_lists(kind, card, keep) > 0 {
            done.push(format!("folded lists beyond {keep} items"));
        }
    }
    if size(card) > MAX_CARD_BYTES && cut_texts(card, 20) > 0 {
        done.push("cut texts to 20 characters".into());
    }
}

/// The serialized size in bytes, counted as it is written (nothing is kept).
pub fn size(card: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut n = Count(0);
    match serde_json::to_writer(&mut n, card) {
        Ok(()) => n.0,
        Err(_) => usize::MAX,
    }
}

fn more(n: usize) -> String {
    format!("…and {n} more")
}

fn cap_message_card(card: &mut Value, done: &mut Vec<String>) {
    if let Some(sections) = card.get_mut("sections").and_then(Value::as_array_mut) {
        if sections.len() > MAX_SECTIONS {
            let extra = sections.len() - (MAX_SECTIONS - 1);
            sections.truncate(MAX_SECTIONS - 1);
            sections.push(json!({"text": more(extra)}));
            done.push(format!("folded {extra} sections"));
        }
        for s in sections.iter_mut() {
            cap_actions(s, done);
        }
    }
    cap_actions(card, done);
}

fn cap_actions(holder: &mut Value, done: &mut Vec<String>) {
    if let Some(actions) = holder
        .get_mut("potentialAction")
        .and_then(Value::as_array_mut)
    {
        if actions.len() > MAX_ACTIONS {
            done.push(format!(
                "dropped {} actions over {MAX_ACTIONS}",
                actions.len() - MAX_ACTIONS
            ));
            actions.truncate(MAX_ACTIONS);
        }
    }
}

/// Cuts every text longer than `limit` characters; returns how many were cut.
fn cut_texts(v: &mut Value, limit: usize) -> usize {
    let mut n = 0;
    match v {
        Value::Object(o) => {
            let skip = |k: &str| STRUCTURAL.contains(&k) || LINKS.contains(&k);
            for (k, child) in o.iter_mut() {
                // Bytes first: a text no longer than `limit` bytes has no more characters.
                match child {
                    Value::String(s)
                        if s.len() > limit && !skip(k) && s.chars().count() > limit =>
                    {
                        *s = crate::render::truncate_text(s, limit);
                        n += 1;
                    }
                    Value::String(_) => {}
                    other if !skip(k) => n += cut_texts(other, limit),
                    _ => {}
                }
            }
        }
        Value::Array(a) => {
            for child in a {
                if let Value::String(s) = child {
                    if s.len() > limit && s.chars().count() > limit {
                        *s = crate::render::truncate_text(s, limit);
                        n += 1;
                    }
                } else {
                    n += cut_texts(child, limit);
                }
            }
        }
        _ => {}
    }
    n
}

/// Percent-encodes links holding characters RFC 3986 does not allow (spaces, quotes, `|`,
/// control characters...), which upstream text can bring into a link; returns how many changed.
fn encode_links(v: &mut Value) -> usize {
    let mut n = 0;
    match v {
        Value::Object(o) => {
            for (k, child) in o.iter_mut() {
                match child {
                    Value::String(s) if LINKS.contains(&k.as_str()) => {
                        if let Some(encoded) = rfc3986(s) {
                            *s = encoded;
                            n += 1;
                        }
                    }
                    other => n += encode_links(other),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|c| n += encode_links(c)),
        _ => {}
    }
    n
}

/// The link with every character RFC 3986 does not allow after the authority percent-encoded,
/// or None when it needs no change (or is not an absolute URL).
fn rfc3986(link: &str) -> Option<String> {
    let start = link.find("://")? + 3;
    let path_at = link[start..]
        .find(['/', '?', '#'])
        .map_or(link.len(), |i| start + i);
    let (head, tail) = link.split_at(path_at);
    // A `%` is allowed only as the start of an escape: `%` and two hex digits.
    let escape_at = |i: usize| {
        tail.as_bytes()
            .get(i + 1..i + 3)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    };
    let allowed = |i: usize, c: char| {
        c.is_ascii_alphanumeric()
            || "-._~:/?#@!$&'()*+,;=".contains(c)
            || (c == '%' && escape_at(i))
    };
    // The same test a byte at a time (what it allows is ASCII), for the links that need no
    // change: nearly all.
    let allowed_byte = |i: usize, b: u8| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b':'
                    | b'/'
                    | b'?'
                    | b'#'
                    | b'@'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
            )
            || (b == b'%' && escape_at(i))
    };
    if tail.bytes().enumerate().all(|(i, b)| allowed_byte(i, b)) {
        return None;
    }
    let mut out = String::with_capacity(link.len() + 16);
    out.push_str(head);
    for (i, c) in tail.char_indices() {
        if allowed(i, c) {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    Some(out)
}

/// Cuts links longer than `limit` characters; returns how many were cut.
fn cut_links(v: &mut Value, limit: usize) -> usize {
    let mut n = 0;
    match v {
        Value::Object(o) => {
            for (k, child) in o.iter_mut() {
                match child {
                    Value::String(s)
                        if s.len() > limit
                            && LINKS.contains(&k.as_str())
                            && s.chars().count() > limit =>
                    {
                        let mut cut: String = s.chars().take(limit).collect();
                        // Never leave half a percent-escape (`%2`) at the end.
                        if let Some(i) = cut.rfind('%').filter(|i| cut.len() - i < 3) {
                            cut.truncate(i);
                        }
                        *s = cut;
                        n += 1;
                    }
                    other => n += cut_links(other, limit),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|c| n += cut_links(c, limit)),
        _ => {}
    }
    n
}

/// Folds long lists to `keep` items plus one "…and N more"; returns how many were folded.
fn fold_lists(kind: CardKind, v: &mut Value, keep: usize) -> usize {
    let mut n = 0;
    if let Value::Object(o) = v {
        for (k, child) in o.iter_mut() {
            if let Value::Array(items) = child {
                let fold = match (kind, k.as_str()) {
                    (CardKind::Teams, "facts") => {
                        Some(json!({"name": "…", "value": more(items.len().saturating_sub(keep))}))
                    }
                    (CardKind::Teams, "sections") => {
                        Some(json!({"text": more(items.len().saturating_sub(keep))}))
                    }
                    (CardKind::Workflow, "facts") => {
                        Some(json!({"title": "…", "value": more(items.len().saturating_sub(keep))}))
                    }
                    (CardKind::Workflow, "body") => Some(
                        json!({"type": "TextBlock", "wrap": true, "text": more(items.len().saturating_sub(keep))}),
                    ),
                    _ => None,
                };
                if let Some(line) = fold {
                    if items.len() > keep + 1 {
                        items.truncate(keep);
                        items.push(line);
                        n += 1;
                    }
                }
            }
            n += fold_lists(kind, child, keep);
        }
    } else if let Value::Array(a) = v {
        for child in a {
            n += fold_lists(kind, child, keep);
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::validate::validate;

    fn teams(sections: usize, text: usize) -> Value {
        json!({"@type": "MessageCard", "@context": "https://schema.org/extensions", "summary": "s", "themeColor": "0366D6",
            "sections": (0..sections).map(|i| json!({"activityTitle": format!("s{i}"), "text": "x".repeat(text),
                "facts": (0..30).map(|j| json!({"name": format!("f{j}"), "value": "v".repeat(200)})).collect::<Vec<_>>()})).collect::<Vec<_>>(),
            "potentialAction": (0..6).map(|_| json!({"@type": "OpenUri", "name": "Open", "targets": [{"os": "default", "uri": "https://example.com/x"}]})).collect::<Vec<_>>()})
    }

    #[test]
    fn a_huge_message_card_is_shrunk_to_fit_and_stays_valid() {
        let mut card = teams(40, 50_000);
        let done = fit(CardKind::Teams, &mut card);
        assert!(
            size(&card) <= MAX_CARD_BYTES,
            "{} bytes after {done:?}",
            size(&card)
        );
        assert_eq!(validate(CardKind::Teams, &card), Ok(()));
        let sections = card["sections"].as_array().unwrap();
        assert!(sections.len() <= MAX_SECTIONS);
        assert!(sections.last().unwrap()["text"]
            .as_str()
            .unwrap()
            .starts_with("…and "));
        assert_eq!(
            card["potentialAction"].as_array().unwrap().len(),
            MAX_ACTIONS
        );
        assert_eq!(
            card["potentialAction"][0]["targets"][0]["uri"],
            "https://example.com/x"
        );
    }

    #[test]
    fn links_are_made_valid_uris() {
        assert_eq!(
            rfc3986("https://x.com/a b|c[1]\"q\""),
            Some("https://x.com/a%20b%7Cc%5B1%5D%22q%22".into())
        );
        assert_eq!(rfc3986("https://x.com/ok?a=1&b=%20#frag"), None);
        assert_eq!(rfc3986("https://[::1]:8080/p"), None);
        assert_eq!(rfc3986("not a url"), None);
        assert_eq!(
            rfc3986("https://x.com/100%"),
            Some("https://x.com/100%25".into())
        );
        assert_eq!(
            rfc3986("https://x.com/café/ü?q=ß"),
            Some("https://x.com/caf%C3%A9/%C3%BC?q=%C3%9F".into())
        );
    }

    #[test]
    fn a_small_card_is_left_alone() {
        let mut card = teams(2, 10);
        card["potentialAction"].as_array_mut().unwrap().truncate(1);
        let before = card.clone();
        assert!(fit(CardKind::Teams, &mut card).is_empty());
        assert_eq!(card, before);
    }

    #[test]
    fn a_long_adaptive_card_body_is_folded() {
        let body: Vec<Value> = (0..2000).map(|i| json!({"type": "TextBlock", "wrap": true, "text": format!("line {i} {}", "y".repeat(50))})).collect();
        let mut card = json!({"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": null,
            "content": {"type": "AdaptiveCard", "version": "1.4", "body": body}}]});
        fit(CardKind::Workflow, &mut card);
        assert!(size(&card) <= MAX_CARD_BYTES);
        assert_eq!(validate(CardKind::Workflow, &card), Ok(()));
        let body = card["attachments"][0]["content"]["body"]
            .as_array()
            .unwrap();
        assert!(body.last().unwrap()["text"]
            .as_str()
            .unwrap()
            .starts_with("…and "));
    }
}

//! The emulators' inboxes: what each emulated channel received, as the chat keeps it.
//!
//! In: cards posted, edits and replies by message id, deletions (as a person in the chat would
//! delete a message). Out: each channel's messages, oldest first, each with its current card,
//! the cards it showed before (its edits) and the replies in its thread; the page that shows
//! them. Guarantees: a message keeps its id through its edits; a reply names its thread's first
//! message; at most [`KEEP`] messages a channel (the oldest go first).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use serde_json::Value;

use crate::html::esc;
use crate::render::CardKind;

/// Messages kept per inbox.
pub const KEEP: usize = 100;

/// One message in an emulated channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Its id (a Discord snowflake's shape).
    pub id: String,
    /// The card it shows now.
    pub card: Value,
    /// The cards it showed before, oldest first.
    pub edits: Vec<Value>,
    /// The first message of the thread it replies in, if it is a reply.
    pub thread: Option<String>,
}

/// What the emulated channels received.
pub struct Inboxes {
    groups: Mutex<HashMap<String, VecDeque<Message>>>,
    next: AtomicU64,
}

impl Default for Inboxes {
    fn default() -> Self {
        Self {
            groups: Mutex::default(),
            // Snowflake-like ids, increasing.
            next: AtomicU64::new(1_100_000_000_000_000_000),
        }
    }
}

impl Inboxes {
    /// Posts a card in a channel; its message's id.
    pub(crate) fn push(&self, group: &str, card: Value) -> String {
        self.add(group, card, None)
    }

    /// Posts a card in the thread of `root`'s message; its id, or `None` when there is no such
    /// message.
    pub(crate) fn reply(&self, group: &str, root: &str, card: Value) -> Option<String> {
        self.find(group, root)?;
        Some(self.add(group, card, Some(root.to_string())))
    }

    /// Posts a card under the id the platform gave it (Slack's `ts`), in `thread` if given.
    pub(crate) fn push_as(&self, group: &str, id: &str, card: Value, thread: Option<String>) {
        self.insert(group, id.to_string(), card, thread);
    }

    fn add(&self, group: &str, card: Value, thread: Option<String>) -> String {
        let id = self.next.fetch_add(1, Relaxed).to_string();
        self.insert(group, id.clone(), card, thread);
        id
    }

    fn insert(&self, group: &str, id: String, card: Value, thread: Option<String>) {
        let mut groups = self.groups.lock().expect("inbox lock");
        let q = groups.entry(group.to_string()).or_default();
        if q.len() == KEEP {
            q.pop_front();
        }
        q.push_back(Message {
            id,
            card,
            edits: Vec::new(),
            thread,
        });
    }

    /// Replaces a message's card, keeping what it showed; whether the message exists.
    pub(crate) fn edit(&self, group: &str, id: &str, card: Value) -> bool {
        let mut groups = self.groups.lock().expect("inbox lock");
        let Some(m) = groups
            .get_mut(group)
            .and_then(|q| q.iter_mut().find(|m| m.id == id))
        else {
            return false;
        };
        let before = std::mem::replace(&mut m.card, card);
        m.edits.push(before);
        true
    }

    /// Deletes a message (and the replies in its thread), as a person in the chat would;
    /// whether it existed.
    pub fn delete(&self, group: &str, id: &str) -> bool {
        let mut groups = self.groups.lock().expect("inbox lock");
        let Some(q) = groups.get_mut(group) else {
            return false;
        };
        let before = q.len();
        q.retain(|m| m.id != id && m.thread.as_deref() != Some(id));
        q.len() != before
    }

    /// A message, if the channel has it.
    pub fn find(&self, group: &str, id: &str) -> Option<Message> {
        self.groups
            .lock()
            .expect("inbox lock")
            .get(group)?
            .iter()
            .find(|m| m.id == id)
            .cloned()
    }

    /// A channel's messages, oldest first.
    pub fn messages(&self, group: &str) -> Vec<Message> {
        self.groups
            .lock()
            .expect("inbox lock")
            .get(group)
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The cards a channel's messages show now, oldest first.
    pub fn cards(&self, group: &str) -> Vec<Value> {
        self.messages(group).into_iter().map(|m| m.card).collect()
    }
}

/// A channel's messages as data, oldest first: `id`, `card`, `edits` (oldest first) and
/// `thread` (the first message's id, for a reply).
pub fn as_json(messages: &[Message]) -> Value {
    Value::Array(
        messages
            .iter()
            .map(|m| serde_json::json!({"id": m.id, "card": m.card, "edits": m.edits, "thread": m.thread}))
            .collect(),
    )
}

/// A channel's messages as the chat shows them, newest first: each first message with its
/// card laid out by `card`, "edited" and what it showed before (on click) when it was edited,
/// and the replies in its thread under it, oldest first.
pub fn show(messages: &[Message], kind: CardKind, card: impl Fn(&Value) -> String) -> String {
    if messages.is_empty() {
        return "<p class=\"muted\">Nothing yet.</p>".to_string();
    }
    let one = |m: &Message| {
        let mut out = format!("<div class=\"message\" id=\"m{}\">", esc(&m.id));
        out.push_str(&card(&m.card));
        if !m.edits.is_empty() {
            out.push_str(&format!(
                "<details class=\"edits\"><summary>edited ({})</summary>",
                crate::render::plural_count(m.edits.len(), "earlier version")
            ));
            for (i, e) in m.edits.iter().enumerate().rev() {
                out.push_str(&format!(
                    "<p class=\"muted\">Version {}</p>{}",
                    i + 1,
                    card(e)
                ));
            }
            out.push_str("</details>");
        }
        out
    };
    let mut html = String::new();
    for m in messages.iter().rev().filter(|m| m.thread.is_none()) {
        html.push_str(&one(m));
        let replies: Vec<&Message> = messages
            .iter()
            .filter(|r| r.thread.as_deref() == Some(m.id.as_str()))
            .collect();
        if !replies.is_empty() {
            let count = match replies.len() {
                1 => "1 reply".to_string(),
                n => format!("{n} replies"),
            };
            html.push_str(&format!(
                "<div class=\"thread {}\"><p class=\"muted\">{count} in its thread</p>",
                kind.as_str(),
            ));
            for r in replies {
                html.push_str(&one(r));
                html.push_str("</div>");
            }
            html.push_str("</div>");
        }
        html.push_str("</div>");
    }
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_keep_their_ids_through_edits_and_replies_name_their_thread() {
        let inboxes = Inboxes::default();
        let a = inboxes.push("c", json!({"n": 1}));
        let b = inboxes.push("c", json!({"n": 2}));
        assert_ne!(a, b);
        assert!(inboxes.edit("c", &a, json!({"n": 3})));
        assert!(!inboxes.edit("c", "404", json!({})));
        assert!(!inboxes.edit("other", &a, json!({})));
        let r = inboxes.reply("c", &b, json!({"n": 4})).unwrap();
        assert!(inboxes.reply("c", "404", json!({})).is_none());
        let m = inboxes.messages("c");
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].card, json!({"n": 3}));
        assert_eq!(m[0].edits, vec![json!({"n": 1})]);
        assert_eq!(m[2].thread.as_deref(), Some(b.as_str()));
        assert_eq!(inboxes.cards("c")[0], json!({"n": 3}));
        // Deleting a thread's first message deletes its replies.
        assert!(inboxes.delete("c", &b));
        assert!(inboxes.find("c", &r).is_none());
        assert_eq!(inboxes.messages("c").len(), 1);
        assert!(!inboxes.delete("c", &b));
    }

    #[test]
    fn an_inbox_keeps_the_newest_messages() {
        let inboxes = Inboxes::default();
        for n in 0..KEEP + 5 {
            inboxes.push("c", json!(n));
        }
        let cards = inboxes.cards("c");
        assert_eq!(cards.len(), KEEP);
        assert_eq!(cards[0], json!(5));
    }

    #[test]
    fn the_page_shows_edits_on_click_and_replies_under_their_message() {
        let inboxes = Inboxes::default();
        let a = inboxes.push("c", json!("first"));
        inboxes.edit("c", &a, json!("second"));
        inboxes.reply("c", &a, json!("a reply")).unwrap();
        let html = show(&inboxes.messages("c"), CardKind::Discord, |v| {
            format!("<p>{}</p>", v.as_str().unwrap())
        });
        assert!(html.contains("<summary>edited (1 earlier version)</summary>"));
        let (now, before) = (html.find("second").unwrap(), html.find("first").unwrap());
        assert!(now < before, "the current card first, then its history");
        assert!(html.contains("1 reply in its thread"));
        assert!(html.find("a reply").unwrap() > before);
        assert_eq!(
            show(&[], CardKind::Slack, |_| String::new()),
            "<p class=\"muted\">Nothing yet.</p>"
        );
    }
}

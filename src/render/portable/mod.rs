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
//!
//! The rooms: [`model`] (the vocabulary, read and checked), [`dialect`] (the Markdown subset
//! read once and written in each platform's dialect, texts cut and lists folded),
//! [`message_card`] (a Teams template's MessageCard read as a portable card), and one writer a
//! chat: [`teams`], [`workflow`], [`slack`], [`discord`], [`google_chat`], [`mattermost`].

pub mod dialect;
pub mod discord;
pub mod google_chat;
pub mod mattermost;
pub mod message_card;
pub mod model;
pub mod slack;
pub mod teams;
pub mod workflow;

pub use dialect::{inert, unmarkdown};
pub use message_card::from_message_card;
pub use model::{
    parse, parse_str, Author, Card, Fact, Link, ParseError, Section, Severity, SCHEMA,
};

use serde_json::Value;

use crate::render::CardKind;

/// The card as `kind`'s native body.
pub fn convert(card: &Card, kind: CardKind) -> Value {
    match kind {
        CardKind::Teams => teams::teams(card),
        CardKind::Workflow => workflow::workflow(card),
        CardKind::Slack => slack::slack(card),
        CardKind::Discord => discord::discord(card),
        CardKind::GoogleChat => google_chat::google_chat(card),
        CardKind::Mattermost => mattermost::mattermost(card),
    }
}

#[cfg(test)]
mod tests;

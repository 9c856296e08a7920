//! Connections: the webhook URLs cards go to.
//!
//! In: changes from the admin API ([`api`]), the pages and the connect flows. Out: connections
//! in the store, through the connections' cache ([`crate::connections`]). Guarantees: a URL is
//! checked against `targets` before it is stored; URLs never appear in answers or logs except
//! masked (scheme, host, last 4 characters).
//!
//! - [`api`]: the admin API under /api/connections.
//! - [`flow`]: the Connect to Office 365 pages and callback, and the state every flow shares.
//! - [`github`]: a GitHub App made from a manifest for a source: its manifest, GitHub's URLs,
//!   the conversion's answer.
//! - [`gitlab`]: GitLab hooks made by token for a source: their events, GitLab's URLs and
//!   answers.
//! - [`providers`]: the platforms with an "Add to …" flow: clients, authorize URLs, token answers.
//! - [`oauth`]: Add to Slack and Add to Discord, the pages and callbacks.
//! - [`emulator`]: a local stand-in for the Office 365 side.
//! - [`chat_emulator`]: a local stand-in for Slack's and Discord's side.
//! - [`github_emulator`]: a local stand-in for GitHub's side of a GitHub App made from a
//!   manifest, and its pushes.
//! - [`gitlab_emulator`]: a local stand-in for GitLab's project hooks API and its test
//!   events.
//! - [`mattermost_emulator`]: a local stand-in for a Mattermost server: webhooks and a bot.
//! - [`inboxes`]: what the emulated channels received: messages, their edits, their threads.

pub mod api;
pub mod chat_emulator;
pub mod emulator;
pub mod flow;
pub mod github;
pub mod github_emulator;
pub mod gitlab;
pub mod gitlab_emulator;
pub mod inboxes;
pub mod mattermost_emulator;
pub mod oauth;
pub mod providers;

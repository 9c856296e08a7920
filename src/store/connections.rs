//! Connections: the webhook URLs cards go to, where each came from, when it last took a card.
//!
//! In: connections from the admin API and the connect flows; out: the same, URL and user id
//! opened. Guarantees: the URL, the Office 365 user id and a bot's token are sealed at rest
//! (see [`super::secrets`]); removing a connection erases them.

use serde::{Deserialize, Serialize};

use super::{secrets, StoreError};
use crate::ids::ConnectionId;
use crate::render::CardKind;

/// A webhook URL that cards go to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Connection {
    /// Its id.
    pub id: ConnectionId,
    /// A name for people.
    pub name: String,
    /// The webhook URL. A secret: never logged, masked in every answer.
    pub url: String,
    /// What kind of card the URL takes.
    pub kind: CardKind,
    /// The channels it receives; empty means all.
    #[serde(default)]
    pub channels: Vec<String>,
    /// When it was created (Unix milliseconds).
    pub created_ms: u64,
    /// A paused connection receives nothing; its events are counted and skipped.
    #[serde(default)]
    pub paused: bool,
    /// Where it came from.
    #[serde(default)]
    pub origin: ConnectionOrigin,
    /// The digest schedule chosen for it, if any (acted on by noise control).
    #[serde(default)]
    pub digest: Option<serde_json::Value>,
    /// Why the webhook URL is broken (it answered 404 or 410); nothing is sent until a retry.
    #[serde(default)]
    pub broken: Option<String>,
    /// A limit for everything this connection receives (`count/period`, e.g. `20/1h`); what
    /// exceeds it folds into summaries like a rule's limit.
    #[serde(default)]
    pub limit: Option<String>,
    /// Discord: the webhook posts into a forum (or media) channel, where every message opens
    /// or joins a thread: a card with a key opens one (named by its `thread`, or its title),
    /// and later cards with the same key reply in it or edit its first message (their message
    /// references say where: [`crate::store::MessageRefs`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forum: bool,
    /// A chat's bot, through which cards with a key are posted, edited and threaded (Slack's
    /// Web API with the bot token Add to Slack gives); `None`: the webhook alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot: Option<Bot>,
}

/// A bot of the chat a connection posts to: its token (a secret, sealed at rest like webhook
/// URLs), the chat's API and the channel it posts in.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Bot {
    /// The bot token (Slack's `xoxb-…`).
    pub token: String,
    /// The API's base URL (`https://slack.com/api/`).
    pub api: String,
    /// The channel's id (Slack's `C…`).
    pub channel: String,
}

/// How a connection was made.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ConnectionOrigin {
    /// `api`, `connect` (the Office 365 callback) or `paste` (a URL pasted on /connect).
    #[serde(default)]
    pub via: String,
    /// `mail`, `groups` or `teams`, from the Office 365 callback.
    #[serde(default)]
    pub app_type: Option<String>,
    /// The group's name (absent for an inbox).
    #[serde(default)]
    pub group_name: Option<String>,
    /// The Office 365 user who connected it. A secret, sealed at rest.
    #[serde(default)]
    pub user_object_id: Option<String>,
    /// The chat channel the platform says the webhook posts to (`#deploys`), from Add to
    /// Slack / Add to Discord.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// That channel's id on the platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_id: Option<String>,
    /// The Slack workspace (`team.id`) or Discord server (`guild_id`) it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    /// The Slack workspace's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_name: Option<String>,
    /// Where its settings live on the platform (Slack's `configuration_url`), for people who
    /// want to remove it there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration_url: Option<String>,
}

impl ConnectionOrigin {
    /// Made through `via` (`api`, `paste`, `connect`, `slack`, `discord`), nothing else known.
    pub fn via(via: &str) -> Self {
        Self {
            via: via.into(),
            ..Self::default()
        }
    }
}

/// Connections, their URLs and user ids sealed at rest, and when each last got a card.
pub trait ConnectionRecords {
    /// Inserts or replaces a connection; its URL and user id are sealed.
    fn put_connection(&self, c: &Connection) -> Result<(), StoreError>;

    /// Every connection, oldest first, secrets opened.
    fn connections(&self) -> Result<Vec<Connection>, StoreError>;

    /// Notes when a connection last got a card.
    fn set_last_delivery(&self, id: &ConnectionId, ms: u64) -> Result<(), StoreError>;

    /// When each connection last got a card.
    fn last_deliveries(&self) -> Result<Vec<(ConnectionId, u64)>, StoreError>;

    /// Removes a connection (its sealed secrets with it) and the cards still queued for it.
    /// Returns whether it existed.
    fn remove_connection(&self, id: &ConnectionId) -> Result<bool, StoreError>;
}

impl Connection {
    /// A new connection, made now, active, with nothing yet known of how it is delivered to:
    /// the one way every flow makes one (the API, a pasted URL, Connect to Office 365, Add to
    /// Slack / Discord), each saying where it came from in `origin`.
    pub fn new(
        name: impl Into<String>,
        url: impl Into<String>,
        kind: CardKind,
        channels: Vec<String>,
        origin: ConnectionOrigin,
    ) -> Self {
        Self {
            id: ConnectionId::new(),
            name: name.into(),
            url: url.into(),
            kind,
            channels,
            created_ms: super::clock::now_ms(),
            paused: false,
            origin,
            digest: None,
            broken: None,
            limit: None,
            forum: false,
            bot: None,
        }
    }

    /// The connection as it is stored: its URL and user id sealed, bound to its id.
    pub(super) fn sealed(&self, cipher: &secrets::Cipher) -> Connection {
        let mut sealed = self.clone();
        sealed.url = cipher.seal(self.id.as_str(), &self.url);
        sealed.origin.user_object_id = self
            .origin
            .user_object_id
            .as_ref()
            .map(|u| cipher.seal(self.id.as_str(), u));
        if let Some(b) = &mut sealed.bot {
            b.token = cipher.seal(self.id.as_str(), &b.token);
        }
        sealed
    }

    /// A stored connection (JSON) with its secrets opened.
    pub(super) fn opened(
        stored: &[u8],
        cipher: &secrets::Cipher,
    ) -> Result<Connection, StoreError> {
        let mut c: Connection = serde_json::from_slice(stored)?;
        c.url = cipher.open(c.id.as_str(), &c.url)?;
        if let Some(u) = &c.origin.user_object_id {
            c.origin.user_object_id = Some(cipher.open(c.id.as_str(), u)?);
        }
        if let Some(b) = &mut c.bot {
            b.token = cipher.open(c.id.as_str(), &b.token)?;
        }
        Ok(c)
    }
}

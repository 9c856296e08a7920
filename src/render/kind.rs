//! The kinds of card a webhook URL takes, one per chat, and the largest body each takes.
//!
//! In: a kind's name (`teams`, `workflow`, `slack`, `discord`, `google_chat`, `mattermost`).
//! Out: the kind. Guarantees: every layer that renders, converts, validates or delivers a card
//! names its kind with this one type (the portable converters included), so a new chat is one
//! more variant here and the compiler lists every place that must handle it.

use serde::{Deserialize, Serialize};

/// The largest body Teams accepts, in bytes.
pub const MAX_CARD_BYTES: usize = 28 * 1024;

/// The kind of card a webhook URL takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum CardKind {
    /// A legacy Office 365 connector: MessageCard.
    Teams,
    /// A Teams Workflows webhook: Adaptive Card in a message envelope.
    Workflow,
    /// A Slack incoming webhook: Block Kit with a `text` fallback.
    Slack,
    /// A Discord webhook: embeds.
    Discord,
    /// A Google Chat incoming webhook: cardsV2 with `text`.
    GoogleChat,
    /// A Mattermost incoming webhook: Slack-style attachments.
    Mattermost,
}

impl CardKind {
    /// Every kind.
    pub const ALL: [CardKind; 6] = [
        CardKind::Teams,
        CardKind::Workflow,
        CardKind::Slack,
        CardKind::Discord,
        CardKind::GoogleChat,
        CardKind::Mattermost,
    ];

    /// The name used in files, config and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Teams => "teams",
            Self::Workflow => "workflow",
            Self::Slack => "slack",
            Self::Discord => "discord",
            Self::GoogleChat => "google_chat",
            Self::Mattermost => "mattermost",
        }
    }

    /// Parses `teams`, `workflow`, `slack`, `discord`, `google_chat` or `mattermost`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The largest body sent to this kind, in bytes: Teams' 28 KB, Google Chat's 32,000; for
    /// the others (whose limits count characters of fields, checked by
    /// [`super::validate::validate`]) a bound no valid card comes near.
    pub fn max_bytes(self) -> usize {
        match self {
            Self::Teams | Self::Workflow => MAX_CARD_BYTES,
            Self::GoogleChat => 32_000,
            Self::Slack => 40_000,
            Self::Discord => 32_000,
            Self::Mattermost => 64_000,
        }
    }

    /// Whether this is one of Teams' two kinds (MessageCard, Adaptive Card).
    pub fn is_teams(self) -> bool {
        matches!(self, Self::Teams | Self::Workflow)
    }
}

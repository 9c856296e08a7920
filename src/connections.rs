//! The connections' cache: the webhook URLs cards go to, in memory.
//!
//! In: changes from the admin API, the pages and the connect flows ([`crate::connect`]); the
//! store's connections at start and on reload. Out: an in-memory snapshot ([`Connections`])
//! that staging and delivery read without touching the store on every event, each
//! connection's counters ([`Stats`]). Guarantees: every change goes through the store first,
//! then the snapshot, under one lock; URLs are shown only masked ([`mask_url`]: scheme, host,
//! last 4 characters).

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::ids::ConnectionId;
use crate::store::{now_ms, Connection, StoreError};

/// The connections, cached in memory; every change goes through here.
pub struct Connections {
    store: crate::store::SharedStore,
    snapshot: ArcSwap<Vec<Connection>>,
    writes: Mutex<()>,
    /// Per connection: events skipped while paused, and the last delivery (Unix ms).
    stats: Mutex<std::collections::HashMap<ConnectionId, Stats>>,
}

/// What a connection's page shows besides its settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Cards not queued because the connection was paused.
    pub skipped: u64,
    /// When a card was last delivered (Unix milliseconds).
    pub last_delivery_ms: Option<u64>,
}

impl Connections {
    /// Loads the connections from the store.
    pub fn load(store: crate::store::SharedStore) -> Result<Self, StoreError> {
        let all = store.connections()?;
        let stats = store
            .last_deliveries()?
            .into_iter()
            .map(|(id, ms)| {
                (
                    id,
                    Stats {
                        skipped: 0,
                        last_delivery_ms: Some(ms),
                    },
                )
            })
            .collect();
        Ok(Self {
            store,
            snapshot: ArcSwap::from_pointee(all),
            writes: Mutex::new(()),
            stats: Mutex::new(stats),
        })
    }

    /// Reads the connections again from the store: another instance sharing it (PostgreSQL)
    /// added, changed or removed some. Under the write lock, so that a change made here
    /// meanwhile is not overwritten by an older read.
    pub fn reload(&self) -> Result<usize, StoreError> {
        let _guard = self.writes.lock().expect("connections lock");
        let all = self.store.connections()?;
        let n = all.len();
        self.snapshot.store(Arc::new(all));
        Ok(n)
    }

    /// Every connection.
    pub fn all(&self) -> Arc<Vec<Connection>> {
        self.snapshot.load_full()
    }

    /// One connection.
    pub fn get(&self, id: &ConnectionId) -> Option<Connection> {
        self.snapshot.load().iter().find(|c| &c.id == id).cloned()
    }

    /// Stores a new or changed connection.
    pub fn put(&self, c: Connection) -> Result<(), StoreError> {
        let _guard = self.writes.lock().expect("connections lock");
        self.store.put_connection(&c)?;
        let mut next: Vec<Connection> = self
            .snapshot
            .load()
            .iter()
            .filter(|x| x.id != c.id)
            .cloned()
            .collect();
        next.push(c);
        next.sort_by(|a, b| a.id.cmp(&b.id));
        self.snapshot.store(Arc::new(next));
        Ok(())
    }

    /// Changes a connection; returns it changed, or None when there is no such connection.
    pub fn update(
        &self,
        id: &ConnectionId,
        change: impl FnOnce(&mut Connection),
    ) -> Result<Option<Connection>, StoreError> {
        let Some(mut c) = self.get(id) else {
            return Ok(None);
        };
        change(&mut c);
        self.put(c.clone())?;
        Ok(Some(c))
    }

    /// Counts a card not queued because the connection is paused.
    pub fn count_skip(&self, id: &ConnectionId) {
        self.stats
            .lock()
            .expect("stats lock")
            .entry(id.clone())
            .or_default()
            .skipped += 1;
    }

    /// Notes a delivery.
    pub fn delivered(&self, id: &ConnectionId) {
        let now = now_ms();
        let previous = {
            let mut stats = self.stats.lock().expect("stats lock");
            let entry = stats.entry(id.clone()).or_default();
            entry.last_delivery_ms.replace(now)
        };
        // Written to sled at most about once a second per connection (the time is shown to
        // people, not used for delivery): a busy connection does not pay a write per card.
        if previous.is_some_and(|p| p / 1000 == now / 1000) {
            return;
        }
        if let Err(e) = self.store.set_last_delivery(id, now) {
            tracing::warn!(connection = %id, error = %crate::error::ErrorChain(&e), "cannot record the last delivery");
        }
    }

    /// A connection's counters.
    pub fn stats(&self, id: &ConnectionId) -> Stats {
        self.stats
            .lock()
            .expect("stats lock")
            .get(id)
            .copied()
            .unwrap_or_default()
    }

    /// Removes a connection and its queued cards.
    pub fn remove(&self, id: &ConnectionId) -> Result<bool, StoreError> {
        let _guard = self.writes.lock().expect("connections lock");
        let existed = self.store.remove_connection(id)?;
        self.stats.lock().expect("stats lock").remove(id);
        let next: Vec<Connection> = self
            .snapshot
            .load()
            .iter()
            .filter(|x| &x.id != id)
            .cloned()
            .collect();
        self.snapshot.store(Arc::new(next));
        Ok(existed)
    }
}

/// A webhook URL shown without its secret parts: `https://host/…abcd`.
pub fn mask_url(raw: &str) -> String {
    let tail: String = {
        let chars: Vec<char> = raw.chars().collect();
        chars[chars.len().saturating_sub(4)..].iter().collect()
    };
    match url::Url::parse(raw) {
        Ok(u) => format!("{}://{}/…{tail}", u.scheme(), u.host_str().unwrap_or("?")),
        Err(_) => format!("…{tail}"),
    }
}

/// A Mattermost bot for a connection whose webhook URL is `url` (`https://HOST[/PREFIX]/hooks/KEY`):
/// its token and the id of the channel it posts in, checked by their shape (26 lower-case
/// letters and digits, as Mattermost's ids and tokens are), and the server's REST API beside
/// the webhook (`https://HOST[/PREFIX]/api/v4/`), so that it is on a host `targets` allows
/// already. `Err` says what is wrong.
pub fn mattermost_bot(url: &str, token: &str, channel: &str) -> Result<crate::store::Bot, String> {
    let id = |s: &str| {
        s.len() == 26
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    let (token, channel) = (token.trim(), channel.trim());
    if !id(token) {
        return Err("the bot token is not a Mattermost token (26 lower-case letters and digits, from System Console → Integrations → Bot Accounts)".into());
    }
    if !id(channel) {
        return Err("the channel id is not a Mattermost id (26 lower-case letters and digits, from the channel's View Info)".into());
    }
    let parsed =
        url::Url::parse(url).map_err(|e| format!("the webhook URL does not parse: {e}"))?;
    let path = parsed.path();
    let Some(at) = path.rfind("/hooks/") else {
        return Err("the webhook URL is not a Mattermost incoming webhook (…/hooks/KEY)".into());
    };
    let mut api = parsed.clone();
    api.set_path(&format!("{}/api/v4/", &path[..at]));
    api.set_query(None);
    Ok(crate::store::Bot {
        token: token.to_string(),
        api: api.to_string(),
        channel: channel.to_string(),
    })
}

/// The kind of card a webhook URL takes, when its host says: Teams' connector hosts (a
/// MessageCard), Power Automate's (Workflows), Slack's, Discord's, Google Chat's; a
/// `/hooks/<key>` path elsewhere is Mattermost's. `None` when nothing says.
pub fn kind_of_url(url: &url::Url) -> Option<crate::render::CardKind> {
    use crate::render::CardKind;
    let host = url.host_str()?.to_ascii_lowercase();
    let path = url.path();
    if host == "outlook.office.com"
        || host == "outlook.office365.com"
        || host.ends_with(".webhook.office.com")
    {
        Some(CardKind::Teams)
    } else if host.ends_with(".logic.azure.com") || host.ends_with(".api.powerplatform.com") {
        Some(CardKind::Workflow)
    } else if host == "hooks.slack.com" {
        Some(CardKind::Slack)
    } else if (host == "discord.com" || host == "discordapp.com" || host.ends_with(".discord.com"))
        && path.starts_with("/api/webhooks/")
    {
        Some(CardKind::Discord)
    } else if host == "chat.googleapis.com" {
        Some(CardKind::GoogleChat)
    } else if path.starts_with("/hooks/") {
        Some(CardKind::Mattermost)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_urls_host_says_its_kind() {
        use crate::render::CardKind::*;
        let k = |u: &str| kind_of_url(&url::Url::parse(u).unwrap());
        assert_eq!(
            k("https://contoso.webhook.office.com/webhookb2/a/IncomingWebhook/b/c"),
            Some(Teams)
        );
        assert_eq!(k("https://prod-01.westus.logic.azure.com:443/workflows/x/triggers/manual/paths/invoke"), Some(Workflow));
        assert_eq!(
            k("https://default0.environment.api.powerplatform.com/powerautomate/x"),
            Some(Workflow)
        );
        assert_eq!(k("https://hooks.slack.com/services/T0/B0/x"), Some(Slack));
        assert_eq!(k("https://discord.com/api/webhooks/1/tok"), Some(Discord));
        assert_eq!(
            k("https://chat.googleapis.com/v1/spaces/S/messages?key=k&token=t"),
            Some(GoogleChat)
        );
        assert_eq!(
            k("https://mattermost.example.com/hooks/xyz"),
            Some(Mattermost)
        );
        assert_eq!(k("https://example.com/somewhere"), None);
    }

    use super::*;

    #[test]
    fn masking_keeps_only_scheme_host_and_tail() {
        let m = mask_url(
            "https://contoso.webhook.office.com/webhookb2/secret-part/IncomingWebhook/abcd",
        );
        assert_eq!(m, "https://contoso.webhook.office.com/…abcd");
        assert!(!m.contains("secret"));
    }

    #[test]
    fn a_mattermost_bot_uses_the_api_beside_its_webhook() {
        let token = "xu9k3m7p1q5r8s2t4v6w0y1z3a";
        let channel = "4yqrg8o1h7dm5f3k9b2n6c0e1p";
        let bot = mattermost_bot("https://mm.example.com/hooks/abc", token, channel).unwrap();
        assert_eq!(bot.api, "https://mm.example.com/api/v4/");
        assert_eq!((bot.token.as_str(), bot.channel.as_str()), (token, channel));
        let behind =
            mattermost_bot("https://example.com/chat/hooks/abc?x=1", token, channel).unwrap();
        assert_eq!(behind.api, "https://example.com/chat/api/v4/");
        assert!(
            mattermost_bot("https://mm.example.com/hooks/abc", "short", channel)
                .unwrap_err()
                .contains("bot token")
        );
        assert!(
            mattermost_bot("https://mm.example.com/hooks/abc", token, "C0SLACKLIKE")
                .unwrap_err()
                .contains("channel id")
        );
        assert!(
            mattermost_bot("https://mm.example.com/other", token, channel)
                .unwrap_err()
                .contains("incoming webhook")
        );
    }
}

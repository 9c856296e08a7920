//! Source apps: the GitHub App made for a source from a manifest, whose webhook secret
//! verifies that source's deliveries.
//!
//! In: the app GitHub's conversion answered, when the flow on /sources finishes. Out: every
//! source's app, secrets opened. Guarantees: the webhook secret, the private key and the
//! client secret are sealed at rest, bound to the source's name ([`super::secrets`]); one app
//! a source (a new one replaces the old).

use serde::{Deserialize, Serialize};

use super::{secrets, StoreError};

/// A GitHub App made from a manifest for a source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceApp {
    /// The source it sends to (`github`).
    pub source: String,
    /// The app's id.
    pub id: u64,
    /// Its slug (`cardwire-example`).
    pub slug: String,
    /// Its name.
    pub name: String,
    /// Its owner's login (a user or an organization).
    pub owner: String,
    /// Its page on GitHub.
    pub html_url: String,
    /// Its OAuth client id.
    pub client_id: String,
    /// Its OAuth client secret. A secret.
    pub client_secret: String,
    /// The secret GitHub signs its deliveries with. A secret.
    pub webhook_secret: String,
    /// Its private key (PEM). A secret.
    pub pem: String,
    /// When it was made (Unix milliseconds).
    pub created_ms: u64,
    /// Where it is installed, as its `installation` events said.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub installations: Vec<Installation>,
}

/// One installation of a source's app: on an account, for some or all of its repositories.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installation {
    /// Its id.
    pub id: u64,
    /// The account it is installed on.
    pub account: String,
    /// `all`, or `selected` (then `repositories` names them).
    pub selection: String,
    /// The repositories it reaches, when selected.
    #[serde(default)]
    pub repositories: Vec<String>,
    /// When it last changed (Unix milliseconds).
    pub at_ms: u64,
    /// Whether it was removed (kept, shown as removed).
    #[serde(default)]
    pub removed: bool,
}

impl SourceApp {
    /// The app as it is stored: its secrets sealed, bound to its source.
    pub(super) fn sealed(&self, cipher: &secrets::Cipher) -> SourceApp {
        let seal = |s: &str| cipher.seal(&self.source, s);
        SourceApp {
            client_secret: seal(&self.client_secret),
            webhook_secret: seal(&self.webhook_secret),
            pem: seal(&self.pem),
            ..self.clone()
        }
    }

    /// A stored app (JSON) with its secrets opened.
    pub(super) fn opened(stored: &[u8], cipher: &secrets::Cipher) -> Result<SourceApp, StoreError> {
        let mut a: SourceApp = serde_json::from_slice(stored)?;
        a.client_secret = cipher.open(&a.source, &a.client_secret)?;
        a.webhook_secret = cipher.open(&a.source, &a.webhook_secret)?;
        a.pem = cipher.open(&a.source, &a.pem)?;
        Ok(a)
    }
}

/// The apps made for sources.
pub trait SourceApps {
    /// Keeps a source's app (replacing one made before for it), its secrets sealed.
    fn put_source_app(&self, app: &SourceApp) -> Result<(), StoreError>;

    /// Every source's app, secrets opened.
    fn source_apps(&self) -> Result<Vec<SourceApp>, StoreError>;
}

impl SourceApp {
    /// What an `installation` or `installation_repositories` event says of the app's
    /// installations, applied: an installation created, its repositories added or removed,
    /// suspended or deleted (kept, marked removed). Whether it changed anything.
    pub fn apply_installation(
        &mut self,
        event: &str,
        payload: &serde_json::Value,
        now_ms: u64,
    ) -> bool {
        if !matches!(event, "installation" | "installation_repositories") {
            return false;
        }
        let Some(id) = payload
            .pointer("/installation/id")
            .and_then(serde_json::Value::as_u64)
        else {
            return false;
        };
        let action = payload["action"].as_str().unwrap_or_default();
        let names = |k: &str| -> Vec<String> {
            payload[k]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["full_name"].as_str().map(str::to_string))
                .collect()
        };
        let at = match self.installations.iter().position(|i| i.id == id) {
            Some(at) => at,
            None => {
                self.installations.push(Installation {
                    id,
                    account: payload
                        .pointer("/installation/account/login")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or("?")
                        .to_string(),
                    selection: String::new(),
                    repositories: Vec::new(),
                    at_ms: now_ms,
                    removed: false,
                });
                self.installations.len() - 1
            }
        };
        let inst = &mut self.installations[at];
        if let Some(s) = payload
            .pointer("/installation/repository_selection")
            .and_then(serde_json::Value::as_str)
        {
            inst.selection = s.to_string();
        }
        match (event, action) {
            ("installation", "created" | "new_permissions_accepted" | "unsuspend") => {
                inst.removed = false;
                let repos = names("repositories");
                if !repos.is_empty() {
                    inst.repositories = repos;
                }
            }
            ("installation", "deleted" | "suspend") => inst.removed = true,
            ("installation_repositories", "added" | "removed") => {
                for r in names("repositories_added") {
                    if !inst.repositories.contains(&r) {
                        inst.repositories.push(r);
                    }
                }
                let gone = names("repositories_removed");
                inst.repositories.retain(|r| !gone.contains(r));
            }
            _ => return false,
        }
        inst.at_ms = now_ms;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn installations_follow_their_events() {
        let mut app = SourceApp {
            source: "github".into(),
            id: 1,
            slug: "s".into(),
            name: "n".into(),
            owner: "o".into(),
            html_url: "https://github.com/apps/s".into(),
            client_id: "c".into(),
            client_secret: "cs".into(),
            webhook_secret: "ws".into(),
            pem: "p".into(),
            created_ms: 1,
            installations: Vec::new(),
        };
        // The shapes of @octokit/webhooks-examples' installation events.
        let created = json!({"action": "created", "installation": {"id": 2, "account": {"login": "octo-org"},
            "repository_selection": "selected"}, "repositories": [{"full_name": "octo-org/octo-repo"}]});
        assert!(app.apply_installation("installation", &created, 10));
        let added = json!({"action": "added", "installation": {"id": 2, "repository_selection": "selected"},
            "repositories_added": [{"full_name": "octo-org/other"}], "repositories_removed": []});
        assert!(app.apply_installation("installation_repositories", &added, 11));
        let removed = json!({"action": "removed", "installation": {"id": 2},
            "repositories_added": [], "repositories_removed": [{"full_name": "octo-org/octo-repo"}]});
        assert!(app.apply_installation("installation_repositories", &removed, 12));
        assert_eq!(app.installations.len(), 1);
        let i = &app.installations[0];
        assert_eq!(
            (i.account.as_str(), i.selection.as_str()),
            ("octo-org", "selected")
        );
        assert_eq!(i.repositories, vec!["octo-org/other".to_string()]);
        assert!(!i.removed);
        let deleted = json!({"action": "deleted", "installation": {"id": 2}});
        assert!(app.apply_installation("installation", &deleted, 13));
        assert!(app.installations[0].removed, "kept, shown as removed");
        assert!(!app.apply_installation("push", &deleted, 14));
        assert!(!app.apply_installation("installation", &json!({"action": "created"}), 14));
    }
}

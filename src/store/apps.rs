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

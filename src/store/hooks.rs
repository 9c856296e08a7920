//! Source hooks: the GitLab project hooks made for a source with an access token, whose
//! tokens verify that source's deliveries.
//!
//! In: each hook GitLab answered, as the flow on /sources makes it. Out: every source's
//! hooks, secrets opened. Guarantees: the hook's token (GitLab sends it back as
//! `X-Gitlab-Token`) and the access token, when the user asked to keep it, are sealed at rest,
//! bound to the source's name ([`super::secrets`]); a hook is one record (source, GitLab,
//! hook id), kept as soon as GitLab made it.

use serde::{Deserialize, Serialize};

use super::{secrets, StoreError};

/// A GitLab project hook made for a source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceHook {
    /// The source it sends to (`gitlab`).
    pub source: String,
    /// The GitLab it is on (`https://gitlab.com`).
    pub gitlab_url: String,
    /// The project's path (`group/project`).
    pub project: String,
    /// The project's id.
    pub project_id: u64,
    /// The hook's id.
    pub hook_id: u64,
    /// The events it sends (GitLab's flags: `push_events`, …).
    pub events: Vec<String>,
    /// The token GitLab sends with each delivery. A secret.
    pub token: String,
    /// The access token, kept to remove the hook later when the user asked. A secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_token: Option<String>,
    /// When it was made (Unix milliseconds).
    pub created_ms: u64,
}

impl SourceHook {
    /// The hook as it is stored: its secrets sealed, bound to its source.
    pub(super) fn sealed(&self, cipher: &secrets::Cipher) -> SourceHook {
        SourceHook {
            token: cipher.seal(&self.source, &self.token),
            api_token: self
                .api_token
                .as_deref()
                .map(|t| cipher.seal(&self.source, t)),
            ..self.clone()
        }
    }

    /// A stored hook (JSON) with its secrets opened.
    pub(super) fn opened(
        stored: &[u8],
        cipher: &secrets::Cipher,
    ) -> Result<SourceHook, StoreError> {
        let mut h: SourceHook = serde_json::from_slice(stored)?;
        h.token = cipher.open(&h.source, &h.token)?;
        h.api_token = match h.api_token {
            Some(t) => Some(cipher.open(&h.source, &t)?),
            None => None,
        };
        Ok(h)
    }

    /// Its key among a source's hooks: the GitLab and the hook's id.
    pub fn key(&self) -> String {
        hook_key(&self.source, &self.gitlab_url, self.hook_id)
    }
}

/// The key of hook `hook_id` on `gitlab_url` for `source`.
pub fn hook_key(source: &str, gitlab_url: &str, hook_id: u64) -> String {
    format!("{source}\n{gitlab_url}\n{hook_id:020}")
}

/// The hooks made for sources.
pub trait SourceHooks {
    /// Keeps a hook (replacing the record of the same source, GitLab and id), its secrets
    /// sealed.
    fn put_source_hook(&self, hook: &SourceHook) -> Result<(), StoreError>;

    /// Every source's hooks, secrets opened, by source, GitLab and id.
    fn source_hooks(&self) -> Result<Vec<SourceHook>, StoreError>;

    /// Forgets a hook; whether it was kept.
    fn remove_source_hook(&self, key: &str) -> Result<bool, StoreError>;
}

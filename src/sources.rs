//! What /sources made for sources, in memory: the GitHub App whose webhook secret verifies a
//! GitHub source's deliveries, and the GitLab hooks whose tokens verify a GitLab source's,
//! when the source's config gives no secret.
//!
//! In: the store's apps and hooks at start; an app or a hook the /sources flows made or
//! removed. Out: a source's app secret; whether a GitLab token is one of its hooks'.
//! Guarantees: an app or a hook is in the store before it is here (a crash loses none that
//! verified a delivery); a lookup takes no lock; another instance's new app or hook is read from
//! the store at most once a second, when a delivery's signature or token does not match what is
//! here; tokens are compared in constant time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use arc_swap::ArcSwap;

use subtle::ConstantTimeEq;

use crate::store::{SharedStore, SourceApp, SourceHook, StoreError};

/// The secrets by source, as the store had them.
#[derive(Default)]
struct Known {
    /// The GitHub App's webhook secret.
    apps: HashMap<String, Arc<str>>,
    /// The GitLab hooks' tokens.
    hooks: HashMap<String, Vec<Arc<str>>>,
}

/// The app secrets and hook tokens by source.
pub struct SourceSecrets {
    store: SharedStore,
    secrets: ArcSwap<Known>,
    /// When the store was last read again (store clock, ms).
    read_ms: AtomicU64,
}

impl SourceSecrets {
    /// The apps the store holds.
    pub fn load(store: SharedStore) -> Result<Self, StoreError> {
        let this = Self {
            secrets: ArcSwap::from_pointee(Known::default()),
            // The first miss reads the store again whenever it comes.
            read_ms: AtomicU64::new(0),
            store,
        };
        this.read()?;
        Ok(this)
    }

    fn read(&self) -> Result<(), StoreError> {
        let apps = self
            .store
            .source_apps()?
            .into_iter()
            .map(|a| (a.source, Arc::from(a.webhook_secret)))
            .collect();
        let mut hooks: HashMap<String, Vec<Arc<str>>> = HashMap::new();
        for h in self.store.source_hooks()? {
            hooks.entry(h.source).or_default().push(Arc::from(h.token));
        }
        self.secrets.store(Arc::new(Known { apps, hooks }));
        Ok(())
    }

    /// The webhook secret of `source`'s app, if one was made.
    pub fn get(&self, source: &str) -> Option<Arc<str>> {
        self.secrets.load().apps.get(source).cloned()
    }

    /// Whether `given` (a delivery's `X-Gitlab-Token`) is the token of one of `source`'s
    /// hooks: `None` when no hook is made for it.
    pub fn hook_token(&self, source: &str, given: &str) -> Option<bool> {
        let known = self.secrets.load();
        let tokens = known.hooks.get(source).filter(|t| !t.is_empty())?;
        // Every token compared, in constant time each.
        Some(tokens.iter().fold(false, |hit, t| {
            hit | bool::from(t.as_bytes().ct_eq(given.as_bytes()))
        }))
    }

    /// Reads the store again (an app another instance made), at most once a second; whether
    /// it did.
    pub fn refresh(&self) -> bool {
        let now = self.store.now_ms();
        let last = self.read_ms.load(Relaxed);
        if now.saturating_sub(last) < 1_000
            || self
                .read_ms
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_err()
        {
            return false;
        }
        match self.read() {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %crate::error::ErrorChain(&e), "cannot read the sources' apps");
                false
            }
        }
    }

    /// Keeps a new app: in the store first, then here.
    pub fn put(&self, app: &SourceApp) -> Result<(), StoreError> {
        self.store.put_source_app(app)?;
        self.secrets.rcu(|known| {
            let mut apps = known.apps.clone();
            apps.insert(app.source.clone(), Arc::from(app.webhook_secret.as_str()));
            Known {
                apps,
                hooks: known.hooks.clone(),
            }
        });
        Ok(())
    }

    /// Keeps a new hook: in the store first, then here.
    pub fn put_hook(&self, hook: &SourceHook) -> Result<(), StoreError> {
        self.store.put_source_hook(hook)?;
        self.secrets.rcu(|known| {
            let mut hooks = known.hooks.clone();
            hooks
                .entry(hook.source.clone())
                .or_default()
                .push(Arc::from(hook.token.as_str()));
            Known {
                apps: known.apps.clone(),
                hooks,
            }
        });
        Ok(())
    }

    /// Forgets a hook (its token no longer verifies anything); whether it was kept.
    pub fn remove_hook(&self, key: &str) -> Result<bool, StoreError> {
        let removed = self.store.remove_source_hook(key)?;
        self.read()?;
        Ok(removed)
    }

    /// Every source's hooks, as the store has them.
    pub fn hooks(&self) -> Result<Vec<SourceHook>, StoreError> {
        self.store.source_hooks()
    }

    /// Applies an `installation` or `installation_repositories` event to `source`'s app
    /// ([`SourceApp::apply_installation`] decides); whether it changed it.
    pub fn note_installation(
        &self,
        source: &str,
        event: &str,
        payload: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        let Some(mut app) = self
            .store
            .source_apps()?
            .into_iter()
            .find(|a| a.source == source)
        else {
            return Ok(false);
        };
        if !app.apply_installation(event, payload, self.store.now_ms()) {
            return Ok(false);
        }
        self.store.put_source_app(&app)?;
        Ok(true)
    }

    /// Every source's app, as the store has it.
    pub fn apps(&self) -> Result<Vec<SourceApp>, StoreError> {
        self.store.source_apps()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(source: &str, id: u64, token: &str) -> SourceHook {
        SourceHook {
            source: source.into(),
            gitlab_url: "https://gitlab.example".into(),
            project: format!("g/p{id}"),
            project_id: id,
            hook_id: id,
            events: vec!["push_events".into()],
            token: token.into(),
            api_token: None,
            created_ms: 1,
        }
    }

    #[tokio::test]
    async fn a_gitlab_token_is_one_of_its_sources_hooks_or_none() {
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore = crate::store::Store::open(dir.path(), None).unwrap();
        let secrets = SourceSecrets::load(store).unwrap();
        assert_eq!(secrets.hook_token("gitlab", "t1"), None, "no hook yet");
        secrets.put_hook(&hook("gitlab", 1, "t1")).unwrap();
        secrets.put_hook(&hook("gitlab", 2, "t2")).unwrap();
        secrets.put_hook(&hook("other", 3, "t3")).unwrap();
        assert_eq!(secrets.hook_token("gitlab", "t1"), Some(true));
        assert_eq!(secrets.hook_token("gitlab", "t2"), Some(true));
        assert_eq!(
            secrets.hook_token("gitlab", "t3"),
            Some(false),
            "another source's"
        );
        assert_eq!(secrets.hook_token("gitlab", ""), Some(false));
        assert!(secrets.remove_hook(&hook("gitlab", 1, "").key()).unwrap());
        assert_eq!(
            secrets.hook_token("gitlab", "t1"),
            Some(false),
            "removed: no longer good"
        );
        assert!(secrets.remove_hook(&hook("gitlab", 2, "").key()).unwrap());
        assert_eq!(secrets.hook_token("gitlab", "t2"), None, "none left");
    }
}

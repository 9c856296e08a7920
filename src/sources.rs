//! The GitHub Apps made for sources, in memory: the webhook secret each source's deliveries
//! are verified with when its config gives none.
//!
//! In: the store's apps at start; an app the /sources flow made. Out: a source's app secret.
//! Guarantees: an app is in the store before it is here (a crash loses none that verified a
//! delivery); a lookup takes no lock; another instance's new app is read from the store at most
//! once a second, when a delivery's signature does not match what is here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::store::{SharedStore, SourceApp, StoreError};

/// The app secrets by source.
pub struct AppSecrets {
    store: SharedStore,
    secrets: ArcSwap<HashMap<String, Arc<str>>>,
    /// When the store was last read again (store clock, ms).
    read_ms: AtomicU64,
}

impl AppSecrets {
    /// The apps the store holds.
    pub fn load(store: SharedStore) -> Result<Self, StoreError> {
        let this = Self {
            secrets: ArcSwap::from_pointee(HashMap::new()),
            // The first miss reads the store again whenever it comes.
            read_ms: AtomicU64::new(0),
            store,
        };
        this.read()?;
        Ok(this)
    }

    fn read(&self) -> Result<(), StoreError> {
        let map = self
            .store
            .source_apps()?
            .into_iter()
            .map(|a| (a.source, Arc::from(a.webhook_secret)))
            .collect();
        self.secrets.store(Arc::new(map));
        Ok(())
    }

    /// The webhook secret of `source`'s app, if one was made.
    pub fn get(&self, source: &str) -> Option<Arc<str>> {
        self.secrets.load().get(source).cloned()
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
        let mut map = HashMap::clone(&self.secrets.load());
        map.insert(app.source.clone(), Arc::from(app.webhook_secret.as_str()));
        self.secrets.store(Arc::new(map));
        Ok(())
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

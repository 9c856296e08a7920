//! Source hooks on sled: the `source_hooks` tree, keyed by [`crate::store::hooks::hook_key`].

use super::*;
use crate::store::{SourceHook, SourceHooks};

impl SourceHooks for Store {
    fn put_source_hook(&self, hook: &SourceHook) -> Result<(), StoreError> {
        self.hooks.insert(
            hook.key().as_bytes(),
            serde_json::to_vec(&hook.sealed(&self.cipher))?,
        )?;
        Ok(())
    }

    fn source_hooks(&self) -> Result<Vec<SourceHook>, StoreError> {
        self.hooks
            .iter()
            .values()
            .map(|v| SourceHook::opened(&v?, &self.cipher))
            .collect()
    }

    fn remove_source_hook(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.hooks.remove(key.as_bytes())?.is_some())
    }
}

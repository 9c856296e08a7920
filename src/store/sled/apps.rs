//! Source apps on sled: the `source_apps` tree, keyed by the source's name.

use super::*;
use crate::store::{SourceApp, SourceApps};

impl SourceApps for Store {
    fn put_source_app(&self, app: &SourceApp) -> Result<(), StoreError> {
        self.apps.insert(
            app.source.as_bytes(),
            serde_json::to_vec(&app.sealed(&self.cipher))?,
        )?;
        Ok(())
    }

    fn source_apps(&self) -> Result<Vec<SourceApp>, StoreError> {
        self.apps
            .iter()
            .values()
            .map(|v| SourceApp::opened(&v?, &self.cipher))
            .collect()
    }
}

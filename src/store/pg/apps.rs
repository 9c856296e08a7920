//! Source apps on PostgreSQL: a row of `source_apps` per source, seen by every instance.

use super::rows::json;
use super::PgStore;
use crate::store::{SourceApp, SourceApps, StoreError};

impl SourceApps for PgStore {
    fn put_source_app(&self, app: &SourceApp) -> Result<(), StoreError> {
        let (source, record) = (app.source.clone(), json(&app.sealed(&self.cipher))?);
        self.pool.run(move |db| {
            db.execute(
                "INSERT INTO source_apps (source, record) VALUES ($1, $2)
                 ON CONFLICT (source) DO UPDATE SET record = EXCLUDED.record",
                &[&source, &record],
            )
            .map(drop)
        })
    }

    fn source_apps(&self) -> Result<Vec<SourceApp>, StoreError> {
        let rows: Vec<String> = self.pool.run(|db| {
            Ok(db
                .query("SELECT record FROM source_apps ORDER BY source", &[])?
                .iter()
                .map(|r| r.get(0))
                .collect())
        })?;
        rows.iter()
            .map(|r| SourceApp::opened(r.as_bytes(), &self.cipher))
            .collect()
    }
}

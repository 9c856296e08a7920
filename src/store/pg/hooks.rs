//! Source hooks on PostgreSQL: a row of `source_hooks` per hook, seen by every instance.

use super::rows::json;
use super::PgStore;
use crate::store::{SourceHook, SourceHooks, StoreError};

impl SourceHooks for PgStore {
    fn put_source_hook(&self, hook: &SourceHook) -> Result<(), StoreError> {
        let (key, record) = (hook.key(), json(&hook.sealed(&self.cipher))?);
        self.pool.run(move |db| {
            db.execute(
                "INSERT INTO source_hooks (key, record) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET record = EXCLUDED.record",
                &[&key, &record],
            )
            .map(drop)
        })
    }

    fn source_hooks(&self) -> Result<Vec<SourceHook>, StoreError> {
        let rows: Vec<String> = self.pool.run(|db| {
            Ok(db
                .query("SELECT record FROM source_hooks ORDER BY key", &[])?
                .iter()
                .map(|r| r.get(0))
                .collect())
        })?;
        rows.iter()
            .map(|r| SourceHook::opened(r.as_bytes(), &self.cipher))
            .collect()
    }

    fn remove_source_hook(&self, key: &str) -> Result<bool, StoreError> {
        let key = key.to_string();
        self.pool
            .run(move |db| Ok(db.execute("DELETE FROM source_hooks WHERE key = $1", &[&key])? > 0))
    }
}

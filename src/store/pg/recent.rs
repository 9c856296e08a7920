//! The playground's ring of recent events on PostgreSQL.

use serde_json::Value;

use super::rows::*;
use super::PgStore;
use crate::store::recent::{RecentEvent, RecentEvents};
use crate::store::StoreError;

impl PgStore {
    /// Writes the recent events kept in memory, in one statement, and drops the ring's oldest.
    pub(super) fn save_recent(&self) -> Result<(), StoreError> {
        let pending: Vec<RecentEvent> = {
            let mut recent = self.recent.lock().expect("recent lock");
            recent.0 = std::time::Instant::now();
            recent.1.drain(..).collect()
        };
        if pending.is_empty() {
            return Ok(());
        }
        let records: Vec<String> = pending
            .iter()
            .map(|e| json(&e.to_json()))
            .collect::<Result<_, _>>()?;
        let keep = crate::store::recent::RECENT as i64;
        self.pool.run(move |db| {
            db.execute(
                "INSERT INTO recent_events (record)
                 SELECT r FROM unnest($1::text[]) WITH ORDINALITY AS t(r, n) ORDER BY n",
                &[&records],
            )?;
            db.execute(
                "DELETE FROM recent_events WHERE seq <= (
                     SELECT seq FROM recent_events ORDER BY seq DESC OFFSET $1 LIMIT 1)",
                &[&keep],
            )?;
            Ok(())
        })
    }
}

impl RecentEvents for PgStore {
    fn put_recent(&self, event: RecentEvent) {
        let due = {
            let mut recent = self.recent.lock().expect("recent lock");
            recent.1.push_back(event);
            while recent.1.len() > crate::store::recent::RECENT {
                recent.1.pop_front();
            }
            recent.0.elapsed() >= std::time::Duration::from_secs(1)
        };
        // The playground's ring is not state that an event's acceptance depends on: a failure
        // here is logged, never an error for the upstream.
        if due {
            if let Err(e) = self.save_recent() {
                tracing::warn!(error = %crate::error::ErrorChain(&e), "cannot keep the recent events");
            }
        }
    }

    fn recent(&self) -> Result<Vec<Value>, StoreError> {
        self.save_recent()?;
        let keep = crate::store::recent::RECENT as i64;
        let rows: Vec<String> = self.pool.run(move |db| {
            Ok(db
                .query(
                    "SELECT record FROM recent_events ORDER BY seq DESC LIMIT $1",
                    &[&keep],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect())
        })?;
        rows.iter().map(|r| decode(r)).collect()
    }
}

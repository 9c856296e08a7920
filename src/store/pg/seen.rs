//! Upstream delivery ids on PostgreSQL: a claim is a row, unique across instances.

use super::rows::*;
use super::{ms, PgStore};
use crate::ids::EventId;
use crate::store::{SeenIds, StoreError};

/// Claims an upstream delivery id; the event it had when it was claimed before.
pub(super) fn claim_in(
    c: &mut impl postgres::GenericClient,
    key: &str,
    event: &str,
    claimed_ms: i64,
) -> Result<Option<String>, postgres::Error> {
    let inserted = c.query_opt(
        "INSERT INTO seen (key, event, claimed_ms) VALUES ($1, $2, $3)
         ON CONFLICT (key) DO NOTHING RETURNING key",
        &[&key, &event, &claimed_ms],
    )?;
    if inserted.is_some() {
        return Ok(None);
    }
    Ok(
        c.query_opt("SELECT event FROM seen WHERE key = $1", &[&key])?
            .map(|r| r.get(0)),
    )
}

impl SeenIds for PgStore {
    fn claim_delivery(&self, key: &str, event: &EventId) -> Result<Option<EventId>, StoreError> {
        let (key, ev, at) = (
            key.to_string(),
            event.as_str().to_string(),
            ms(event_ms(event)),
        );
        let first = self.pool.run(move |db| claim_in(db, &key, &ev, at))?;
        Ok(first.and_then(|f| EventId::parse(&f)))
    }

    fn reserve_delivery(&self, key: &str, event: &EventId) -> Result<Option<EventId>, StoreError> {
        // No read of the claims here: a round trip an event for what is rare. A delivery
        // claimed before is found by the claim itself, in the statement that would queue its
        // cards (`enqueue_event` answers with the first event and queues nothing); this
        // process's events being staged are found here.
        Ok(crate::store::seen::reserve(&self.staging, key, event))
    }

    fn release_delivery(&self, key: &str) -> Result<(), StoreError> {
        self.staging.lock().expect("staging lock").remove(key);
        let key = key.to_string();
        self.pool.run(move |db| {
            db.execute("DELETE FROM seen WHERE key = $1", &[&key])
                .map(drop)
        })
    }

    fn prune_seen(&self, keep: std::time::Duration) -> Result<usize, StoreError> {
        let cutoff = ms(self.clock.now_ms().saturating_sub(keep.as_millis() as u64));
        self.pool.run(move |db| {
            let n = db.execute("DELETE FROM seen WHERE claimed_ms < $1", &[&cutoff])?;
            // A limit whose arrival time has passed is as good as none.
            db.execute("DELETE FROM limits WHERE tat_ms < cardwire_now_ms()", &[])?;
            Ok(n as usize)
        })
    }
}

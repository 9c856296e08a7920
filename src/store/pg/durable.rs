//! Durability on PostgreSQL: each call commits its own statement or transaction.

use super::PgStore;
use crate::store::{Counts, Durable, StoreError};

impl Durable for PgStore {
    fn commit(&self) -> crate::store::Commit {
        // Every write committed before its call returned.
        Box::pin(std::future::ready(Ok(())))
    }

    fn flush(&self) -> Result<(), StoreError> {
        // Every card is committed but the delivered ones not yet recorded, and the
        // playground's ring.
        self.record_done()?;
        self.save_recent()?;
        // A clean stop: the other instances take this one's connections at once.
        self.let_go_all()
    }

    fn counts(&self) -> Counts {
        self.cached_counts()
    }

    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    fn blocking(&self) -> bool {
        true
    }

    fn wakeups(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<crate::store::Wake>> {
        self.wakeups.lock().expect("wakeups lock").take()
    }

    fn health(&self) -> Result<(), StoreError> {
        self.pool.run(|db| db.simple_query("SELECT 1").map(drop))
    }
}

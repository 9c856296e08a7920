//! The playground's ring of recent events, as sled's store keeps it ([`super::ring`]).

use serde_json::Value;

use super::Store;
use crate::store::recent::{RecentEvent, RecentEvents};
use crate::store::StoreError;

impl RecentEvents for Store {
    fn put_recent(&self, event: RecentEvent) {
        self.ring.push(event);
    }

    fn recent(&self) -> Result<Vec<Value>, StoreError> {
        Ok(self.ring.all())
    }
}

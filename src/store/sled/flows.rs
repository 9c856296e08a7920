//! The connect flows' states on sled.

use super::*;

impl FlowStates for Store {
    fn put_flow_state(&self, state: &str, record: &FlowState) -> Result<(), StoreError> {
        self.flows.insert(state, serde_json::to_vec(record)?)?;
        // States are short-lived: drop those older than an hour while we are here.
        let cutoff = self.clock.now_ms().saturating_sub(3_600_000);
        for kv in self.flows.iter() {
            let (k, v) = kv?;
            if serde_json::from_slice::<FlowState>(&v).map_or(true, |r| r.created_ms < cutoff) {
                self.flows.remove(k)?;
            }
        }
        Ok(())
    }

    fn flow_state(&self, state: &str) -> Result<Option<FlowState>, StoreError> {
        self.flows.get(state)?.map(|v| decode(&v)).transpose()
    }

    fn take_flow_state(&self, state: &str) -> Result<Option<FlowState>, StoreError> {
        self.flows.remove(state)?.map(|v| decode(&v)).transpose()
    }
}

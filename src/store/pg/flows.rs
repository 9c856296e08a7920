//! The connect flows' states on PostgreSQL.

use super::rows::*;
use super::{ms, PgStore};
use crate::store::{FlowState, FlowStates, StoreError};

impl FlowStates for PgStore {
    fn put_flow_state(&self, state: &str, record: &FlowState) -> Result<(), StoreError> {
        let (state, created, record) = (state.to_string(), ms(record.created_ms), json(record)?);
        // States are short-lived: those older than an hour go while we are here.
        let cutoff = ms(self.clock.now_ms().saturating_sub(3_600_000));
        self.pool.run(move |db| {
            db.execute(
                "INSERT INTO flow_states (state, record, created_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (state) DO UPDATE SET record = EXCLUDED.record,
                     created_ms = EXCLUDED.created_ms",
                &[&state, &record, &created],
            )?;
            db.execute("DELETE FROM flow_states WHERE created_ms < $1", &[&cutoff])?;
            Ok(())
        })
    }

    fn flow_state(&self, state: &str) -> Result<Option<FlowState>, StoreError> {
        let state = state.to_string();
        let row: Option<String> = self.pool.run(move |db| {
            Ok(db
                .query_opt("SELECT record FROM flow_states WHERE state = $1", &[&state])?
                .map(|r| r.get(0)))
        })?;
        row.map(|r| decode(&r)).transpose()
    }

    fn take_flow_state(&self, state: &str) -> Result<Option<FlowState>, StoreError> {
        let state = state.to_string();
        // One statement: of two instances taking the same state, one gets the row.
        let row: Option<String> = self.pool.run(move |db| {
            Ok(db
                .query_opt(
                    "DELETE FROM flow_states WHERE state = $1 RETURNING record",
                    &[&state],
                )?
                .map(|r| r.get(0)))
        })?;
        row.map(|r| decode(&r)).transpose()
    }
}

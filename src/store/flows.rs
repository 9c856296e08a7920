//! The Connect flows' states: what a browser chose before it left for the provider's consent
//! page.
//!
//! In: a state when a flow starts; out: the same state once, when its callback comes.
//! Guarantees: a state is taken at most once (single use).

use serde::{Deserialize, Serialize};

use serde_json::Value;

use super::StoreError;

/// What is kept server side under a state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlowState {
    /// SHA-256 of the browser's cookie.
    pub browser: String,
    /// The channels chosen (empty: all).
    pub channels: Vec<String>,
    /// The digest chosen, if any.
    pub digest: Option<Value>,
    /// When the flow started (Unix milliseconds).
    pub created_ms: u64,
    /// The flow it belongs to: `slack`, `discord`, or none for Office 365 (a state is good
    /// only at its own flow's callback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
}

/// The states of Connect flows in progress.
pub trait FlowStates {
    /// Keeps a flow's state (its choices and browser binding) under `state`.
    fn put_flow_state(&self, state: &str, record: &FlowState) -> Result<(), StoreError>;

    /// A flow's state, without consuming it.
    fn flow_state(&self, state: &str) -> Result<Option<FlowState>, StoreError>;

    /// Consumes a flow's state: only the first caller gets it.
    fn take_flow_state(&self, state: &str) -> Result<Option<FlowState>, StoreError>;
}

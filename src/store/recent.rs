//! The playground's ring of recently received events.
//!
//! Kept in memory and written to sled in the background (at most once a second, and at
//! shutdown), slot `n % keep` for the `n`th event: receiving an event costs a lock and a push,
//! not a ~9 KB write and its serialization on the request's path. The ring is a convenience
//! for people, not part of any delivery guarantee: a crash (kill -9) can lose its last second.

/// How many received events the ring keeps.
pub const RECENT: usize = 50;

use serde::Serialize;
use serde_json::Value;

use super::StoreError;
use crate::ids::EventId;

/// The payload as it arrived: the request's bytes when ingest has them (no copy, no
/// serialization until the ring is written), or a parsed value.
#[derive(Debug, Clone)]
pub enum RecentPayload {
    /// The body (or NDJSON line) exactly as received; it parsed as JSON on the way in.
    Raw(bytes::Bytes),
    /// A parsed payload.
    Value(Value),
}

/// One event in the ring.
#[derive(Debug, Clone)]
pub struct RecentEvent {
    /// Its id.
    pub id: EventId,
    /// The source's name.
    pub source: String,
    /// The event type.
    pub event: String,
    /// Request headers without credentials (`Event::new` dropped them).
    pub headers: Vec<(String, String)>,
    /// The payload.
    pub payload: RecentPayload,
    /// When it was received (Unix milliseconds).
    pub received_ms: u64,
}

/// How the ring's events are written and answered.
#[derive(Serialize)]
struct Shown<'a> {
    id: &'a EventId,
    source: &'a str,
    event: &'a str,
    headers: std::collections::BTreeMap<&'a str, &'a str>,
    payload: Value,
    received_ms: u64,
}

impl RecentEvent {
    /// The event as JSON (`id`, `source`, `event`, `headers`, `payload`, `received_ms`).
    pub fn to_json(&self) -> Value {
        let payload = match &self.payload {
            RecentPayload::Raw(b) => serde_json::from_slice(b).unwrap_or(Value::Null),
            RecentPayload::Value(v) => v.clone(),
        };
        serde_json::to_value(Shown {
            id: &self.id,
            source: &self.source,
            event: &self.event,
            headers: self
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            payload,
            received_ms: self.received_ms,
        })
        .unwrap_or(Value::Null)
    }
}

/// The playground's ring of recent events.
pub trait RecentEvents {
    /// Keeps an event in the ring of the last [`RECENT`] received (in
    /// memory; written to sled within a second, see this module).
    fn put_recent(&self, event: RecentEvent);

    /// The events in the ring, newest first.
    fn recent(&self) -> Result<Vec<Value>, StoreError>;
}

//! The playground's ring of recently received events, on sled.
//!
//! Kept in memory and written to sled in the background (at most once a second, and at
//! shutdown), slot `n % keep` for the `n`th event: receiving an event costs a lock and a push,
//! not a ~9 KB write and its serialization on the request's path. The ring is a convenience
//! for people, not part of any delivery guarantee: a crash (kill -9) can lose its last second.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde_json::Value;

use crate::store::recent::RecentEvent;
use crate::store::{decode, StoreError};

/// The ring: newest last, each with its sequence number, and the tree it is written to (until
/// [`Ring::close`]: the task that saves it every second holds the ring, never the database, so
/// dropping the store releases the data directory at once).
pub struct Ring {
    keep: usize,
    inner: Mutex<Inner>,
    tree: Mutex<Option<sled::Tree>>,
}

struct Inner {
    events: VecDeque<(u64, Entry)>,
    next_seq: u64,
    /// Events with a sequence number from here on are not in sled yet.
    unsaved_from: u64,
}

#[derive(Clone)]
enum Entry {
    New(Box<RecentEvent>),
    /// Loaded from sled at start.
    Stored(Value),
}

impl Ring {
    /// The ring as sled holds it (`tree`: slot → sequence ‖ JSON).
    pub(super) fn load(tree: sled::Tree, keep: usize) -> Result<Self, StoreError> {
        let mut events = Vec::new();
        for kv in tree.iter() {
            let (_, v) = kv?;
            if v.len() < 8 {
                continue;
            }
            let seq = u64::from_be_bytes(v[..8].try_into().expect("8 bytes"));
            events.push((seq, Entry::Stored(decode::<Value>(&v[8..])?)));
        }
        events.sort_by_key(|e| e.0);
        let next_seq = events.last().map_or(0, |e| e.0 + 1);
        Ok(Self {
            keep: keep.max(1),
            inner: Mutex::new(Inner {
                events: events.into(),
                next_seq,
                unsaved_from: next_seq,
            }),
            tree: Mutex::new(Some(tree)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("recent ring lock")
    }

    pub(super) fn push(&self, event: RecentEvent) {
        let mut inner = self.lock();
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.events.push_back((seq, Entry::New(Box::new(event))));
        while inner.events.len() > self.keep {
            inner.events.pop_front();
        }
    }

    /// Newest first.
    pub(super) fn all(&self) -> Vec<Value> {
        let events: Vec<Entry> = self.lock().events.iter().map(|e| e.1.clone()).collect();
        events
            .into_iter()
            .rev()
            .map(|e| match e {
                Entry::New(e) => e.to_json(),
                Entry::Stored(v) => v,
            })
            .collect()
    }

    /// Writes what sled does not have yet into its slots; `None` once closed.
    pub(super) fn save(&self) -> Result<Option<usize>, StoreError> {
        let tree = self.tree.lock().expect("recent tree lock");
        let Some(tree) = tree.as_ref() else {
            return Ok(None);
        };
        let unsaved: Vec<(u64, Entry)> = {
            let mut inner = self.lock();
            let from = inner.unsaved_from;
            inner.unsaved_from = inner.next_seq;
            inner
                .events
                .iter()
                .filter(|e| e.0 >= from)
                .cloned()
                .collect()
        };
        if unsaved.is_empty() {
            return Ok(Some(0));
        }
        // Plain inserts, not a batch: a sled batch (or transaction) puts every later operation
        // of the process behind a global lock, and the ring needs no atomicity (it is a
        // window on recent traffic, and each entry carries its own sequence number).
        for (seq, entry) in &unsaved {
            let json = match entry {
                Entry::New(e) => e.to_json(),
                Entry::Stored(v) => v.clone(),
            };
            let mut value = seq.to_be_bytes().to_vec();
            serde_json::to_writer(&mut value, &json)?;
            tree.insert((seq % self.keep as u64).to_be_bytes(), value)?;
        }
        Ok(Some(unsaved.len()))
    }

    /// Saves what is left and lets go of the tree (waiting for a save in progress).
    pub fn close(&self) -> Result<(), StoreError> {
        self.save()?;
        self.tree.lock().expect("recent tree lock").take();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::EventId;
    use crate::store::recent::RecentPayload;

    fn event(n: usize) -> RecentEvent {
        RecentEvent {
            id: EventId::new(),
            source: "github".into(),
            event: "push".into(),
            headers: vec![("x-github-event".into(), "push".into())],
            payload: RecentPayload::Raw(bytes::Bytes::from(format!("{{\"n\":{n}}}"))),
            received_ms: 1,
        }
    }

    /// The `n` of every kept payload, newest first.
    fn numbers(ring: &Ring) -> Vec<Value> {
        ring.all()
            .iter()
            .map(|v| v["payload"]["n"].clone())
            .collect()
    }

    #[test]
    fn the_ring_keeps_the_newest_and_survives_a_reload() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("recent").unwrap();
        let ring = Ring::load(tree.clone(), 3).unwrap();
        for n in 0..5 {
            ring.push(event(n));
        }
        let shown = numbers(&ring);
        assert_eq!(shown, [4, 3, 2]);
        assert_eq!(ring.save().unwrap(), Some(3));
        assert_eq!(
            ring.save().unwrap(),
            Some(0),
            "nothing new, nothing written"
        );
        ring.push(event(5));
        ring.close().unwrap();
        assert_eq!(ring.save().unwrap(), None, "closed");
        let again = Ring::load(tree.clone(), 3).unwrap();
        let shown = numbers(&again);
        assert_eq!(shown, [5, 4, 3]);
        assert_eq!(again.all()[0]["headers"]["x-github-event"], "push");
        // Sequence numbers go on from the stored ones: a new event overwrites the oldest slot.
        again.push(event(6));
        again.save().unwrap();
        let third = Ring::load(tree, 3).unwrap();
        let shown = numbers(&third);
        assert_eq!(shown, [6, 5, 4]);
    }
}

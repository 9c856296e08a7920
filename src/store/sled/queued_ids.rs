//! Queued cards by delivery id: the index behind `GET /api/deliveries/{id}` for cards still in
//! the outbox (dead letters and delivered records are keyed by id already).
//!
//! In: every move of a card into or out of the outbox. Out: the outbox key of a queued card,
//! from its delivery id. Guarantees: in memory, about 40 bytes a queued card (the id's ULID, the
//! connection by number, the sequence), so it costs the hot path no disk write; a clean stop
//! saves it beside the counts and the next start loads it; after a crash, or from a store an
//! older version wrote, it is built by walking the queue once. An entry may outlive its card
//! for a moment (the card moved on): the lookup reads the card and checks its id.

use std::collections::HashMap;

use crate::ids::{ConnectionId, DeliveryId};

/// The index: a delivery id's ULID → (connection number, sequence).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct QueuedIds {
    at: HashMap<u128, (u32, u64)>,
    connections: Vec<ConnectionId>,
    numbers: HashMap<ConnectionId, u32>,
}

/// The ULID of a delivery id (`dlv_…`), as a number.
fn ulid(id: &str) -> Option<u128> {
    let rest = id.strip_prefix(DeliveryId::PREFIX)?;
    ulid::Ulid::from_string(rest).ok().map(u128::from)
}

/// An outbox key (`connection id ‖ sequence (u64, big-endian)`) cut in two.
fn split(key: &[u8]) -> Option<(ConnectionId, u64)> {
    let at = key.len().checked_sub(8)?;
    let con = ConnectionId::parse(std::str::from_utf8(&key[..at]).ok()?)?;
    let seq = u64::from_be_bytes(key[at..].try_into().ok()?);
    Some((con, seq))
}

impl QueuedIds {
    /// How many cards it holds.
    pub fn len(&self) -> usize {
        self.at.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }

    /// Notes that the card `id` is queued at `key`. Ids and keys not of cardwire's making are
    /// passed over (such a card is not found by id; nothing else changes).
    pub fn insert(&mut self, id: &str, key: &[u8]) {
        let (Some(u), Some((con, seq))) = (ulid(id), split(key)) else {
            return;
        };
        let n = match self.numbers.get(&con) {
            Some(n) => *n,
            None => {
                let n = self.connections.len() as u32;
                self.connections.push(con.clone());
                self.numbers.insert(con, n);
                n
            }
        };
        self.at.insert(u, (n, seq));
    }

    /// Forgets the card `id`.
    pub fn remove(&mut self, id: &str) {
        if let Some(u) = ulid(id) {
            self.at.remove(&u);
        }
    }

    /// The outbox key of the card `id`, if it is queued.
    pub fn key(&self, id: &str) -> Option<Vec<u8>> {
        let (n, seq) = self.at.get(&ulid(id)?)?;
        let con = self.connections.get(*n as usize)?.as_str().as_bytes();
        let mut key = Vec::with_capacity(con.len() + 8);
        key.extend_from_slice(con);
        key.extend_from_slice(&seq.to_be_bytes());
        Some(key)
    }

    /// The index as bytes, for a clean stop: the connections (count, then each as length and
    /// text), then each card (ULID, connection number, sequence), all big-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.connections.len() * 34 + self.at.len() * 28);
        out.extend_from_slice(&(self.connections.len() as u32).to_be_bytes());
        for con in &self.connections {
            let s = con.as_str().as_bytes();
            out.extend_from_slice(&(s.len() as u32).to_be_bytes());
            out.extend_from_slice(s);
        }
        for (u, (n, seq)) in &self.at {
            out.extend_from_slice(&u.to_be_bytes());
            out.extend_from_slice(&n.to_be_bytes());
            out.extend_from_slice(&seq.to_be_bytes());
        }
        out
    }

    /// An index from [`QueuedIds::encode`]'s bytes; `None` when they are not that.
    pub fn decode(mut bytes: &[u8]) -> Option<Self> {
        fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            let (head, rest) = bytes.split_at_checked(n)?;
            *bytes = rest;
            Some(head)
        }
        let u32_of = |b: &[u8]| u32::from_be_bytes(b.try_into().expect("4 bytes"));
        let mut index = Self::default();
        let cons = u32_of(take(&mut bytes, 4)?);
        for n in 0..cons {
            let len = u32_of(take(&mut bytes, 4)?) as usize;
            let con = ConnectionId::parse(std::str::from_utf8(take(&mut bytes, len)?).ok()?)?;
            index.connections.push(con.clone());
            index.numbers.insert(con, n);
        }
        if !bytes.len().is_multiple_of(28) {
            return None;
        }
        index.at.reserve(bytes.len() / 28);
        for card in bytes.chunks_exact(28) {
            let u = u128::from_be_bytes(card[..16].try_into().expect("16 bytes"));
            let n = u32_of(&card[16..20]);
            let seq = u64::from_be_bytes(card[20..].try_into().expect("8 bytes"));
            if n >= cons {
                return None;
            }
            index.at.insert(u, (n, seq));
        }
        Some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(con: &ConnectionId, seq: u64) -> Vec<u8> {
        let mut k = con.as_str().as_bytes().to_vec();
        k.extend_from_slice(&seq.to_be_bytes());
        k
    }

    #[test]
    fn finds_forgets_and_survives_its_bytes() {
        let (a, b) = (ConnectionId::new(), ConnectionId::new());
        let ids: Vec<DeliveryId> = (0..4).map(|_| DeliveryId::new()).collect();
        let mut index = QueuedIds::default();
        index.insert(ids[0].as_str(), &key(&a, 1));
        index.insert(ids[1].as_str(), &key(&b, 2));
        index.insert(ids[2].as_str(), &key(&a, u64::MAX));
        // Not cardwire's: passed over.
        index.insert("dlv_nope", &key(&a, 4));
        index.insert(ids[3].as_str(), b"short");
        assert_eq!(index.len(), 3);
        assert_eq!(index.key(ids[1].as_str()), Some(key(&b, 2)));
        assert_eq!(index.key(ids[2].as_str()), Some(key(&a, u64::MAX)));
        assert_eq!(index.key(ids[3].as_str()), None);
        index.remove(ids[0].as_str());
        assert_eq!(index.key(ids[0].as_str()), None);
        let bytes = index.encode();
        assert_eq!(bytes.len(), 4 + 2 * (4 + 30) + 2 * 28);
        assert_eq!(QueuedIds::decode(&bytes), Some(index));
        // Cut short, or a card naming a connection that is not there: not an index.
        assert_eq!(QueuedIds::decode(&bytes[..bytes.len() - 1]), None);
        let mut wrong = bytes.clone();
        let at = wrong.len() - 12;
        wrong[at..at + 4].copy_from_slice(&9u32.to_be_bytes());
        assert_eq!(QueuedIds::decode(&wrong), None);
        assert_eq!(QueuedIds::decode(b""), None);
        assert_eq!(
            QueuedIds::decode(&QueuedIds::default().encode()),
            Some(QueuedIds::default())
        );
    }
}

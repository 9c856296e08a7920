//! What the record files of PostgreSQL's store share: JSON in and out of text columns, outbox
//! keys, and the moves several of them make (a card buried).

use serde::Serialize;

use crate::ids::EventId;
use crate::store::{Delivered, OutboxKey, OutboxRecord, StoreError};

pub(super) fn json<T: Serialize>(v: &T) -> Result<String, StoreError> {
    Ok(serde_json::to_string(v)?)
}

pub(super) fn decode<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    Ok(serde_json::from_str(s)?)
}

/// The outbox key of a row: its connection, then its sequence number (as sled's keys are).
pub(super) fn key(connection: &str, seq: i64) -> OutboxKey {
    let mut k = connection.as_bytes().to_vec();
    k.extend_from_slice(&(seq as u64).to_be_bytes());
    OutboxKey(sled::IVec::from(k))
}

/// A key's sequence number.
pub(super) fn seq(key: &OutboxKey) -> i64 {
    let b = key.0.as_ref();
    let tail: [u8; 8] = b[b.len().saturating_sub(8)..].try_into().unwrap_or([0; 8]);
    u64::from_be_bytes(tail) as i64
}

/// When an event id was made (its ULID's time), as the sled store reads a claim's age.
pub(super) fn event_ms(event: &EventId) -> u64 {
    event
        .as_str()
        .strip_prefix(EventId::PREFIX)
        .and_then(|u| ulid::Ulid::from_string(u).ok())
        .map_or(0, |u| u.timestamp_ms())
}

/// A delivered card's record: the card without its body.
pub(super) fn delivered_record(rec: &OutboxRecord, at: u64) -> Delivered {
    Delivered {
        record: rec.without_body(),
        delivered_ms: at,
    }
}

/// Inserts or replaces a dead letter inside a transaction or on a client.
pub(super) fn put_dead_in(
    c: &mut impl postgres::GenericClient,
    id: &str,
    connection: &str,
    dead_ms: i64,
    record: &str,
) -> Result<(), postgres::Error> {
    c.execute(
        "INSERT INTO dead (id, connection, dead_ms, record) VALUES ($1, $2, $3, $4)
         ON CONFLICT (id) DO UPDATE SET connection = EXCLUDED.connection,
             dead_ms = EXCLUDED.dead_ms, record = EXCLUDED.record",
        &[&id, &connection, &dead_ms, &record],
    )?;
    Ok(())
}

/// Writes references (a newer use replaces an older one's row), in one statement.
pub(super) fn upsert_refs(
    db: &mut impl postgres::GenericClient,
    refs: &[crate::store::MessageRef],
) -> Result<(), postgres::Error> {
    if refs.is_empty() {
        return Ok(());
    }
    // The newest of a key, once: a statement may not change one row twice.
    let mut newest: std::collections::HashMap<(&str, &str), &crate::store::MessageRef> =
        std::collections::HashMap::new();
    for r in refs {
        newest.insert((r.connection.as_str(), r.key.as_str()), r);
    }
    let (mut cons, mut keys, mut messages, mut places, mut deliveries, mut ats) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for r in newest.values() {
        cons.push(r.connection.as_str());
        keys.push(r.key.as_str());
        messages.push(r.message.as_str());
        places.push(r.place.as_deref());
        deliveries.push(r.delivery.as_str());
        ats.push(i64::try_from(r.at_ms).unwrap_or(i64::MAX));
    }
    db.execute(
        "INSERT INTO message_refs (connection, key, message, place, delivery, at_ms)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                              $6::bigint[])
         ON CONFLICT (connection, key) DO UPDATE SET message = EXCLUDED.message,
             place = EXCLUDED.place, delivery = EXCLUDED.delivery, at_ms = EXCLUDED.at_ms",
        &[&cons, &keys, &messages, &places, &deliveries, &ats],
    )
    .map(drop)
}

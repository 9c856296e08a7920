//! The group commit of accepted events on PostgreSQL: the events staged while the pool's
//! connections were busy go in one statement, so one transaction, one commit (one WAL flush)
//! and one round trip serve them all, as sled's group commit serves its batch.
//!
//! In: an event's claim (its upstream delivery id, if any) and its cards. Out: for each event, queued or the event that claimed its delivery id first.
//! Guarantees: an event is all or nothing within the batch's statement (its claim and every
//! card, or neither); one event's repeat never keeps another event of the batch out; a batch
//! that fails answers every event in it with the failure (none was accepted); the cards of
//! the batch get their sequence numbers in the order the events were staged.

use std::sync::{mpsc, Arc, Mutex};

use crate::store::StoreError;

/// One event waiting for the next batch.
pub struct Pending {
    /// (delivery id, event id, claimed at) when the upstream named a delivery id.
    pub claim: Option<(String, String, i64)>,
    /// Its cards: connection, delivery id, retrying, record.
    pub cards: Vec<(String, String, bool, String)>,
    /// `Ok(None)`: queued; `Ok(Some(first))`: the delivery id was claimed by `first`.
    pub reply: mpsc::SyncSender<Result<Option<String>, StoreError>>,
}

/// The events waiting, shared by the callers and the connections that commit them.
pub type Queue = Arc<Mutex<Vec<Pending>>>;

/// At most this many events a statement (the arrays stay a few megabytes).
pub const MOST: usize = 256;

/// Takes the events to commit together: in staging order, at most [`MOST`], and never two
/// with the same delivery id (the second waits for the next batch, so that the claim decides
/// between them as between any two events).
pub fn take(queue: &Queue) -> Vec<Pending> {
    let mut pending = queue.lock().expect("batch lock");
    let mut keys = std::collections::HashSet::new();
    let mut batch = Vec::new();
    let mut rest = Vec::new();
    for p in pending.drain(..) {
        let repeat = p
            .claim
            .as_ref()
            .is_some_and(|(k, _, _)| !keys.insert(k.clone()));
        if repeat || batch.len() >= MOST {
            rest.push(p);
        } else {
            batch.push(p);
        }
    }
    *pending = rest;
    batch
}

/// Commits `batch` in one statement on `db` and answers each event.
pub fn commit(db: Result<&mut postgres::Client, StoreError>, batch: Vec<Pending>) {
    if batch.is_empty() {
        return;
    }
    let db = match db {
        Ok(db) => db,
        Err(e) => return fail(batch, &e),
    };
    match run(db, &batch) {
        Ok(answers) => {
            for (p, a) in batch.into_iter().zip(answers) {
                let _ = p.reply.send(Ok(a));
            }
        }
        Err(e) => {
            let e = if db.is_closed() {
                StoreError::unavailable(&e)
            } else {
                StoreError::Statement(crate::error::ErrorChain(&e).to_string())
            };
            fail(batch, &e)
        }
    }
}

/// Answers every event of a batch that could not be committed.
fn fail(batch: Vec<Pending>, e: &StoreError) {
    for p in batch {
        let _ = p.reply.send(Err(match e {
            StoreError::Unavailable(why) => StoreError::Unavailable(why.clone()),
            other => StoreError::Statement(crate::error::ErrorChain(other).to_string()),
        }));
    }
}

/// The statement: the claims (those made are kept), the cards of the events whose claim was
/// made or that had none, the notifications; then, per event, whether it was queued and, if
/// not, who claimed its delivery id.
fn run(
    db: &mut postgres::Client,
    batch: &[Pending],
) -> Result<Vec<Option<String>>, postgres::Error> {
    let (mut ns, mut keys, mut events, mut ats) = (vec![], vec![], vec![], vec![]);
    let (mut of, mut cons, mut ids, mut retrying, mut records) =
        (vec![], vec![], vec![], vec![], vec![]);
    for (n, p) in batch.iter().enumerate() {
        let n = n as i64;
        ns.push(n);
        let (key, event, at) = match &p.claim {
            Some((k, e, a)) => (Some(k.clone()), Some(e.clone()), Some(*a)),
            None => (None, None, None),
        };
        keys.push(key);
        events.push(event);
        ats.push(at);
        for (c, i, r, j) in &p.cards {
            of.push(n);
            cons.push(c.clone());
            ids.push(i.clone());
            retrying.push(*r);
            records.push(j.clone());
        }
    }
    let rows = db.query(
        "WITH ev AS (
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[])
                 AS e(n, key, event, at)),
         claim AS (
             INSERT INTO seen (key, event, claimed_ms)
             SELECT key, event, at FROM ev WHERE key IS NOT NULL
             ON CONFLICT (key) DO NOTHING RETURNING key),
         ok AS (
             SELECT n FROM ev WHERE key IS NULL OR key IN (SELECT key FROM claim)),
         cards AS (
             INSERT INTO outbox (connection, id, retrying, record)
             SELECT c, i, r, j
             FROM unnest($5::bigint[], $6::text[], $7::text[], $8::bool[], $9::text[])
                 WITH ORDINALITY AS t(ev, c, i, r, j, o)
             WHERE ev IN (SELECT n FROM ok)
             ORDER BY o
             RETURNING seq)
         SELECT ev.n, ev.n IN (SELECT n FROM ok),
             (SELECT s.event FROM seen s WHERE s.key = ev.key)
         FROM ev ORDER BY ev.n",
        &[
            &ns, &keys, &events, &ats, &of, &cons, &ids, &retrying, &records,
        ],
    )?;
    let mut answers = Vec::with_capacity(batch.len());
    for (row, p) in rows.iter().zip(batch) {
        if row.get::<_, bool>(1) {
            answers.push(None);
            continue;
        }
        // Claimed by another event; one that committed while this statement ran is read
        // after it.
        let first: Option<String> = row.get(2);
        let first = match (first, &p.claim) {
            (Some(f), _) => f,
            (None, Some((key, _, _))) => db
                .query_opt("SELECT event FROM seen WHERE key = $1", &[key])?
                .map(|r| r.get(0))
                .unwrap_or_default(),
            (None, None) => String::new(),
        };
        answers.push(Some(first));
    }
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(key: Option<&str>) -> (Pending, mpsc::Receiver<Result<Option<String>, StoreError>>) {
        let (reply, rx) = mpsc::sync_channel(1);
        (
            Pending {
                claim: key.map(|k| (k.to_string(), "evt".into(), 0)),
                cards: Vec::new(),
                reply,
            },
            rx,
        )
    }

    #[test]
    fn a_batch_keeps_staging_order_and_leaves_a_repeated_id_for_the_next() {
        let queue: Queue = Arc::default();
        for key in [Some("a"), None, Some("b"), Some("a"), None] {
            queue.lock().unwrap().push(pending(key).0);
        }
        let first = take(&queue);
        let keys: Vec<Option<&str>> = first
            .iter()
            .map(|p| p.claim.as_ref().map(|c| c.0.as_str()))
            .collect();
        assert_eq!(keys, [Some("a"), None, Some("b"), None]);
        let second = take(&queue);
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].claim.as_ref().unwrap().0, "a");
        assert!(take(&queue).is_empty());
    }

    #[test]
    fn a_batch_has_a_most() {
        let queue: Queue = Arc::default();
        for _ in 0..MOST + 3 {
            queue.lock().unwrap().push(pending(None).0);
        }
        assert_eq!(take(&queue).len(), MOST);
        assert_eq!(take(&queue).len(), 3);
    }

    #[test]
    fn a_batch_that_cannot_be_committed_answers_every_event() {
        let (a, ra) = pending(Some("a"));
        let (b, rb) = pending(None);
        commit(Err(StoreError::Unavailable("down".into())), vec![a, b]);
        for rx in [ra, rb] {
            match rx.recv().unwrap() {
                Err(StoreError::Unavailable(why)) => assert_eq!(why, "down"),
                other => panic!("{other:?}"),
            }
        }
    }
}

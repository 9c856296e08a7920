//! Upstream delivery ids on sled: claimed in the main log's `seen` tree, moved to the kept ids
//! ([`super::claims`]) about a second later.

use super::claims::{claim_key, claimed_ms, decode_ms, kept_claim, Claim, SEEN_PRUNED_BEFORE};
use super::*;
use crate::store::seen::reserve;

impl SeenIds for Store {
    fn claim_delivery(&self, key: &str, event: &EventId) -> Result<Option<EventId>, StoreError> {
        let _moving = self.claims_moving.lock().expect("claims lock");
        if let Some(first) = kept_claim(&self.seen_kept, key)? {
            return Ok(Some(first));
        }
        match self.seen.compare_and_swap(
            key,
            None as Option<&[u8]>,
            Some(event.as_str().as_bytes()),
        )? {
            Ok(()) => Ok(None),
            Err(cas) => Ok(cas
                .current
                .and_then(|v| EventId::parse(std::str::from_utf8(&v).ok()?))),
        }
    }

    fn reserve_delivery(&self, key: &str, event: &EventId) -> Result<Option<EventId>, StoreError> {
        // The main tree first: a claim leaves it only once it is in the kept ids.
        if let Some(v) = self.seen.get(key)? {
            return Ok(EventId::parse(&String::from_utf8_lossy(&v)));
        }
        if let Some(first) = kept_claim(&self.seen_kept, key)? {
            return Ok(Some(first));
        }
        Ok(reserve(&self.staging, key, event))
    }

    fn release_delivery(&self, key: &str) -> Result<(), StoreError> {
        self.staging.lock().expect("staging lock").remove(key);
        let _moving = self.claims_moving.lock().expect("claims lock");
        self.seen.remove(key)?;
        if let Some(kept) = self.seen_kept.get(claim_key(key))? {
            if kept.key == key && kept.event.is_some() {
                // As old as the claim it cancels: it need not outlive it.
                self.seen_kept.append(&Claim {
                    event: None,
                    ..kept
                })?;
            }
        }
        Ok(())
    }

    fn prune_seen(&self, keep: std::time::Duration) -> Result<usize, StoreError> {
        let cutoff = self.clock.now_ms().saturating_sub(keep.as_millis() as u64);
        // Said before any id goes, for the recovery after a crash: a card of an event claimed
        // before this may have lost its claim to pruning, not to a crash (see `recover`).
        let before = self
            .meta
            .get(SEEN_PRUNED_BEFORE)?
            .map_or(0, |v| decode_ms(&v));
        if cutoff > before {
            self.meta
                .insert(SEEN_PRUNED_BEFORE, &cutoff.to_be_bytes())?;
        }
        let mut n = self.seen_kept.prune(self.clock.now_ms(), keep)?;
        for kv in self.seen.iter() {
            let (k, v) = kv?;
            if claimed_ms(&v) < cutoff {
                self.seen.remove(k)?;
                n += 1;
            }
        }
        Ok(n)
    }
}

impl Store {
    /// Moves the claims in the main log's `seen` tree into the kept ids' files: the
    /// main log flushed first (so that no claim is kept before its event's cards are on disk),
    /// the kept ids flushed next, then the claims removed from the main tree. Returns how many
    /// moved. The store runs it about once a second.
    pub fn move_claims(&self) -> Result<usize, StoreError> {
        let claims: Vec<(sled::IVec, sled::IVec)> = self.seen.iter().collect::<Result<_, _>>()?;
        if claims.is_empty() {
            return Ok(0);
        }
        self.db.flush()?;
        {
            let _moving = self.claims_moving.lock().expect("claims lock");
            for (k, v) in &claims {
                // Released meanwhile: its event was not accepted after all.
                if self.seen.get(k)?.as_ref() != Some(v) {
                    continue;
                }
                self.seen_kept.append(&Claim {
                    key: String::from_utf8_lossy(k).into_owned(),
                    event: EventId::parse(&String::from_utf8_lossy(v)),
                    at_ms: claimed_ms(v),
                })?;
            }
        }
        self.seen_kept.sync()?;
        let _moving = self.claims_moving.lock().expect("claims lock");
        for (k, v) in &claims {
            // Only if unchanged: a claim released and claimed again since stays to be moved.
            let _ = self
                .seen
                .compare_and_swap(k, Some(v), None as Option<&[u8]>)?;
        }
        drop(_moving);
        // Files sealed meanwhile hand their filters to the shared one, now and then.
        self.seen_kept.tidy_or_warn();
        Ok(claims.len())
    }

    /// Every upstream delivery id claimed, with its event (`migrate --from-sled`), once: a
    /// claim being moved is in both places.
    pub fn seen_ids(&self) -> Result<Vec<(String, EventId)>, StoreError> {
        let mut out = Vec::new();
        let mut taken = std::collections::HashSet::new();
        for kv in self.seen.iter() {
            let (k, v) = kv?;
            if let Some(event) = EventId::parse(&String::from_utf8_lossy(&v)) {
                let key = String::from_utf8_lossy(&k).into_owned();
                taken.insert(key.clone());
                out.push((key, event));
            }
        }
        for c in self
            .seen_kept
            .page(None, usize::MAX, &|c: &Claim| c.event.is_some())?
        {
            match c.event {
                Some(event) if !taken.contains(&c.key) => out.push((c.key, event)),
                _ => {}
            }
        }
        Ok(out)
    }
}

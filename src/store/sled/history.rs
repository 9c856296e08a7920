//! Delivered records, kept out of sled in segment files ([`super::segments`]) that are removed
//! whole once their newest record is older than `keep_delivered`.
//!
//! In: a record for each card delivered. Out: a record by its delivery id, pages of records in
//! id order (for `/api/deliveries`), every record (for `migrate --from-sled`). Guarantees:
//! those of [`Segments`]; the group commit writes the records appended since the last one
//! (one `write`) before sled's flush, and the store syncs them within a second, off the
//! commit's path: a record is history, not what a 202 promises, so a crash can lose the last
//! second's records of cards that were delivered, and never makes a card be sent again. A
//! record is keyed by its
//! delivery id's ULID: ids sort by when the card was made, so a lookup reads only the segments
//! whose ids span it.

use super::segments::{Record, Segments};
use crate::store::{Delivered, OutboxRecord, StoreError};

/// The delivered records of a sled store, under `data_dir/delivered`.
pub type History = Segments<Delivered>;

/// The delivery id `dlv_<ULID>` as a number; ids sort as their ULIDs do.
fn key(id: &str) -> Option<u128> {
    let ulid = id.strip_prefix(crate::ids::DeliveryId::PREFIX)?;
    ulid::Ulid::from_string(ulid).ok().map(u128::from)
}

impl Record for Delivered {
    fn key(&self) -> Option<u128> {
        key(self.record.id.as_str())
    }

    fn at_ms(&self) -> u64 {
        self.delivered_ms
    }

    const FILTERED: bool = false;
}

impl Segments<Delivered> {
    /// A record by its delivery id (the latest, if a card was delivered twice).
    pub fn find(&self, id: &str) -> Result<Option<Delivered>, StoreError> {
        match key(id) {
            Some(k) => self.get(k),
            None => Ok(None),
        }
    }

    /// Up to `limit` records with ids after `after`, in id order, that `keep` keeps.
    pub fn page_after(
        &self,
        after: Option<&str>,
        limit: usize,
        keep: &dyn Fn(&OutboxRecord) -> bool,
    ) -> Result<Vec<Delivered>, StoreError> {
        // Past `after` when it is an id; any other text is compared as text.
        self.page(after.and_then(key), limit, &|d: &Delivered| {
            after.is_none_or(|a| d.record.id.as_str() > a) && keep(&d.record)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ConnectionId, DeliveryId, EventId};
    use crate::render::CardKind;
    use std::fs::OpenOptions;
    use std::io::Write;
    use std::path::Path;

    fn record(con: &ConnectionId, at: u64) -> Delivered {
        let mut r = OutboxRecord::new(
            EventId::new(),
            con.clone(),
            "r",
            CardKind::Teams,
            String::new(),
            at,
        );
        r.attempts = 1;
        Delivered {
            record: r,
            delivered_ms: at,
        }
    }

    fn ids(v: &[Delivered]) -> Vec<String> {
        v.iter().map(|d| d.record.id.to_string()).collect()
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn records_are_found_by_id_and_paged_in_id_order_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open_with(dir.path(), 4).unwrap();
        let (a, b) = (ConnectionId::new(), ConnectionId::new());
        // Delivered out of id order: made first, delivered last.
        let late = record(&a, 1_000);
        let mut all: Vec<Delivered> = (0..10)
            .map(|i| record(if i % 2 == 0 { &a } else { &b }, 1_000 + i))
            .collect();
        for d in &all {
            h.append(d).unwrap();
        }
        h.append(&late).unwrap();
        all.push(late);
        assert_eq!(h.len(), 11);
        // 11 records, 4 a segment: two sealed and one open.
        assert_eq!(
            files(dir.path())
                .iter()
                .filter(|f| f.ends_with(".idx"))
                .count(),
            2
        );
        for d in &all {
            assert_eq!(h.find(d.record.id.as_str()).unwrap().as_ref(), Some(d));
        }
        assert_eq!(h.find(DeliveryId::new().as_str()).unwrap(), None);
        assert_eq!(h.find("dlv_nonsense").unwrap(), None);

        let mut sorted = ids(&all);
        sorted.sort();
        assert_eq!(ids(&h.page_after(None, 100, &|_| true).unwrap()), sorted);
        // Pages follow one another.
        let first = h.page_after(None, 3, &|_| true).unwrap();
        assert_eq!(ids(&first), sorted[..3]);
        let next = h
            .page_after(Some(first[2].record.id.as_str()), 3, &|_| true)
            .unwrap();
        assert_eq!(ids(&next), sorted[3..6]);
        // A filter reads on past what it passes over.
        let only_b = h.page_after(None, 100, &|r| r.connection == b).unwrap();
        assert_eq!(only_b.len(), 5);
        assert!(only_b.iter().all(|d| d.record.connection == b));
        // Text that is no id still pages as text does.
        assert_eq!(
            h.page_after(Some("dlv_"), 100, &|_| true).unwrap().len(),
            11
        );
        assert!(h
            .page_after(Some("dlw"), 100, &|_| true)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_card_delivered_twice_shows_its_latest_record_once() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open_with(dir.path(), 2).unwrap();
        let con = ConnectionId::new();
        let mut d = record(&con, 10);
        h.append(&d).unwrap();
        h.append(&record(&con, 11)).unwrap();
        // Sent again after a crash (at least once): in a later segment.
        d.delivered_ms = 20;
        d.record.attempts = 2;
        h.append(&d).unwrap();
        let page = h.page_after(None, 10, &|_| true).unwrap();
        assert_eq!(page.len(), 2);
        assert_eq!(page.iter().find(|p| p.record.id == d.record.id), Some(&d));
        assert_eq!(h.find(d.record.id.as_str()).unwrap(), Some(d));
    }

    #[test]
    fn pruning_removes_whole_segments_once_their_newest_record_is_past_keep() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open_with(dir.path(), 3).unwrap();
        let con = ConnectionId::new();
        let hour = std::time::Duration::from_secs(3600);
        let old: Vec<Delivered> = (0..6).map(|i| record(&con, 1_000 + i)).collect();
        for d in &old {
            h.append(d).unwrap();
        }
        let fresh = record(&con, 3_600_000);
        h.append(&fresh).unwrap();
        let before = dir.path().read_dir().unwrap().count();
        // At 1 h + 1 s the six old records (two sealed segments) are past keep.
        assert_eq!(h.prune(3_601_006, hour).unwrap(), 6);
        assert_eq!(h.len(), 1);
        assert_eq!(dir.path().read_dir().unwrap().count(), before - 4);
        assert_eq!(h.find(old[0].record.id.as_str()).unwrap(), None);
        assert_eq!(
            ids(&h.page_after(None, 10, &|_| true).unwrap()),
            ids(std::slice::from_ref(&fresh))
        );
        // The open segment is sealed once its first record is a tenth of keep old, and
        // removed once past keep.
        assert_eq!(h.prune(3_600_000 + 359_999, hour).unwrap(), 0);
        assert!(!files(dir.path()).iter().any(|f| f.ends_with(".idx")));
        assert_eq!(h.prune(3_600_000 + 360_000, hour).unwrap(), 0);
        assert_eq!(
            files(dir.path())
                .iter()
                .filter(|f| f.ends_with(".idx"))
                .count(),
            1
        );
        assert_eq!(h.prune(7_200_001, hour).unwrap(), 1);
        assert!(h.is_empty());
        assert_eq!(files(dir.path()).len(), 1, "{:?}", files(dir.path()));
    }

    #[test]
    fn reopening_finds_every_record_and_cuts_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let con = ConnectionId::new();
        let all: Vec<Delivered> = (0..7).map(|i| record(&con, 1_000 + i)).collect();
        {
            let h = History::open_with(dir.path(), 3).unwrap();
            for d in &all {
                h.append(d).unwrap();
            }
            h.sync().unwrap();
        }
        // A crash in the middle of a write, and one while sealing (the index not in place),
        // and a prune cut short (an index without its log).
        let open = dir.path().join(format!("{:016x}.log", 2));
        let mut f = OpenOptions::new().append(true).open(&open).unwrap();
        f.write_all(b"{\"record\":{\"id\":\"dlv_").unwrap();
        std::fs::remove_file(dir.path().join(format!("{:016x}.idx", 1))).unwrap();
        std::fs::write(dir.path().join(format!("{:016x}.idx", 9)), b"x").unwrap();
        std::fs::write(dir.path().join(format!("{:016x}.idx.tmp", 3)), b"x").unwrap();

        let h = History::open_with(dir.path(), 3).unwrap();
        assert_eq!(h.len(), 7);
        let mut sorted = ids(&all);
        sorted.sort();
        assert_eq!(ids(&h.page_after(None, 100, &|_| true).unwrap()), sorted);
        for d in &all {
            assert_eq!(h.find(d.record.id.as_str()).unwrap().as_ref(), Some(d));
        }
        assert!(!files(dir.path()).iter().any(|f| f.ends_with(".tmp")));
        assert!(!files(dir.path()).contains(&format!("{:016x}.idx", 9)));
        // Appending goes on after the cut, and the line reads back.
        let more = record(&con, 2_000);
        h.append(&more).unwrap();
        drop(h);
        let h = History::open_with(dir.path(), 3).unwrap();
        assert_eq!(h.len(), 8);
        assert_eq!(h.find(more.record.id.as_str()).unwrap(), Some(more));
    }

    #[test]
    fn the_open_segment_holds_at_most_max_records() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open_with(dir.path(), 5).unwrap();
        let con = ConnectionId::new();
        for i in 0..23 {
            h.append(&record(&con, 1_000 + i)).unwrap();
            assert!(h.open_len() <= 5);
        }
        assert_eq!(h.len(), 23);
        assert_eq!(h.sealed_count(), 4);
    }
}

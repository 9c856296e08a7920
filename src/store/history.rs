//! Delivered records, kept out of sled: segment files, each removed whole once its newest
//! record is older than `keep_delivered`.
//!
//! In: a record for each card delivered ([`History::append`]), the clock and `keep_delivered`
//! at each prune. Out: a record by its delivery id, pages of records in id order, every record
//! (for `migrate --from-sled`), how many are kept.
//! Guarantees: a record reaches the operating system before [`History::append`] returns (a
//! killed process loses none) and the disk at the next [`History::sync`], which the group
//! commit runs before sled's flush. Pruning deletes whole files, so the space is the file
//! system's again at once (sled reclaims a segment of its log only when nothing in it is live,
//! and delivered records kept for days pinned every segment: its disk grew with the traffic,
//! not with what was kept). Memory holds a few numbers per segment and the open segment's
//! index (at most [`SEGMENT_RECORDS`] entries), however many records are kept; opening reads
//! each sealed segment's header and the open segment, not the history.
//!
//! Layout, under `data_dir/delivered`: `N.log` (N in hex, one per segment), one JSON
//! [`Delivered`] a line in the order delivered; `N.idx` once the segment is sealed: a header
//! (magic, count, first and newest delivery time) then 24-byte entries sorted by id (the ULID
//! of the delivery id, the line's offset and length). The segment with the highest number and
//! no index is the open one; after a crash its torn last line is cut off, and a sealed log
//! without its index (a crash while sealing) is indexed again.

use std::collections::{BTreeMap, BinaryHeap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use super::{Delivered, OutboxRecord, StoreError};

/// Records in a segment before it is sealed and another is begun: bounds the open segment's
/// index in memory (about 1 MB).
pub const SEGMENT_RECORDS: usize = 16_384;

/// Bytes in a segment's log before it is sealed (records with long attempt logs).
const SEGMENT_BYTES: u64 = 64 << 20;

const MAGIC: &[u8; 8] = b"cwdlv01\n";
const HEADER: u64 = 8 + 4 + 8 + 8;
const ENTRY: u64 = 24;

/// One record's place: its id's ULID, where its line starts and how long it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    id: u128,
    off: u32,
    len: u32,
}

impl Entry {
    fn encode(&self) -> [u8; ENTRY as usize] {
        let mut b = [0; ENTRY as usize];
        b[..16].copy_from_slice(&self.id.to_be_bytes());
        b[16..20].copy_from_slice(&self.off.to_be_bytes());
        b[20..].copy_from_slice(&self.len.to_be_bytes());
        b
    }

    fn decode(b: &[u8]) -> Self {
        Self {
            id: u128::from_be_bytes(b[..16].try_into().expect("16 bytes")),
            off: u32::from_be_bytes(b[16..20].try_into().expect("4 bytes")),
            len: u32::from_be_bytes(b[20..24].try_into().expect("4 bytes")),
        }
    }
}

/// A sealed segment, as memory keeps it.
#[derive(Debug)]
struct Sealed {
    n: u64,
    count: u32,
    newest_ms: u64,
    /// The smallest and largest ids in it: a lookup skips the segments outside.
    min: u128,
    max: u128,
}

/// The segment being written.
#[derive(Debug)]
struct Open {
    n: u64,
    file: Arc<File>,
    len: u64,
    index: BTreeMap<u128, (u32, u32)>,
    first_ms: u64,
    newest_ms: u64,
    dirty: bool,
}

#[derive(Debug)]
struct Inner {
    sealed: Vec<Arc<Sealed>>,
    open: Open,
}

/// The delivered records of a sled store.
#[derive(Debug)]
pub struct History {
    dir: PathBuf,
    max_records: usize,
    inner: Mutex<Inner>,
}

/// The delivery id `dlv_<ULID>` as a number; ids sort as their ULIDs do.
fn key(id: &str) -> Option<u128> {
    let ulid = id.strip_prefix(crate::ids::DeliveryId::PREFIX)?;
    ulid::Ulid::from_string(ulid).ok().map(u128::from)
}

fn invalid(what: String) -> StoreError {
    StoreError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, what))
}

impl History {
    /// Opens (or creates) the history under `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, SEGMENT_RECORDS)
    }

    /// Like [`History::open`], sealing a segment at `max_records` (tests).
    pub fn open_with(dir: &Path, max_records: usize) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)?;
        let mut logs = Vec::new();
        let mut idxs = std::collections::HashSet::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with(".tmp") {
                std::fs::remove_file(&path)?;
                continue;
            }
            let Some((stem, ext)) = name.split_once('.') else {
                continue;
            };
            let Ok(n) = u64::from_str_radix(stem, 16) else {
                continue;
            };
            match ext {
                "log" => logs.push(n),
                "idx" => {
                    idxs.insert(n);
                }
                _ => {}
            }
        }
        logs.sort_unstable();
        // An index whose log is gone: a prune that stopped between the two removals.
        for n in &idxs {
            if logs.binary_search(n).is_err() {
                std::fs::remove_file(idx_path(dir, *n))?;
            }
        }
        let mut sealed = Vec::new();
        let mut open = None;
        for (i, &n) in logs.iter().enumerate() {
            let last = i + 1 == logs.len();
            if idxs.contains(&n) {
                sealed.push(Arc::new(read_header(dir, n)?));
            } else if last {
                open = Some(scan_open(dir, n)?);
            } else {
                // Sealing stopped before its index was in place: index it now.
                let o = scan_open(dir, n)?;
                sealed.push(Arc::new(write_index(dir, &o)?));
            }
        }
        let open = match open {
            Some(o) => o,
            None => new_open(dir, logs.last().map_or(0, |n| n + 1))?,
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            max_records: max_records.max(1),
            inner: Mutex::new(Inner { sealed, open }),
        })
    }

    /// Adds a record (a card just delivered).
    pub fn append(&self, d: &Delivered) -> Result<(), StoreError> {
        let id = key(d.record.id.as_str())
            .ok_or_else(|| invalid(format!("{} is not a delivery id", d.record.id)))?;
        let mut line = serde_json::to_vec(d)?;
        line.push(b'\n');
        let mut inner = self.inner.lock().expect("history lock");
        let o = &inner.open;
        if !o.index.is_empty()
            && (o.index.len() >= self.max_records || o.len + line.len() as u64 > SEGMENT_BYTES)
        {
            self.seal(&mut inner)?;
        }
        let o = &mut inner.open;
        if let Err(e) = (&*o.file).write_all(&line) {
            // Whatever part went out is cut off, so that the next line starts where it should.
            let _ = o.file.set_len(o.len);
            return Err(e.into());
        }
        let at = u32::try_from(o.len).map_err(|_| invalid("segment past 4 GiB".into()))?;
        o.index.insert(id, (at, line.len() as u32));
        o.len += line.len() as u64;
        if o.first_ms == 0 {
            o.first_ms = d.delivered_ms.max(1);
        }
        o.newest_ms = o.newest_ms.max(d.delivered_ms);
        o.dirty = true;
        Ok(())
    }

    /// Makes every record appended so far durable.
    pub fn sync(&self) -> Result<(), StoreError> {
        let file = {
            let mut inner = self.inner.lock().expect("history lock");
            if !std::mem::take(&mut inner.open.dirty) {
                return Ok(());
            }
            inner.open.file.clone()
        };
        if let Err(e) = file.sync_data() {
            self.inner.lock().expect("history lock").open.dirty = true;
            return Err(e.into());
        }
        Ok(())
    }

    /// How many records are kept.
    pub fn len(&self) -> usize {
        let inner = self.inner.lock().expect("history lock");
        inner.sealed.iter().map(|s| s.count as usize).sum::<usize>() + inner.open.index.len()
    }

    /// Whether no record is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes the segments whose newest record is older than `keep` at `now_ms`; returns how
    /// many records went. The open segment is sealed first once its first record is a tenth of
    /// `keep` old, so a record is removed between `keep` and `keep` plus a tenth after it was
    /// delivered (plus the time to the next prune).
    pub fn prune(&self, now_ms: u64, keep: std::time::Duration) -> Result<usize, StoreError> {
        let keep_ms = keep.as_millis() as u64;
        let cutoff = now_ms.saturating_sub(keep_ms);
        let gone: Vec<Arc<Sealed>> = {
            let mut inner = self.inner.lock().expect("history lock");
            if !inner.open.index.is_empty() && inner.open.first_ms + keep_ms / 10 <= now_ms {
                self.seal(&mut inner)?;
            }
            let (gone, kept) = std::mem::take(&mut inner.sealed)
                .into_iter()
                .partition(|s| s.newest_ms < cutoff);
            inner.sealed = kept;
            gone
        };
        let mut n = 0;
        for s in gone {
            // The log first: an index left alone by a crash here is removed at the next open.
            remove_if_there(&log_path(&self.dir, s.n))?;
            remove_if_there(&idx_path(&self.dir, s.n))?;
            n += s.count as usize;
        }
        Ok(n)
    }

    /// A record by its delivery id (the latest, if a card was delivered twice).
    pub fn get(&self, id: &str) -> Result<Option<Delivered>, StoreError> {
        let Some(k) = key(id) else {
            return Ok(None);
        };
        let sealed = {
            let inner = self.inner.lock().expect("history lock");
            if let Some(&(off, len)) = inner.open.index.get(&k) {
                return read_line(&inner.open.file, off, len).map(Some);
            }
            inner.sealed.clone()
        };
        for s in sealed.iter().rev().filter(|s| s.min <= k && k <= s.max) {
            // A segment pruned meanwhile holds nothing to find.
            let Some(idx) = open_if_there(&idx_path(&self.dir, s.n))? else {
                continue;
            };
            let at = lower_bound(&idx, s.count, k)?;
            if at < s.count {
                let e = read_entry(&idx, at)?;
                if e.id == k {
                    let Some(log) = open_if_there(&log_path(&self.dir, s.n))? else {
                        continue;
                    };
                    return read_line(&log, e.off, e.len).map(Some);
                }
            }
        }
        Ok(None)
    }

    /// Up to `limit` records with ids after `after`, in id order, that `keep` keeps: a merge of
    /// the segments' indexes, reading the records it shows (and those `keep` passes over).
    pub fn page(
        &self,
        after: Option<&str>,
        limit: usize,
        keep: &dyn Fn(&OutboxRecord) -> bool,
    ) -> Result<Vec<Delivered>, StoreError> {
        // Where to start: past `after` when it is an id (any other text: from the start, and
        // `after` is compared as text below).
        let start = after.and_then(key);
        let mut cursors = Vec::new();
        let sealed = {
            let inner = self.inner.lock().expect("history lock");
            let from = start.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
            let entries: Vec<Entry> = inner
                .open
                .index
                .range((from, std::ops::Bound::Unbounded))
                .map(|(&id, &(off, len))| Entry { id, off, len })
                .collect();
            // The open segment is the newest: it comes first, so that of an id delivered
            // twice its latest record is the one shown.
            cursors.push(Cursor::memory(entries, inner.open.file.clone()));
            inner.sealed.clone()
        };
        for s in sealed.iter().rev() {
            if start.is_some_and(|k| s.max <= k) {
                continue;
            }
            if let Some(c) = Cursor::sealed(&self.dir, s, start)? {
                cursors.push(c);
            }
        }
        let mut heap = BinaryHeap::new();
        for (i, c) in cursors.iter_mut().enumerate() {
            if let Some(e) = c.next()? {
                heap.push(std::cmp::Reverse((e.id, i, e)));
            }
        }
        let mut out = Vec::new();
        let mut last = None;
        while let Some(std::cmp::Reverse((id, i, e))) = heap.pop() {
            if let Some(next) = cursors[i].next()? {
                heap.push(std::cmp::Reverse((next.id, i, next)));
            }
            if last == Some(id) {
                continue;
            }
            last = Some(id);
            let d = read_line(cursors[i].log(), e.off, e.len)?;
            if after.is_some_and(|a| d.record.id.as_str() <= a) || !keep(&d.record) {
                continue;
            }
            out.push(d);
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    /// Seals the open segment (writes its index) and opens the next.
    fn seal(&self, inner: &mut Inner) -> Result<(), StoreError> {
        inner.open.file.sync_data()?;
        let sealed = write_index(&self.dir, &inner.open)?;
        let next = new_open(&self.dir, inner.open.n + 1)?;
        inner.open = next;
        inner.sealed.push(Arc::new(sealed));
        Ok(())
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.id, self.off, self.len).cmp(&(other.id, other.off, other.len))
    }
}

/// One segment's entries in id order, read a block at a time.
struct Cursor {
    source: Source,
    buf: std::vec::IntoIter<Entry>,
    log: Arc<File>,
}

enum Source {
    Memory,
    Index { file: File, at: u32, count: u32 },
}

impl Cursor {
    const BLOCK: u32 = 256;

    fn memory(entries: Vec<Entry>, log: Arc<File>) -> Self {
        Self {
            source: Source::Memory,
            buf: entries.into_iter(),
            log,
        }
    }

    fn sealed(dir: &Path, s: &Sealed, start: Option<u128>) -> Result<Option<Self>, StoreError> {
        let (Some(idx), Some(log)) = (
            open_if_there(&idx_path(dir, s.n))?,
            open_if_there(&log_path(dir, s.n))?,
        ) else {
            return Ok(None);
        };
        let at = match start {
            Some(k) => lower_bound(&idx, s.count, k.saturating_add(1))?,
            None => 0,
        };
        Ok(Some(Self {
            source: Source::Index {
                file: idx,
                at,
                count: s.count,
            },
            buf: Vec::new().into_iter(),
            log: Arc::new(log),
        }))
    }

    fn next(&mut self) -> Result<Option<Entry>, StoreError> {
        if let Some(e) = self.buf.next() {
            return Ok(Some(e));
        }
        let Source::Index { file, at, count } = &mut self.source else {
            return Ok(None);
        };
        if *at >= *count {
            return Ok(None);
        }
        let n = Self::BLOCK.min(*count - *at);
        let mut bytes = vec![0; (n as u64 * ENTRY) as usize];
        file.read_exact_at(&mut bytes, HEADER + *at as u64 * ENTRY)?;
        *at += n;
        let block: Vec<Entry> = bytes
            .chunks_exact(ENTRY as usize)
            .map(Entry::decode)
            .collect();
        self.buf = block.into_iter();
        Ok(self.buf.next())
    }

    fn log(&self) -> &File {
        &self.log
    }
}

fn log_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:016x}.log"))
}

fn idx_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:016x}.idx"))
}

fn open_if_there(path: &Path) -> Result<Option<File>, StoreError> {
    match File::open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn remove_if_there(path: &Path) -> Result<(), StoreError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

fn new_open(dir: &Path, n: u64) -> Result<Open, StoreError> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(log_path(dir, n))?;
    Ok(Open {
        n,
        file: Arc::new(file),
        len: 0,
        index: BTreeMap::new(),
        first_ms: 0,
        newest_ms: 0,
        dirty: false,
    })
}

/// Reads a segment's log into an open segment: its index rebuilt, a torn last line (a crash
/// in the middle of a write) cut off.
fn scan_open(dir: &Path, n: u64) -> Result<Open, StoreError> {
    #[derive(Deserialize)]
    struct Head<'a> {
        #[serde(borrow)]
        record: Id<'a>,
        delivered_ms: u64,
    }
    #[derive(Deserialize)]
    struct Id<'a> {
        id: &'a str,
    }
    let path = log_path(dir, n);
    let bytes = std::fs::read(&path)?;
    let mut open = new_open(dir, n)?;
    let mut at = 0;
    while let Some(end) = bytes[at..].iter().position(|&b| b == b'\n') {
        let line = &bytes[at..at + end];
        let Ok(head) = serde_json::from_slice::<Head<'_>>(line) else {
            break;
        };
        let Some(id) = key(head.record.id) else {
            break;
        };
        open.index.insert(id, (at as u32, end as u32 + 1));
        if open.first_ms == 0 {
            open.first_ms = head.delivered_ms.max(1);
        }
        open.newest_ms = open.newest_ms.max(head.delivered_ms);
        at += end + 1;
    }
    if at < bytes.len() {
        tracing::warn!(
            file = %path.display(),
            bytes = bytes.len() - at,
            "the end of a delivered-records file was cut short by a crash; cut off"
        );
        open.file.set_len(at as u64)?;
    }
    open.len = at as u64;
    Ok(open)
}

/// Writes a segment's index (to a temporary file, synced, then renamed into place).
fn write_index(dir: &Path, o: &Open) -> Result<Sealed, StoreError> {
    let count = u32::try_from(o.index.len()).map_err(|_| invalid("segment too large".into()))?;
    let mut bytes = Vec::with_capacity((HEADER + ENTRY * count as u64) as usize);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&count.to_be_bytes());
    bytes.extend_from_slice(&o.first_ms.to_be_bytes());
    bytes.extend_from_slice(&o.newest_ms.to_be_bytes());
    for (&id, &(off, len)) in &o.index {
        bytes.extend_from_slice(&Entry { id, off, len }.encode());
    }
    let tmp = dir.join(format!("{:016x}.idx.tmp", o.n));
    let mut f = File::create(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, idx_path(dir, o.n))?;
    File::open(dir)?.sync_all()?;
    Ok(Sealed {
        n: o.n,
        count,
        newest_ms: o.newest_ms,
        min: o.index.keys().next().copied().unwrap_or(0),
        max: o.index.keys().next_back().copied().unwrap_or(0),
    })
}

/// A sealed segment's header, and its first and last ids.
fn read_header(dir: &Path, n: u64) -> Result<Sealed, StoreError> {
    let path = idx_path(dir, n);
    let f = File::open(&path)?;
    let mut h = [0; HEADER as usize];
    f.read_exact_at(&mut h, 0)?;
    let count = u32::from_be_bytes(h[8..12].try_into().expect("4 bytes"));
    let size = f.metadata()?.len();
    if &h[..8] != MAGIC || size != HEADER + ENTRY * count as u64 {
        return Err(invalid(format!(
            "{} is not an index of delivered records",
            path.display()
        )));
    }
    let newest_ms = u64::from_be_bytes(h[20..28].try_into().expect("8 bytes"));
    let (min, max) = if count == 0 {
        (0, 0)
    } else {
        (read_entry(&f, 0)?.id, read_entry(&f, count - 1)?.id)
    };
    Ok(Sealed {
        n,
        count,
        newest_ms,
        min,
        max,
    })
}

fn read_entry(f: &File, i: u32) -> Result<Entry, StoreError> {
    let mut b = [0; ENTRY as usize];
    f.read_exact_at(&mut b, HEADER + i as u64 * ENTRY)?;
    Ok(Entry::decode(&b))
}

/// The first entry of a sealed index whose id is `k` or more (`count` when there is none).
fn lower_bound(f: &File, count: u32, k: u128) -> Result<u32, StoreError> {
    let (mut lo, mut hi) = (0, count);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if read_entry(f, mid)?.id < k {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

fn read_line(f: &File, off: u32, len: u32) -> Result<Delivered, StoreError> {
    let mut b = vec![0; len as usize];
    f.read_exact_at(&mut b, off as u64)?;
    Ok(serde_json::from_slice(&b)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ConnectionId, DeliveryId, EventId};
    use crate::render::CardKind;

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
            assert_eq!(h.get(d.record.id.as_str()).unwrap().as_ref(), Some(d));
        }
        assert_eq!(h.get(DeliveryId::new().as_str()).unwrap(), None);
        assert_eq!(h.get("dlv_nonsense").unwrap(), None);

        let mut sorted = ids(&all);
        sorted.sort();
        assert_eq!(ids(&h.page(None, 100, &|_| true).unwrap()), sorted);
        // Pages follow one another.
        let first = h.page(None, 3, &|_| true).unwrap();
        assert_eq!(ids(&first), sorted[..3]);
        let next = h
            .page(Some(first[2].record.id.as_str()), 3, &|_| true)
            .unwrap();
        assert_eq!(ids(&next), sorted[3..6]);
        // A filter reads on past what it passes over.
        let only_b = h.page(None, 100, &|r| r.connection == b).unwrap();
        assert_eq!(only_b.len(), 5);
        assert!(only_b.iter().all(|d| d.record.connection == b));
        // Text that is no id still pages as text does.
        assert_eq!(h.page(Some("dlv_"), 100, &|_| true).unwrap().len(), 11);
        assert!(h.page(Some("dlw"), 100, &|_| true).unwrap().is_empty());
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
        let page = h.page(None, 10, &|_| true).unwrap();
        assert_eq!(page.len(), 2);
        assert_eq!(page.iter().find(|p| p.record.id == d.record.id), Some(&d));
        assert_eq!(h.get(d.record.id.as_str()).unwrap(), Some(d));
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
        assert_eq!(h.get(old[0].record.id.as_str()).unwrap(), None);
        assert_eq!(
            ids(&h.page(None, 10, &|_| true).unwrap()),
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
        assert_eq!(ids(&h.page(None, 100, &|_| true).unwrap()), sorted);
        for d in &all {
            assert_eq!(h.get(d.record.id.as_str()).unwrap().as_ref(), Some(d));
        }
        assert!(!files(dir.path()).iter().any(|f| f.ends_with(".tmp")));
        assert!(!files(dir.path()).contains(&format!("{:016x}.idx", 9)));
        // Appending goes on after the cut, and the line reads back.
        let more = record(&con, 2_000);
        h.append(&more).unwrap();
        drop(h);
        let h = History::open_with(dir.path(), 3).unwrap();
        assert_eq!(h.len(), 8);
        assert_eq!(h.get(more.record.id.as_str()).unwrap(), Some(more));
    }

    #[test]
    fn the_open_segment_holds_at_most_max_records() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open_with(dir.path(), 5).unwrap();
        let con = ConnectionId::new();
        for i in 0..23 {
            h.append(&record(&con, 1_000 + i)).unwrap();
            assert!(h.inner.lock().unwrap().open.index.len() <= 5);
        }
        assert_eq!(h.len(), 23);
        assert_eq!(h.inner.lock().unwrap().sealed.len(), 4);
    }
}

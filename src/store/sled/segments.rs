//! Records kept out of sled's log in segment files, each removed whole once its newest record
//! is older than what is kept: delivered records ([`super::history`]) and upstream delivery
//! ids ([`super::seen`]).
//!
//! In: records with a 128-bit key and a time ([`Record`]), the clock and how long to keep them
//! at each prune. Out: a record by its key (the latest appended, if one came twice), records
//! in key order (a merge of the segments), how many are kept.
//! Guarantees: a record is found as soon as [`Segments::append`] returns; it reaches the
//! operating system at the next [`Segments::write`] (a killed process loses only what was
//! appended since) and the disk at the next [`Segments::sync`]. Appends are gathered in memory
//! (at most [`PENDING_BYTES`]) and written with one `write` (the group commit calls it once per
//! commit), not one a record: at thousands of records a second, a syscall each was most of
//! what the files cost (examples/BENCHMARKS.md). Pruning deletes
//! whole files, so the space is the file system's again at once (sled reclaims a segment of
//! its log only when nothing in it is live, and records kept for days beside cards kept for a
//! second pinned every segment: its disk grew with the traffic, not with what was kept).
//! Memory holds, per segment, a few numbers and every 256th key of its index (a lookup reads
//! one 6 KB block of it), and the open segment's index (at most [`SEGMENT_RECORDS`] entries);
//! opening reads each sealed segment's header and those keys, and the open segment. Keys in
//! no order (hashes) need a filter, so that a lookup of a key that is not there reads no
//! segment's index (but for about 0.1 % of the keys, by chance): each sealed segment writes
//! a filter of its keys (a Bloom filter, 10 bits a key), held in memory only until the filter
//! shared by every sealed segment, on disk, is built again to take its keys ([`shared`]:
//! one 64-byte read a lookup); that happens once [`UNSHARED_SEGMENTS`] keep theirs. So memory
//! grows with the keys kept by 16 bytes in 256 (filters in memory, 10 bits a key, were
//! 1.25 MB a million ids).
//!
//! Layout, in the folder given: `N.log` (N in hex, one per segment), one JSON record a line in
//! the order appended; `N.idx` once the segment is sealed: a header (magic, count, first and
//! newest time, the filter's length), 24-byte entries sorted by key (the key, the line's offset
//! and length), then the filter; `filter`, the shared filter. The segment with the highest
//! number and no index is the open one; after a crash its torn last line is cut off, and a
//! sealed log without its index (a crash while sealing), or with an index this version does
//! not read, is indexed again.

use std::collections::{BTreeMap, BinaryHeap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{de::DeserializeOwned, Serialize};

use crate::store::StoreError;
use shared::mix;

pub mod shared;

/// A record kept in segment files.
pub trait Record: Serialize + DeserializeOwned {
    /// Its key: a later record with the same key replaces it. `None`: it cannot be kept.
    fn key(&self) -> Option<u128>;
    /// When it was made (Unix ms): a segment goes once its newest record is past keep.
    fn at_ms(&self) -> u64;
    /// Whether sealed segments keep a Bloom filter of their keys: for keys in no order
    /// (hashes); keys that sort by time (ULIDs) are found by each segment's smallest and
    /// largest key instead, and spare the filter's memory.
    const FILTERED: bool = true;
}

/// Records in a segment before it is sealed and another is begun: bounds the open segment's
/// index in memory (about 400 KB).
pub const SEGMENT_RECORDS: usize = 8_192;

/// Bytes in a segment's log before it is sealed (records with long attempt logs).
const SEGMENT_BYTES: u64 = 64 << 20;

const MAGIC: &[u8; 8] = b"cwseg02\n";
const HEADER: u64 = 8 + 4 + 8 + 8 + 4;
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
    /// The smallest and largest keys in it: a lookup skips the segments outside.
    min: u128,
    max: u128,
    /// Its keys, for lookups, until the shared filter holds them.
    bloom: Bloom,
    /// Whether the shared filter ([`shared::Shared`]) holds its keys (and `bloom` is empty).
    covered: bool,
    /// The key of every [`FENCE`]th entry of its index: a lookup reads one block of the index.
    fences: Vec<u128>,
}

/// Entries of an index a lookup reads at once (6 KB).
const FENCE: u32 = 256;

/// A Bloom filter of a segment's keys: 10 bits and 7 probes a key (about 1 % false
/// positives).
#[derive(Debug)]
struct Bloom(Vec<u64>);

impl Bloom {
    const PROBES: u64 = 7;

    fn with_keys<'a>(keys: impl ExactSizeIterator<Item = &'a u128>, filtered: bool) -> Self {
        if !filtered {
            return Self(Vec::new());
        }
        let words = (keys.len() * 10).div_ceil(64).max(1);
        let mut b = Self(vec![0; words]);
        for &k in keys {
            for bit in b.bits(k).collect::<Vec<_>>() {
                b.0[bit / 64] |= 1 << (bit % 64);
            }
        }
        b
    }

    /// Whether `k` may be in the segment (always, without a filter).
    fn contains(&self, k: u128) -> bool {
        self.0.is_empty()
            || self
                .bits(k)
                .all(|bit| self.0[bit / 64] & (1 << (bit % 64)) != 0)
    }

    /// The bits of a key, by double hashing of the key mixed (ULIDs begin with a time).
    fn bits(&self, k: u128) -> impl Iterator<Item = usize> {
        let m = self.0.len() as u64 * 64;
        let h1 = mix(k as u64 ^ ((k >> 64) as u64).rotate_left(32));
        let h2 = mix(h1) | 1;
        (0..Self::PROBES).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) % m) as usize)
    }
}

/// Bytes appended and not yet written after which [`Segments::append`] writes them itself.
pub const PENDING_BYTES: usize = 256 * 1024;

/// The segment being written.
#[derive(Debug)]
struct Open {
    n: u64,
    file: Arc<File>,
    /// Its length with what is pending.
    len: u64,
    index: BTreeMap<u128, (u32, u32)>,
    first_ms: u64,
    newest_ms: u64,
    /// Lines appended and not yet written: the file's last `pending.len()` bytes to be.
    pending: Vec<u8>,
    /// Written since the last sync.
    dirty: bool,
}

impl Open {
    /// Writes what is pending, with one `write` (a short write goes on where it stopped).
    /// On failure whatever part went out is cut off and it all stays pending, so that the
    /// next call writes it at the right place.
    fn write(&mut self) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if let Err(e) = (&*self.file).write_all(&self.pending) {
            let _ = self.file.set_len(self.written());
            return Err(e.into());
        }
        self.pending.clear();
        if self.pending.capacity() > PENDING_BYTES {
            self.pending.shrink_to(PENDING_BYTES);
        }
        self.dirty = true;
        Ok(())
    }

    /// The length of what is in the file.
    fn written(&self) -> u64 {
        self.len - self.pending.len() as u64
    }

    /// The record at `off`, from what is pending or from the file.
    fn read<T: Record>(&self, off: u32, len: u32) -> Result<T, StoreError> {
        match (off as u64).checked_sub(self.written()) {
            Some(at) => {
                let at = at as usize;
                Ok(serde_json::from_slice(
                    &self.pending[at..at + len as usize],
                )?)
            }
            None => read_line(&self.file, off, len),
        }
    }
}

#[derive(Debug)]
struct Inner {
    /// Oldest first; replaced whole when it changes, so that a lookup takes it with one clone.
    sealed: Arc<Vec<Arc<Sealed>>>,
    open: Open,
    /// The filter of the keys of the sealed segments up to a number, on disk (filtered
    /// records only).
    shared: Option<Arc<shared::Shared>>,
}

/// Sealed segments with filters of their own in memory (filtered records) before the shared
/// filter is built again to hold their keys: bounds that memory (about 80 KB).
pub const UNSHARED_SEGMENTS: usize = 8;

/// Records of one kind in segment files under a folder.
#[derive(Debug)]
pub struct Segments<T> {
    dir: PathBuf,
    max_records: usize,
    inner: Mutex<Inner>,
    /// Held while the shared filter is built (by one thread at a time).
    building: Mutex<()>,
    kind: std::marker::PhantomData<fn() -> T>,
    /// How many times the open segment was synced (tests: what a commit costs).
    syncs: std::sync::atomic::AtomicU64,
}

fn invalid(what: String) -> StoreError {
    StoreError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, what))
}

impl<T: Record> Segments<T> {
    /// Opens (or creates) the segments under `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, SEGMENT_RECORDS)
    }

    /// Like [`Segments::open`], sealing a segment at `max_records` (tests).
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
        // A filter that names segments not there (the folder's files removed by hand) is not
        // this folder's.
        let shared = match T::FILTERED {
            true => shared::Shared::open(dir)?
                .filter(|f| logs.last().is_some_and(|&last| f.through <= last)),
            false => None,
        };
        let through = shared.as_ref().map(|f| f.through);
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
            // A segment the shared filter holds leaves its own filter on disk.
            let covered = through.is_some_and(|t| n <= t);
            let header = match idxs.contains(&n) {
                true => read_header(dir, n, T::FILTERED && !covered)?.map(|mut s| {
                    s.covered = T::FILTERED && covered;
                    s
                }),
                false => None,
            };
            if let Some(s) = header {
                sealed.push(Arc::new(s));
            } else if last && !idxs.contains(&n) {
                open = Some(scan_open::<T>(dir, n)?);
            } else {
                // Sealing stopped before its index was in place, or the index is another
                // version's: index it now.
                let o = scan_open::<T>(dir, n)?;
                sealed.push(Arc::new(write_index(dir, &o, T::FILTERED)?));
            }
        }
        let open = match open {
            Some(o) => o,
            None => new_open(dir, logs.last().map_or(0, |n| n + 1))?,
        };
        let segments = Self {
            dir: dir.to_path_buf(),
            max_records: max_records.max(1),
            inner: Mutex::new(Inner {
                sealed: Arc::new(sealed),
                open,
                shared: shared.map(Arc::new),
            }),
            building: Mutex::new(()),
            kind: std::marker::PhantomData,
            syncs: std::sync::atomic::AtomicU64::new(0),
        };
        segments.tidy_or_warn();
        Ok(segments)
    }

    /// [`Segments::tidy`], its failure logged: the sealed segments then keep their own
    /// filters in memory, and the next call tries again.
    pub fn tidy_or_warn(&self) {
        if let Err(e) = self.tidy() {
            tracing::warn!(
                folder = %self.dir.display(),
                error = %crate::error::ErrorChain(&e),
                "cannot build the shared filter of kept keys; tried again later"
            );
        }
    }

    /// Builds the shared filter again once [`UNSHARED_SEGMENTS`] sealed segments keep filters
    /// of their own in memory; returns whether it did. Reads every sealed index (24 bytes a
    /// key) outside the lock: lookups and appends go on meanwhile. [`Segments::prune`] calls it,
    /// and the store after moving claims.
    pub fn tidy(&self) -> Result<bool, StoreError> {
        if !T::FILTERED {
            return Ok(false);
        }
        let Ok(_building) = self.building.try_lock() else {
            return Ok(false);
        };
        let sealed = self.inner.lock().expect("segments lock").sealed.clone();
        if sealed.iter().filter(|s| !s.covered).count() < UNSHARED_SEGMENTS {
            return Ok(false);
        }
        let Some(through) = sealed.last().map(|s| s.n) else {
            return Ok(false);
        };
        let count = sealed.iter().map(|s| s.count as u64).sum();
        let mut failed = None;
        let reading = sealed.iter().flat_map(|s| {
            let mut keys = Vec::with_capacity(s.count as usize);
            if let Err(e) = index_keys(&self.dir, s, &mut keys) {
                failed.get_or_insert(e);
            }
            keys
        });
        let blocks = shared::blocks_of(reading, count);
        // A segment that could not be read: no filter that would say its keys are not there.
        if let Some(e) = failed {
            return Err(e);
        }
        let built = shared::Shared::write(&self.dir, through, blocks)?;
        let mut inner = self.inner.lock().expect("segments lock");
        let now: Vec<Arc<Sealed>> = inner
            .sealed
            .iter()
            .map(|s| match s.n <= through && !s.covered {
                true => Arc::new(Sealed {
                    bloom: Bloom(Vec::new()),
                    covered: true,
                    fences: s.fences.clone(),
                    ..**s
                }),
                false => s.clone(),
            })
            .collect();
        inner.sealed = Arc::new(now);
        inner.shared = Some(Arc::new(built));
        Ok(true)
    }

    /// Adds a record.
    pub fn append(&self, r: &T) -> Result<(), StoreError> {
        let id = r
            .key()
            .ok_or_else(|| invalid("a record without a key".into()))?;
        let at_ms = r.at_ms();
        let mut line = serde_json::to_vec(r)?;
        line.push(b'\n');
        let mut inner = self.inner.lock().expect("segments lock");
        let o = &inner.open;
        if !o.index.is_empty()
            && (o.index.len() >= self.max_records || o.len + line.len() as u64 > SEGMENT_BYTES)
        {
            self.seal(&mut inner)?;
        }
        let o = &mut inner.open;
        let at = u32::try_from(o.len).map_err(|_| invalid("segment past 4 GiB".into()))?;
        o.pending.extend_from_slice(&line);
        o.index.insert(id, (at, line.len() as u32));
        o.len += line.len() as u64;
        if o.first_ms == 0 {
            o.first_ms = at_ms.max(1);
        }
        o.newest_ms = o.newest_ms.max(at_ms);
        if o.pending.len() >= PENDING_BYTES {
            // Kept pending if it fails: the next write or sync tries again and says why.
            if let Err(e) = o.write() {
                tracing::warn!(folder = %self.dir.display(), error = %crate::error::ErrorChain(&e), "cannot write kept records; tried again at the next commit");
            }
        }
        Ok(())
    }

    /// Hands every record appended so far to the operating system, with one `write`.
    pub fn write(&self) -> Result<(), StoreError> {
        self.inner.lock().expect("segments lock").open.write()
    }

    /// Makes every record appended so far durable.
    pub fn sync(&self) -> Result<(), StoreError> {
        let file = {
            let mut inner = self.inner.lock().expect("segments lock");
            inner.open.write()?;
            if !std::mem::take(&mut inner.open.dirty) {
                return Ok(());
            }
            inner.open.file.clone()
        };
        self.syncs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = file.sync_data() {
            self.inner.lock().expect("segments lock").open.dirty = true;
            return Err(e.into());
        }
        Ok(())
    }

    /// How many times [`Segments::sync`] synced the open segment.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many records are kept.
    pub fn len(&self) -> usize {
        let inner = self.inner.lock().expect("segments lock");
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
            let mut inner = self.inner.lock().expect("segments lock");
            if !inner.open.index.is_empty() && inner.open.first_ms + keep_ms / 10 <= now_ms {
                self.seal(&mut inner)?;
            }
            let (gone, kept): (Vec<_>, Vec<_>) = inner
                .sealed
                .iter()
                .cloned()
                .partition(|s| s.newest_ms < cutoff);
            inner.sealed = Arc::new(kept);
            gone
        };
        let mut n = 0;
        for s in gone {
            // The log first: an index left alone by a crash here is removed at the next open.
            remove_if_there(&log_path(&self.dir, s.n))?;
            remove_if_there(&idx_path(&self.dir, s.n))?;
            n += s.count as usize;
        }
        self.tidy_or_warn();
        Ok(n)
    }

    /// The record with key `k` (the latest, if one came twice).
    pub fn get(&self, k: u128) -> Result<Option<T>, StoreError> {
        let (sealed, shared) = {
            let inner = self.inner.lock().expect("segments lock");
            if let Some(&(off, len)) = inner.open.index.get(&k) {
                return inner.open.read(off, len).map(Some);
            }
            (inner.sealed.clone(), inner.shared.clone())
        };
        // One block of the shared filter, read once, for the segments it holds.
        let mut in_shared = None;
        for s in sealed.iter().rev() {
            if s.min > k || k > s.max {
                continue;
            }
            let passes = match (s.covered, &shared) {
                (true, Some(f)) => match in_shared {
                    Some(v) => v,
                    None => *in_shared.insert(f.may_contain(k)?),
                },
                _ => s.bloom.contains(k),
            };
            if !passes {
                continue;
            }
            // The block whose first key is the last at or below `k`.
            let Some(block) = s.fences.partition_point(|&f| f <= k).checked_sub(1) else {
                continue;
            };
            // A segment pruned meanwhile holds nothing to find.
            let Some(idx) = open_if_there(&idx_path(&self.dir, s.n))? else {
                continue;
            };
            let from = block as u32 * FENCE;
            let n = FENCE.min(s.count - from);
            let mut bytes = vec![0; (n as u64 * ENTRY) as usize];
            idx.read_exact_at(&mut bytes, HEADER + from as u64 * ENTRY)?;
            let found = bytes
                .chunks_exact(ENTRY as usize)
                .map(Entry::decode)
                .find(|e| e.id == k);
            if let Some(e) = found {
                let Some(log) = open_if_there(&log_path(&self.dir, s.n))? else {
                    continue;
                };
                return read_line(&log, e.off, e.len).map(Some);
            }
        }
        Ok(None)
    }

    /// Up to `limit` records with keys after `start`, in key order, that `keep` keeps: a merge
    /// of the segments' indexes, reading the records it shows (and those `keep` passes over).
    pub fn page(
        &self,
        start: Option<u128>,
        limit: usize,
        keep: &dyn Fn(&T) -> bool,
    ) -> Result<Vec<T>, StoreError> {
        let mut cursors = Vec::new();
        let sealed = {
            let mut inner = self.inner.lock().expect("segments lock");
            // The open segment's records are read from its file.
            inner.open.write()?;
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
            let d: T = read_line(cursors[i].log(), e.off, e.len)?;
            if !keep(&d) {
                continue;
            }
            out.push(d);
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    /// How many records the open segment holds (tests).
    #[cfg(test)]
    pub(super) fn open_len(&self) -> usize {
        self.inner.lock().expect("segments lock").open.index.len()
    }

    /// How many segments are sealed (tests).
    #[cfg(test)]
    pub(super) fn sealed_count(&self) -> usize {
        self.inner.lock().expect("segments lock").sealed.len()
    }

    /// How many sealed segments keep a filter of their own in memory (tests).
    #[cfg(test)]
    pub(super) fn filters_in_memory(&self) -> usize {
        let inner = self.inner.lock().expect("segments lock");
        inner
            .sealed
            .iter()
            .filter(|s| !s.bloom.0.is_empty())
            .count()
    }

    /// Seals the open segment (writes its index) and opens the next.
    fn seal(&self, inner: &mut Inner) -> Result<(), StoreError> {
        inner.open.write()?;
        inner.open.file.sync_data()?;
        let sealed = write_index(&self.dir, &inner.open, T::FILTERED)?;
        let next = new_open(&self.dir, inner.open.n + 1)?;
        inner.open = next;
        let mut all = Vec::clone(&inner.sealed);
        all.push(Arc::new(sealed));
        inner.sealed = Arc::new(all);
        Ok(())
    }
}

/// What is pending reaches the operating system when the segments are dropped (a clean stop
/// syncs before that).
impl<T> Drop for Segments<T> {
    fn drop(&mut self) {
        let inner = self.inner.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = inner.open.write() {
            tracing::warn!(folder = %self.dir.display(), error = %crate::error::ErrorChain(&e), "cannot write kept records at shutdown");
        }
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
        pending: Vec::new(),
        dirty: false,
    })
}

/// Reads a segment's log into an open segment: its index rebuilt, a torn last line (a crash
/// in the middle of a write) cut off.
fn scan_open<T: Record>(dir: &Path, n: u64) -> Result<Open, StoreError> {
    use std::io::BufRead;
    let path = log_path(dir, n);
    let size = std::fs::metadata(&path)?.len();
    // Line by line through a small buffer: the whole file read at once stayed in the
    // allocator's free pages after start-up.
    let mut lines = std::io::BufReader::with_capacity(64 * 1024, File::open(&path)?);
    let mut open = new_open(dir, n)?;
    let mut at = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = lines.read_until(b'\n', &mut line)?;
        if read == 0 || line.last() != Some(&b'\n') {
            break;
        }
        let Ok(record) = serde_json::from_slice::<T>(&line[..read - 1]) else {
            break;
        };
        let Some(id) = record.key() else {
            break;
        };
        open.index.insert(id, (at as u32, read as u32));
        if open.first_ms == 0 {
            open.first_ms = record.at_ms().max(1);
        }
        open.newest_ms = open.newest_ms.max(record.at_ms());
        at += read as u64;
    }
    if at < size {
        tracing::warn!(
            file = %path.display(),
            bytes = size - at,
            "the end of a store file was cut short by a crash; cut off"
        );
        open.file.set_len(at)?;
    }
    open.len = at;
    Ok(open)
}

/// Writes a segment's index (to a temporary file, synced, then renamed into place).
fn write_index(dir: &Path, o: &Open, filtered: bool) -> Result<Sealed, StoreError> {
    let count = u32::try_from(o.index.len()).map_err(|_| invalid("segment too large".into()))?;
    let bloom = Bloom::with_keys(o.index.keys(), filtered);
    let mut bytes =
        Vec::with_capacity((HEADER + ENTRY * count as u64) as usize + bloom.0.len() * 8);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&count.to_be_bytes());
    bytes.extend_from_slice(&o.first_ms.to_be_bytes());
    bytes.extend_from_slice(&o.newest_ms.to_be_bytes());
    bytes.extend_from_slice(&(bloom.0.len() as u32).to_be_bytes());
    for (&id, &(off, len)) in &o.index {
        bytes.extend_from_slice(&Entry { id, off, len }.encode());
    }
    for w in &bloom.0 {
        bytes.extend_from_slice(&w.to_be_bytes());
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
        bloom,
        covered: false,
        fences: o.index.keys().step_by(FENCE as usize).copied().collect(),
    })
}

/// Adds the keys of a sealed segment's index to `keys` (none if it was pruned meanwhile).
fn index_keys(dir: &Path, s: &Sealed, keys: &mut Vec<u128>) -> Result<(), StoreError> {
    let Some(idx) = open_if_there(&idx_path(dir, s.n))? else {
        return Ok(());
    };
    let mut bytes = vec![0; (FENCE as u64 * ENTRY) as usize];
    let mut at = 0;
    while at < s.count {
        let n = FENCE.min(s.count - at);
        let block = &mut bytes[..(n as u64 * ENTRY) as usize];
        idx.read_exact_at(block, HEADER + at as u64 * ENTRY)?;
        keys.extend(
            block
                .chunks_exact(ENTRY as usize)
                .map(|b| Entry::decode(b).id),
        );
        at += n;
    }
    Ok(())
}

/// A sealed segment's header, filter (if `with_filter`), and first and last keys; `None`
/// when the index is not one this version reads (to be made again from the log).
fn read_header(dir: &Path, n: u64, with_filter: bool) -> Result<Option<Sealed>, StoreError> {
    let path = idx_path(dir, n);
    let f = File::open(&path)?;
    let size = f.metadata()?.len();
    let mut h = [0; HEADER as usize];
    if size < HEADER {
        return Ok(None);
    }
    f.read_exact_at(&mut h, 0)?;
    let count = u32::from_be_bytes(h[8..12].try_into().expect("4 bytes"));
    let words = u32::from_be_bytes(h[28..32].try_into().expect("4 bytes"));
    if &h[..8] != MAGIC || size != HEADER + ENTRY * count as u64 + 8 * words as u64 {
        tracing::warn!(file = %path.display(), "an index this version does not read; made again from its log");
        return Ok(None);
    }
    let newest_ms = u64::from_be_bytes(h[20..28].try_into().expect("8 bytes"));
    let mut raw = vec![0; if with_filter { words as usize * 8 } else { 0 }];
    f.read_exact_at(&mut raw, HEADER + ENTRY * count as u64)?;
    let bloom = Bloom(
        raw.chunks_exact(8)
            .map(|w| u64::from_be_bytes(w.try_into().expect("8 bytes")))
            .collect(),
    );
    let (min, max) = if count == 0 {
        (0, 0)
    } else {
        (read_entry(&f, 0)?.id, read_entry(&f, count - 1)?.id)
    };
    let fences = (0..count)
        .step_by(FENCE as usize)
        .map(|i| read_entry(&f, i).map(|e| e.id))
        .collect::<Result<_, _>>()?;
    Ok(Some(Sealed {
        n,
        count,
        newest_ms,
        min,
        max,
        bloom,
        covered: false,
        fences,
    }))
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

fn read_line<T: Record>(f: &File, off: u32, len: u32) -> Result<T, StoreError> {
    let mut b = vec![0; len as usize];
    f.read_exact_at(&mut b, off as u64)?;
    Ok(serde_json::from_slice(&b)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Note {
        k: u128,
        at: u64,
    }

    impl Record for Note {
        fn key(&self) -> Option<u128> {
            Some(self.k)
        }
        fn at_ms(&self) -> u64 {
            self.at
        }
    }

    #[test]
    fn the_filter_has_every_key_and_few_others() {
        let keys: Vec<u128> = (0..10_000u128).map(|i| i * 0x9e37_79b9_7f4a_7c15).collect();
        let b = Bloom::with_keys(keys.iter(), true);
        assert!(Bloom::with_keys(keys.iter(), false).contains(u128::MAX));
        assert!(keys.iter().all(|&k| b.contains(k)));
        let others = (0..10_000u128)
            .map(|i| (i + 1) << 90)
            .filter(|&k| b.contains(k))
            .count();
        assert!(others < 300, "{others} false positives in 10,000");
    }

    #[test]
    fn appends_are_written_together_at_the_next_write_and_found_before() {
        let dir = tempfile::tempdir().unwrap();
        let s = Segments::<Note>::open_with(dir.path(), 100_000).unwrap();
        let log = log_path(dir.path(), 0);
        let size = || std::fs::metadata(&log).unwrap().len();
        let notes: Vec<Note> = (1..=3).map(|k| Note { k, at: 10 }).collect();
        for n in &notes {
            s.append(n).unwrap();
        }
        // Nothing in the file yet: the three lines wait for one write.
        assert_eq!(size(), 0);
        for n in &notes {
            assert_eq!(s.get(n.k).unwrap().as_ref(), Some(n), "found while pending");
        }
        s.write().unwrap();
        let written = size();
        assert_eq!(
            std::fs::read_to_string(&log).unwrap().lines().count(),
            3,
            "all three in one write"
        );
        for n in &notes {
            assert_eq!(s.get(n.k).unwrap().as_ref(), Some(n), "found once written");
        }
        // A page reads the open segment's file: what is pending is written first.
        let more = Note { k: 4, at: 11 };
        s.append(&more).unwrap();
        assert_eq!(size(), written);
        assert_eq!(s.page(None, 10, &|_| true).unwrap().len(), 4);
        assert!(size() > written);
        // What is pending past PENDING_BYTES is written without waiting for a commit.
        let before = size();
        let mut k = 100;
        while size() == before {
            s.append(&Note { k, at: 12 }).unwrap();
            k += 1;
            assert!(k < 100 + PENDING_BYTES as u128, "never written");
        }
        // And what is pending at a drop reaches the file: a reopen finds every record.
        s.append(&Note { k: 7, at: 13 }).unwrap();
        drop(s);
        let s = Segments::<Note>::open_with(dir.path(), 100_000).unwrap();
        assert_eq!(s.get(7).unwrap(), Some(Note { k: 7, at: 13 }));
        assert_eq!(s.len() as u128, 4 + (k - 100) + 1);
    }

    #[test]
    fn an_index_this_version_does_not_read_is_made_again_from_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let notes: Vec<Note> = (1..=5)
            .map(|k| Note {
                k,
                at: 10 + k as u64,
            })
            .collect();
        {
            let s = Segments::<Note>::open_with(dir.path(), 2).unwrap();
            for n in &notes {
                s.append(n).unwrap();
            }
        }
        // Two sealed segments; the first one's index from another version.
        std::fs::write(idx_path(dir.path(), 0), b"cwdlv01\n0123456789").unwrap();
        let s = Segments::<Note>::open_with(dir.path(), 2).unwrap();
        assert_eq!(s.len(), 5);
        for n in &notes {
            assert_eq!(s.get(n.k).unwrap().as_ref(), Some(n));
        }
        assert_eq!(s.page(None, 10, &|_| true).unwrap(), notes);
        assert!(read_header(dir.path(), 0, true).unwrap().is_some());
    }

    /// A lookup reads the one block of the index its key falls in: every key is found, in
    /// every block, after a reopen too, and keys between them are not.
    #[test]
    fn lookups_find_every_key_through_the_fences() {
        let dir = tempfile::tempdir().unwrap();
        let notes: Vec<Note> = (0..1_000u128)
            .map(|i| Note {
                k: (i * 7 + 3) << 64,
                at: 5,
            })
            .collect();
        for reopen in [false, true] {
            let s = Segments::<Note>::open_with(dir.path(), 600).unwrap();
            if !reopen {
                for n in &notes {
                    s.append(n).unwrap();
                }
            }
            assert_eq!(s.sealed_count(), 1);
            for n in &notes {
                assert_eq!(s.get(n.k).unwrap().as_ref(), Some(n));
                assert_eq!(s.get(n.k + 1).unwrap(), None);
            }
            assert_eq!(s.get(0).unwrap(), None);
            assert_eq!(s.get(u128::MAX).unwrap(), None);
        }
    }

    /// A sealed index that cannot be read while the shared filter is built: no filter is
    /// written (one would say that segment's keys are not there), and the segments keep
    /// their own until it can be.
    #[test]
    fn no_shared_filter_is_written_without_every_segments_keys() {
        let dir = tempfile::tempdir().unwrap();
        let s = Segments::<Note>::open_with(dir.path(), 10).unwrap();
        for i in 0..90u128 {
            s.append(&Note {
                k: i << 64 | i.wrapping_mul(0x9e37_79b9),
                at: 1,
            })
            .unwrap();
        }
        assert_eq!(s.filters_in_memory(), 8);
        let idx = idx_path(dir.path(), 3);
        let saved = std::fs::read(&idx).unwrap();
        std::fs::remove_file(&idx).unwrap();
        std::fs::create_dir(&idx).unwrap();
        assert!(s.tidy().is_err());
        assert!(!shared::path(dir.path()).exists());
        assert_eq!(s.filters_in_memory(), 8);
        std::fs::remove_dir(&idx).unwrap();
        std::fs::write(&idx, saved).unwrap();
        assert!(s.tidy().unwrap());
        assert_eq!(s.filters_in_memory(), 0);
        for i in 0..90u128 {
            let k = i << 64 | i.wrapping_mul(0x9e37_79b9);
            assert_eq!(s.get(k).unwrap(), Some(Note { k, at: 1 }));
        }
    }

    /// Keys in no order: sealed segments' filters leave memory for the shared one on disk once
    /// [`UNSHARED_SEGMENTS`] are sealed, and every key is still found (the latest record of a
    /// key twice appended), after a reopen, a prune, and with the shared filter damaged.
    #[test]
    fn the_shared_filter_takes_sealed_segments_filters_out_of_memory() {
        let dir = tempfile::tempdir().unwrap();
        let key = |i: u128| i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
        let note = |i: u128, at| Note { k: key(i), at };
        let all_found = |s: &Segments<Note>, from: u128, to: u128, at: &dyn Fn(u128) -> u64| {
            for i in from..to {
                assert_eq!(s.get(key(i)).unwrap(), Some(note(i, at(i))), "key {i}");
            }
        };
        let s = Segments::<Note>::open_with(dir.path(), 10).unwrap();
        for i in 0..100 {
            s.append(&note(i, 1_000 + i as u64)).unwrap();
        }
        // 9 sealed, each with its filter, until the shared one is built.
        assert_eq!((s.sealed_count(), s.filters_in_memory()), (9, 9));
        assert!(s.tidy().unwrap());
        assert_eq!(s.filters_in_memory(), 0);
        assert!(shared::path(dir.path()).exists());
        all_found(&s, 0, 100, &|i| 1_000 + i as u64);
        let strangers = (1_000..2_000).filter(|&i| s.get(key(i)).unwrap().is_some());
        assert_eq!(strangers.count(), 0);
        // Sealed after it: filters of their own, below the bound: not built again.
        for i in 100..130 {
            s.append(&note(i, 1_000 + i as u64)).unwrap();
        }
        // Key 5 again, later: its latest record is the one found, in the open segment and
        // once that is sealed and shared.
        s.append(&note(5, 9_000)).unwrap();
        let at = |i| if i == 5 { 9_000 } else { 1_000 + i as u64 };
        assert_eq!((s.sealed_count(), s.filters_in_memory()), (13, 4));
        assert!(!s.tidy().unwrap());
        all_found(&s, 0, 130, &at);
        drop(s);

        // Reopened: the shared filter is read, not built; the four after it keep theirs.
        let s = Segments::<Note>::open_with(dir.path(), 10).unwrap();
        assert_eq!((s.sealed_count(), s.filters_in_memory()), (13, 4));
        all_found(&s, 0, 130, &at);
        for i in 130..200 {
            s.append(&note(i, 1_000 + i as u64)).unwrap();
        }
        all_found(&s, 0, 200, &at);
        // Pruned: the first 5 segments' keys (times 1,000..1,049) are gone (their bits stay in
        // the shared filter until it is built again, at this prune: 11 unshared).
        assert_eq!(
            s.prune(1_050 + 1_000, Duration::from_millis(1_000))
                .unwrap(),
            50
        );
        assert_eq!(s.filters_in_memory(), 0);
        assert!((0..50)
            .filter(|&i| i != 5)
            .all(|i| s.get(key(i)).unwrap().is_none()));
        all_found(&s, 50, 200, &at);
        assert_eq!(s.get(key(5)).unwrap(), Some(note(5, 9_000)));
        drop(s);

        // A shared filter that does not read: each segment's own is read and the shared one
        // made again at once (more than the bound are sealed).
        std::fs::write(shared::path(dir.path()), b"cwflt01\n").unwrap();
        let s = Segments::<Note>::open_with(dir.path(), 10).unwrap();
        assert_eq!(s.filters_in_memory(), 0);
        all_found(&s, 50, 200, &at);
        assert_eq!(s.get(key(5)).unwrap(), Some(note(5, 9_000)));
    }
}

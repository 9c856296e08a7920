//! One Bloom filter, on disk, of the keys of every sealed segment up to a number: what keeps
//! the memory of keys in no order (upstream delivery ids) from growing with how many are kept.
//!
//! In: the keys of the sealed segments numbered up to `through`, when it is built; a key, when
//! asked. Out: whether the key may be in one of them (never "no" for a key that is), reading
//! one 64-byte block of the file.
//! Guarantees: the file is written whole to a temporary file, synced and renamed into place,
//! so a crash leaves the old filter or the new one; a file that does not read as this
//! version's is ignored (the segments keep their own filters in memory until it is built
//! again). Keys of segments pruned since it was built stay in it: they cost a lookup that
//! passes by chance, not a wrong answer.
//!
//! Layout of `<folder>/filter`: a header (magic, `through`, the number of blocks), then the
//! blocks, 512 bits each. A key sets 11 bits of one block (a blocked Bloom filter: one read a
//! lookup), 16 bits a key (2 MB a million, on disk): about 0.1 % of the keys not in it pass,
//! and each of those reads a block of every sealed segment's index.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// splitmix64's finalizer.
pub(super) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
    z ^ (z >> 31)
}

const MAGIC: &[u8; 8] = b"cwflt01\n";
const HEADER: u64 = 8 + 8 + 8;
const BLOCK: usize = 64;
const PROBES: u32 = 11;
const BITS_A_KEY: u64 = 16;

/// The filter of the sealed segments numbered up to [`Shared::through`].
#[derive(Debug)]
pub(super) struct Shared {
    file: File,
    blocks: u64,
    /// The highest segment number whose keys it holds.
    pub through: u64,
}

pub(super) fn path(dir: &Path) -> PathBuf {
    dir.join("filter")
}

/// The block a key falls in, and its bits there (0..512).
fn place(k: u128, blocks: u64) -> (u64, [u16; PROBES as usize]) {
    let h = mix(k as u64 ^ ((k >> 64) as u64).rotate_left(32));
    let block = ((h as u128 * blocks as u128) >> 64) as u64;
    // 9 bits a probe, 7 from one word and 4 from the next.
    let h2 = mix(h ^ 0x9e37_79b9_7f4a_7c15);
    let h3 = mix(h2);
    let mut bits = [0; PROBES as usize];
    for (i, b) in bits.iter_mut().enumerate() {
        let word = if i < 7 {
            h2 >> (9 * i)
        } else {
            h3 >> (9 * (i - 7))
        };
        *b = (word & 511) as u16;
    }
    (block, bits)
}

fn has(block: &[u8], bits: &[u16]) -> bool {
    bits.iter()
        .all(|&b| block[b as usize / 8] & (1 << (b % 8)) != 0)
}

/// The blocks of a filter of `keys` (`count` of them), in memory: a pure function of them.
pub(super) fn blocks_of(keys: impl Iterator<Item = u128>, count: u64) -> (u64, Vec<u8>) {
    let blocks = (count * BITS_A_KEY).div_ceil(BLOCK as u64 * 8).max(1);
    let mut bytes = vec![0u8; blocks as usize * BLOCK];
    for k in keys {
        let (block, bits) = place(k, blocks);
        let block = &mut bytes[block as usize * BLOCK..][..BLOCK];
        for b in bits {
            block[b as usize / 8] |= 1 << (b % 8);
        }
    }
    (blocks, bytes)
}

impl Shared {
    /// Writes a filter made by [`blocks_of`] of the keys of the segments numbered up to
    /// `through` to `dir`, replacing the one there, and opens it.
    pub fn write(
        dir: &Path,
        through: u64,
        (blocks, bytes): (u64, Vec<u8>),
    ) -> std::io::Result<Self> {
        let tmp = dir.join("filter.tmp");
        let mut f = File::create(&tmp)?;
        f.write_all(MAGIC)?;
        f.write_all(&through.to_be_bytes())?;
        f.write_all(&blocks.to_be_bytes())?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        drop(bytes);
        std::fs::rename(&tmp, path(dir))?;
        File::open(dir)?.sync_all()?;
        Ok(Self {
            file: File::open(path(dir))?,
            blocks,
            through,
        })
    }

    /// The filter in `dir`, if there is one this version reads.
    pub fn open(dir: &Path) -> std::io::Result<Option<Self>> {
        let file = match File::open(path(dir)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let size = file.metadata()?.len();
        let mut h = [0; HEADER as usize];
        if size < HEADER {
            return Ok(None);
        }
        file.read_exact_at(&mut h, 0)?;
        let through = u64::from_be_bytes(h[8..16].try_into().expect("8 bytes"));
        let blocks = u64::from_be_bytes(h[16..24].try_into().expect("8 bytes"));
        if &h[..8] != MAGIC
            || blocks == 0
            || Some(size)
                != blocks
                    .checked_mul(BLOCK as u64)
                    .and_then(|b| b.checked_add(HEADER))
        {
            return Ok(None);
        }
        Ok(Some(Self {
            file,
            blocks,
            through,
        }))
    }

    /// Whether `k` may be among its keys.
    pub fn may_contain(&self, k: u128) -> std::io::Result<bool> {
        let (block, bits) = place(k, self.blocks);
        let mut b = [0; BLOCK];
        self.file
            .read_exact_at(&mut b, HEADER + block * BLOCK as u64)?;
        Ok(has(&b, &bits))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: u128, salt: u128) -> impl Iterator<Item = u128> {
        (0..n).map(move |i| (i ^ salt).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))
    }

    #[test]
    fn it_holds_every_key_and_few_others() {
        let (blocks, bytes) = blocks_of(keys(50_000, 0), 50_000);
        assert_eq!(blocks, (50_000 * BITS_A_KEY).div_ceil(512));
        let check = |k| {
            let (block, bits) = place(k, blocks);
            has(&bytes[block as usize * BLOCK..][..BLOCK], &bits)
        };
        assert!(keys(50_000, 0).all(check));
        let others = keys(50_000, 1 << 100).filter(|&k| check(k)).count();
        assert!(others < 100, "{others} of 50,000 others pass");
    }

    #[test]
    fn on_disk_it_answers_as_built_and_a_file_of_another_kind_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Shared::open(dir.path()).unwrap().is_none());
        let built = Shared::write(dir.path(), 41, blocks_of(keys(1_000, 0), 1_000)).unwrap();
        let f = Shared::open(dir.path()).unwrap().unwrap();
        assert_eq!((f.through, f.blocks), (41, built.blocks));
        for k in keys(1_000, 0) {
            assert!(f.may_contain(k).unwrap());
        }
        assert!(keys(1_000, 7 << 90).any(|k| !f.may_contain(k).unwrap()));
        // Cut short (a disk that filled while it was written and renamed), or another
        // version's: not read.
        let len = std::fs::metadata(path(dir.path())).unwrap().len();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path(dir.path()))
            .unwrap();
        file.set_len(len - 1).unwrap();
        assert!(Shared::open(dir.path()).unwrap().is_none());
        std::fs::write(path(dir.path()), b"cwflt00\n").unwrap();
        assert!(Shared::open(dir.path()).unwrap().is_none());
    }
}

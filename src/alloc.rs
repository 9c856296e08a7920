//! The allocator's housekeeping: handing freed memory back to the system at quiet moments.
//!
//! jemalloc returns freed pages to the system a while after they were freed (`dirty_decay_ms`),
//! but only as a side effect of later allocations in the same arena. Memory freed just before
//! the gateway goes quiet — what loading rules and templates used and dropped, such as the
//! parsed GitHub schemas — would stay resident until traffic came. [`release_free_pages`] hands
//! it back at once; `serve` calls it when it starts listening and after each reload.
//!
//! Everything here goes through jemalloc's control interface. In a program whose allocator is
//! another one, the calls reach a jemalloc that holds nothing, and change nothing.

use tikv_jemalloc_ctl::{Access, AsName};

/// Returns every arena's free dirty pages to the system now; the arenas' decay settings are
/// kept. Returns how many arenas were purged.
pub fn release_free_pages() -> usize {
    let Ok(arenas) = tikv_jemalloc_ctl::arenas::narenas::read() else {
        return 0;
    };
    let mut purged = 0;
    for i in 0..arenas {
        let key = format!("arena.{i}.dirty_decay_ms\0");
        let key = key.as_bytes().name();
        // An arena no thread has used yet does not exist: reading it fails.
        let Ok(decay_ms) = Access::<isize>::read(key) else {
            continue;
        };
        // A decay time of 0 purges at once what the arena holds; then the setting goes back.
        if Access::<isize>::write(key, 0).is_ok() {
            purged += 1;
        }
        let _ = Access::<isize>::write(key, decay_ms);
    }
    purged
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pages freed but not yet returned to the system in the calling thread's arena.
    fn dirty_pages_here() -> Option<usize> {
        tikv_jemalloc_ctl::epoch::advance().ok()?;
        let arena: u32 = Access::read(b"thread.arena\0".name()).ok()?;
        let key = format!("stats.arenas.{arena}.pdirty\0");
        Access::<usize>::read(key.as_bytes().name()).ok()
    }

    #[test]
    fn freed_pages_go_back_to_the_system_at_once() {
        // 64 MB in large (page-run) allocations, freed: they stay dirty in this thread's arena
        // until decay, unless released.
        let blocks: Vec<Vec<u8>> = (0..4096).map(|i| vec![i as u8; 16 * 1024]).collect();
        drop(blocks);
        let before = dirty_pages_here().expect("jemalloc is this test's allocator");
        assert!(before * 4096 >= 32 << 20, "freed but kept: {before} pages");
        assert!(release_free_pages() > 0);
        let after = dirty_pages_here().expect("jemalloc is this test's allocator");
        assert!(
            after * 4096 < 8 << 20,
            "released: {before} pages before, {after} after"
        );
    }
}

//! Settings of the global allocator (mimalloc, installed by the binary).
//!
//! mimalloc (v3, the crate's default) keeps memory a thread freed for a second before returning
//! it to the OS, and it purges only when it is called, so an idle gateway kept what start-up or
//! the last burst freed. Under load the gateway frees records, bodies and buffers on other
//! threads than the ones that made them (the history writer, sled's I/O threads). Returning
//! freed pages at once took idle RSS with 10,000 tools from about 160 MB to about 134 MB, and a
//! soak's RSS at a 200,000-record cap from 119–126 MB to 96–99 MB (BENCHMARKS.md, issue 18).
//!
//! "At once" (a delay of 0) cost CPU, though: every page that emptied under load was handed back
//! with `madvise` and faulted in again moments later, with the TLB shootdowns both take; that was
//! about 15 % of a tool call's CPU at 32 connections. A delay of 10 ms keeps the pages a burst
//! reuses and still returns the rest soon: 50 instead of 60 µs per call. A delay alone let
//! memory freed across threads stay where it was, so the serving threads and the history writer
//! also collect their heaps now and then (`return_what_is_due`): the soak's RSS is flat again,
//! and idle RSS with 10,000 tools is 115.5 MB against 111.4 MB at once (BENCHMARKS.md, issue
//! 16, eighth session).

/// The global allocator: mimalloc, asked for a plain block whenever the alignment wanted is one
/// every mimalloc block has.
///
/// `mimalloc::MiMalloc` asks for an aligned block on every allocation (`mi_malloc_aligned`),
/// which checks the alignment, looks for a free block that happens to be aligned, and falls back
/// to a slower search when the next one is not: about 2 % of a tool call's instructions
/// (callgrind, BENCHMARKS.md, issue 16, thirteenth session). Almost every allocation in the
/// gateway wants 1- or 8-byte alignment, which every mimalloc block has: its size classes are
/// multiples of a machine word and its pages start aligned (mimalloc's own `mi_realloc_aligned`
/// takes the plain path for such alignments too).
pub struct Allocator;

/// The alignment every mimalloc block has, whatever its size.
const WORD: usize = std::mem::size_of::<usize>();

// SAFETY: every block comes from mimalloc and goes back to it; a plain block is returned only
// when its natural alignment (`WORD`) is at least the one `layout` asks for, and mimalloc's
// aligned functions serve every other layout.
unsafe impl std::alloc::GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: mimalloc's allocation functions accept any size.
        unsafe {
            if layout.align() <= WORD {
                libmimalloc_sys::mi_malloc(layout.size()) as *mut u8
            } else {
                libmimalloc_sys::mi_malloc_aligned(layout.size(), layout.align()) as *mut u8
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        unsafe {
            if layout.align() <= WORD {
                libmimalloc_sys::mi_zalloc(layout.size()) as *mut u8
            } else {
                libmimalloc_sys::mi_zalloc_aligned(layout.size(), layout.align()) as *mut u8
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from this allocator, so from mimalloc.
        unsafe { libmimalloc_sys::mi_free(ptr as *mut std::ffi::c_void) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout`'s alignment, which the new block
        // keeps.
        unsafe {
            if layout.align() <= WORD {
                libmimalloc_sys::mi_realloc(ptr as *mut std::ffi::c_void, new_size) as *mut u8
            } else {
                libmimalloc_sys::mi_realloc_aligned(
                    ptr as *mut std::ffi::c_void,
                    new_size,
                    layout.align(),
                ) as *mut u8
            }
        }
    }
}

/// `mi_option_purge_delay` in mimalloc's header (`include/mimalloc.h`, `mi_option_e`, index 15
/// in v2 and v3): the Rust bindings name the options around it but not this one. The test below
/// checks that the index is the option whose default is v3's 1,000 ms.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed memory is kept before it goes back to the OS, in milliseconds.
pub const PURGE_DELAY_MS: i64 = 10;

/// Return freed memory to the OS after `PURGE_DELAY_MS` instead of mimalloc's second, unless
/// the operator chose a delay with mimalloc's own `MIMALLOC_PURGE_DELAY`.
pub fn return_freed_memory_soon() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: `mi_option_set` only stores an integer in mimalloc's option table; any value is
    // valid for this option (0 = purge at once).
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, PURGE_DELAY_MS as std::ffi::c_long) }
}

/// `mi_option_allow_thp` in mimalloc v3's `mi_option_e` (index 43, four before
/// `_mi_option_last`); the test below checks both.
const ALLOW_THP: libmimalloc_sys::mi_option_t = 43;

/// Keep the heap in 4 KiB pages: no transparent huge pages for this process, unless the operator
/// chose with mimalloc's own `MIMALLOC_ALLOW_THP`.
///
/// mimalloc asks for huge pages on its arenas (`madvise(MADV_HUGEPAGE)`), and the kernel then
/// backs each touched 2 MiB of them with a whole huge page: a fresh page cost a 2 MiB
/// `clear_page` in the call path (2.4 % of the CPU at 32 connections), and a mostly empty range
/// stayed resident whole. With 4 KiB pages the gateway under load held 31–36 MB instead of
/// 74–79 MB (BENCHMARKS.md, issue 16, tenth session).
/// mimalloc reads its own option only when it maps memory, after the first arena was mapped and
/// advised, so the process-wide switch is set as well.
pub fn use_small_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return;
    }
    // SAFETY: stores an integer in mimalloc's option table.
    unsafe { libmimalloc_sys::mi_option_set(ALLOW_THP, 0) };
    // SAFETY: PR_SET_THP_DISABLE only sets a flag of this process's memory map; it takes no
    // pointers. An error (a kernel without it) leaves huge pages on, which is only slower.
    let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

/// How often each serving thread hands back what it can (`return_what_is_due`).
pub const COLLECT_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// How often a thread's collection is a forced one (`mi_collect(true)`): it also visits the
/// thread's full pages, frees its retired pages, and purges every arena whatever the delay.
///
/// Forced collections made the PostgreSQL soak's RSS flat (BENCHMARKS.md, issue 18, twelfth
/// session): before, RSS stepped up by 5–25 MB at a random minute in about a third of the runs
/// and did not come down. The step had the shape of freed memory whose purge never comes, and
/// mimalloc 3.3's arena code shows how that can happen: a purge pass that finds nothing due
/// resets the process-wide purge deadline, and a page freed into the arena during that pass sets
/// only the arena's own deadline, which no later ordinary pass looks at (the family of
/// microsoft/mimalloc#1246). A purge delay of 0 (no deadlines) was flat too, at about 15 % more
/// CPU per call (eighth session); a forced collection purges whatever the deadlines say. A
/// minute of a three-thread allocation stress did not reproduce the loss, so this is the likely
/// cause, not a proven one.
pub const FORCE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Collect the calling thread's heap: blocks other threads freed into its pages are taken back,
/// pages left empty go back to the arena, and purges whose delay has passed are done; once per
/// `FORCE_EVERY` on each thread the collection is forced. With a purge delay and no such call,
/// a soak's RSS grew by 40 % in five minutes. mimalloc's own documentation suggests this call
/// for a long-running thread whose blocks other threads free.
pub fn return_what_is_due() {
    thread_local! {
        static LAST_FORCED: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
    }
    let force = LAST_FORCED.with(|last| due(last, std::time::Instant::now(), FORCE_EVERY));
    // SAFETY: `mi_collect` only walks mimalloc's own structures of the calling thread (and the
    // arenas); it is safe to call at any time, also when mimalloc is not the global allocator.
    unsafe { libmimalloc_sys::mi_collect(force) }
}

/// `return_what_is_due`, at most once per `COLLECT_EVERY` on each thread: for a runtime's
/// `on_thread_park`, which runs whenever a worker runs out of work (thousands of times a second
/// under load, where collecting each time would cost more than it returns). Without it the main
/// runtime's workers (the acceptor, the event worker, the store's background tasks) never
/// collected their heaps, so blocks other threads freed into their pages waited for their next
/// allocation in that size class. It did not remove the PostgreSQL soak's late RSS step
/// (BENCHMARKS.md, issue 18, eleventh session).
pub fn return_what_is_due_now_and_then() {
    thread_local! {
        static LAST: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
    }
    if LAST.with(|last| due(last, std::time::Instant::now(), COLLECT_EVERY)) {
        return_what_is_due();
    }
}

/// Whether `every` has passed since `last` (or nothing was done yet); if so, `last` becomes
/// `now`.
fn due(
    last: &std::cell::Cell<Option<std::time::Instant>>,
    now: std::time::Instant,
    every: std::time::Duration,
) -> bool {
    let due = last
        .get()
        .is_none_or(|t| now.saturating_duration_since(t) >= every);
    if due {
        last.set(Some(now));
    }
    due
}

/// The purge delay mimalloc uses now, in milliseconds.
pub fn purge_delay_ms() -> i64 {
    // SAFETY: reads mimalloc's option table.
    unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_forces_once_a_second_and_collects_in_between() {
        let last = std::cell::Cell::new(None);
        let t0 = std::time::Instant::now();
        let ms = std::time::Duration::from_millis;
        assert!(
            due(&last, t0, FORCE_EVERY),
            "the first collection is forced"
        );
        assert!(!due(&last, t0 + ms(100), FORCE_EVERY));
        assert!(!due(&last, t0 + ms(999), FORCE_EVERY));
        assert!(due(&last, t0 + ms(1000), FORCE_EVERY));
        assert!(
            !due(&last, t0 + ms(1999), FORCE_EVERY),
            "counted from the last forced one"
        );
        assert!(due(&last, t0 + ms(2000), FORCE_EVERY));
        // A clock read out of order (another core's, a moment earlier) is not due.
        assert!(!due(&last, t0 + ms(1500), FORCE_EVERY));
    }

    #[test]
    fn collecting_forced_or_not_keeps_what_is_live() {
        // SAFETY: mimalloc's own allocation functions, used as a C allocator would be; every
        // block is written within its size and freed once.
        unsafe {
            let blocks: Vec<*mut u8> = (0..64)
                .map(|i| libmimalloc_sys::mi_malloc(1024 + i * 4096) as *mut u8)
                .collect();
            for (i, b) in blocks.iter().enumerate() {
                assert!(!b.is_null());
                std::ptr::write_bytes(*b, i as u8, 1024 + i * 4096);
            }
            for _ in 0..3 {
                // The first call on this thread is forced, the next ones not.
                return_what_is_due();
            }
            libmimalloc_sys::mi_collect(true);
            for (i, b) in blocks.iter().enumerate() {
                let len = 1024 + i * 4096;
                assert!(
                    std::slice::from_raw_parts(*b, len)
                        .iter()
                        .all(|&x| x == i as u8)
                );
                libmimalloc_sys::mi_free(*b as *mut std::ffi::c_void);
            }
        }
        return_what_is_due();
    }

    #[test]
    fn every_layout_gets_a_block_aligned_as_asked_that_keeps_its_bytes() {
        use std::alloc::{GlobalAlloc, Layout};
        let a = Allocator;
        for align in [1usize, 2, 4, 8, 16, 32, 64, 4096] {
            for size in [
                1usize,
                3,
                7,
                8,
                9,
                15,
                16,
                24,
                40,
                100,
                1000,
                70_000,
                3 << 20,
            ] {
                let layout = Layout::from_size_align(size, align).expect("layout");
                // SAFETY: non-zero sizes; every block is written within its size, read back,
                // grown with the same alignment, and freed once with the layout it has.
                unsafe {
                    let p = a.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    std::ptr::write_bytes(p, 0xA5, size);
                    let q = a.realloc(p, layout, size * 2 + 1);
                    assert!(!q.is_null());
                    assert_eq!(q as usize % align, 0, "grown, size {size} align {align}");
                    assert!(
                        std::slice::from_raw_parts(q, size)
                            .iter()
                            .all(|&b| b == 0xA5)
                    );
                    let grown = Layout::from_size_align(size * 2 + 1, align).expect("layout");
                    a.dealloc(q, grown);
                    let z = a.alloc_zeroed(layout);
                    assert!(!z.is_null());
                    assert_eq!(z as usize % align, 0, "zeroed, size {size} align {align}");
                    assert!(std::slice::from_raw_parts(z, size).iter().all(|&b| b == 0));
                    a.dealloc(z, layout);
                }
            }
        }
    }

    #[test]
    fn the_option_is_the_purge_delay_and_is_set() {
        assert!(
            std::env::var_os("MIMALLOC_PURGE_DELAY").is_none(),
            "run the tests without MIMALLOC_PURGE_DELAY"
        );
        // Unset, the option has its documented default: the index names the purge delay.
        assert_eq!(purge_delay_ms(), 1000);
        // The neighbour the bindings do name is where the header puts it.
        assert_eq!(libmimalloc_sys::mi_option_use_numa_nodes, PURGE_DELAY + 1);
        return_freed_memory_soon();
        assert_eq!(purge_delay_ms(), PURGE_DELAY_MS);
    }

    #[test]
    fn the_option_is_allow_thp_and_huge_pages_go_off() {
        assert!(
            std::env::var_os("MIMALLOC_ALLOW_THP").is_none(),
            "run the tests without MIMALLOC_ALLOW_THP"
        );
        assert_eq!(ALLOW_THP, libmimalloc_sys::_mi_option_last - 4);
        // SAFETY: reads mimalloc's option table.
        assert_eq!(unsafe { libmimalloc_sys::mi_option_get(ALLOW_THP) }, 1);
        use_small_pages();
        // SAFETY: reads mimalloc's option table; PR_GET_THP_DISABLE reads a process flag.
        assert_eq!(unsafe { libmimalloc_sys::mi_option_get(ALLOW_THP) }, 0);
        assert_eq!(
            unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) },
            1
        );
    }
}

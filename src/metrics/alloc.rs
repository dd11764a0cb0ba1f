//! A counting global allocator: how the zero-allocation claim is measured.
//!
//! Install it in a binary or test with
//! `#[global_allocator] static ALLOC: CountingAllocator = CountingAllocator;`.
//! It forwards to the system allocator and counts allocation calls (including
//! `realloc`) and bytes with one relaxed atomic add each; `corestream bench`
//! reports allocations per message from it.
//!
//! A thread that is not part of the data path (the observe server's, which allocate
//! per request by design) can leave itself uncounted with
//! [`leave_current_thread_uncounted`]; every other thread of the process counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static ALLOCATED_BYTES: AtomicU64 = AtomicU64::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// The counting allocator (see the module docs).
pub struct CountingAllocator;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged;
// the counters do not affect the memory handed out.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: forwarded contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: forwarded contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: forwarded contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

thread_local! {
    /// Set on threads outside the data path (see the module docs). A const-initialised
    /// `Cell` with no destructor: reading it never allocates, even during thread exit.
    static UNCOUNTED: Cell<bool> = const { Cell::new(false) };
}

/// Stops counting the allocations of the calling thread, for good. For threads
/// outside the data path only (the observe server's); the zero-allocation tests
/// count every other thread.
pub fn leave_current_thread_uncounted() {
    UNCOUNTED.with(|uncounted| uncounted.set(true));
}

#[inline(always)]
fn count(bytes: usize) {
    if !INSTALLED.load(Ordering::Relaxed) {
        INSTALLED.store(true, Ordering::Relaxed);
    }
    if UNCOUNTED.try_with(Cell::get).unwrap_or(false) {
        return;
    }
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    ALLOCATED_BYTES.fetch_add(bytes as u64, Ordering::Relaxed);
}

/// Allocation calls so far in this process (0 if the allocator is not installed).
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// Bytes requested so far in this process.
pub fn allocated_bytes() -> u64 {
    ALLOCATED_BYTES.load(Ordering::Relaxed)
}

/// True once the counting allocator has served an allocation (it is installed).
pub fn is_installed() -> bool {
    INSTALLED.load(Ordering::Relaxed)
}

//! The one door to atomics, threads and shared cells, so loom can model them.
//!
//! Every lock-free structure in corestream (ring, wait cells, counters, ack tickets)
//! reaches its atomics through this module. Built with `RUSTFLAGS="--cfg
//! corestream_loom"`, the same code runs on loom's model-checked types instead (the
//! tokio `src/loom/mod.rs` pattern); see `loom-tests/`. The cfg name is
//! crate-specific because a plain `--cfg loom` also flips tokio into loom mode.

#[cfg(not(corestream_loom))]
mod imp {
    pub use std::sync::Arc;

    pub mod atomic {
        pub use std::sync::atomic::{
            AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence,
        };
    }

    pub mod thread {
        pub use std::thread::{Thread, current, park, park_timeout, spawn, yield_now};
    }

    /// A lock for slow paths only (parking, shutdown); never on a per-message path.
    pub struct Mutex<T>(parking_lot::Mutex<T>);

    pub type MutexGuard<'a, T> = parking_lot::MutexGuard<'a, T>;

    impl<T> Mutex<T> {
        pub fn new(value: T) -> Self {
            Mutex(parking_lot::Mutex::new(value))
        }

        pub fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock()
        }
    }

    /// A condition variable for slow paths only (parking an idle thread).
    #[derive(Default)]
    pub struct Condvar(parking_lot::Condvar);

    impl Condvar {
        pub fn new() -> Self {
            Condvar(parking_lot::Condvar::new())
        }

        /// Waits until notified or `timeout` passes (spurious wake-ups possible).
        pub fn wait_timeout<'a, T>(
            &self,
            mut guard: MutexGuard<'a, T>,
            timeout: std::time::Duration,
        ) -> MutexGuard<'a, T> {
            self.0.wait_for(&mut guard, timeout);
            guard
        }

        pub fn notify_one(&self) {
            self.0.notify_one();
        }
    }

    /// A CPU hint inside a spin loop.
    #[inline(always)]
    pub fn spin_loop() {
        std::hint::spin_loop();
    }

    /// Shared bytes written by one thread and read by another, with the handoff
    /// ordered by atomics elsewhere. In std builds this is a plain buffer.
    pub struct ByteCells {
        ptr: *mut u8,
        len: usize,
        layout: std::alloc::Layout,
    }

    // SAFETY: the cells are only touched through the `unsafe` methods below, whose
    // callers guarantee (by the ring's index protocol) that no byte is written while
    // another thread reads or writes it.
    unsafe impl Send for ByteCells {}
    // SAFETY: as above.
    unsafe impl Sync for ByteCells {}

    impl ByteCells {
        /// Allocates `len` zeroed bytes aligned to `align` (a power of two); `None`
        /// when the allocator cannot give them.
        pub fn try_new(len: usize, align: usize) -> Option<Self> {
            assert!(len > 0, "ByteCells::try_new: zero length");
            let layout = std::alloc::Layout::from_size_align(len, align).expect("ByteCells layout");
            // SAFETY: `layout` has a non-zero size (asserted above).
            let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
            (!ptr.is_null()).then_some(ByteCells { ptr, len, layout })
        }

        pub fn len(&self) -> usize {
            self.len
        }

        pub fn is_empty(&self) -> bool {
            self.len == 0
        }

        /// Copies `src` into the cells at `offset`.
        ///
        /// # Safety
        /// `offset + src.len() <= self.len()`, and no other thread accesses these bytes
        /// until an atomic release by the caller publishes them.
        #[inline(always)]
        pub unsafe fn write(&self, offset: usize, src: &[u8]) {
            debug_assert!(offset + src.len() <= self.len);
            // SAFETY: in bounds and exclusively owned by the caller (see # Safety).
            unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.add(offset), src.len()) }
        }

        /// A shared view of `len` bytes at `offset`.
        ///
        /// # Safety
        /// In bounds; the bytes were published to this thread by an acquire, and are
        /// not written by anyone until the caller's release hands them back.
        #[inline(always)]
        pub unsafe fn slice(&self, offset: usize, len: usize) -> &[u8] {
            debug_assert!(offset + len <= self.len);
            // SAFETY: in bounds and published to the caller (see # Safety).
            unsafe { std::slice::from_raw_parts(self.ptr.add(offset), len) }
        }

        /// Marks that the caller stopped reading `len` bytes at `offset` (loom checks
        /// it; a no-op here).
        #[inline(always)]
        pub fn done_reading(&self, _offset: usize, _len: usize) {}

        /// The address of the first byte (for alignment checks and page offsets).
        pub fn as_ptr(&self) -> *const u8 {
            self.ptr
        }
    }

    impl Drop for ByteCells {
        fn drop(&mut self) {
            // SAFETY: allocated in `new` with this exact layout.
            unsafe { std::alloc::dealloc(self.ptr, self.layout) }
        }
    }
}

#[cfg(corestream_loom)]
mod imp {
    pub use loom::sync::Arc;

    pub mod atomic {
        pub use loom::sync::atomic::{
            AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence,
        };
    }

    /// loom's mutex behind the same `lock()` signature as the std build's.
    pub struct Mutex<T>(loom::sync::Mutex<T>);

    pub type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

    impl<T> Mutex<T> {
        pub fn new(value: T) -> Self {
            Mutex(loom::sync::Mutex::new(value))
        }

        pub fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock().expect("loom mutex poisoned")
        }
    }

    /// loom's condvar. It has no timed wait: a model must not rely on the timeout,
    /// so waiting without one is the stricter check (a lost wake-up deadlocks).
    pub struct Condvar(loom::sync::Condvar);

    impl Condvar {
        pub fn new() -> Self {
            Condvar(loom::sync::Condvar::new())
        }

        pub fn wait_timeout<'a, T>(
            &self,
            guard: MutexGuard<'a, T>,
            _timeout: std::time::Duration,
        ) -> MutexGuard<'a, T> {
            self.0.wait(guard).expect("loom mutex poisoned")
        }

        pub fn notify_one(&self) {
            self.0.notify_one();
        }
    }

    impl Default for Condvar {
        fn default() -> Self {
            Condvar::new()
        }
    }

    pub mod thread {
        pub use loom::thread::{Thread, current, park, spawn, yield_now};

        /// loom has no timed park; a model must not rely on the timeout, so parking
        /// without one is the stricter check (a lost wake-up deadlocks the model).
        pub fn park_timeout(_timeout: std::time::Duration) {
            loom::thread::park();
        }
    }

    /// In a model, spinning must hand control to loom's scheduler.
    pub fn spin_loop() {
        loom::thread::yield_now();
    }

    /// Byte cells that loom tracks one by one, so that a write racing with a read of
    /// the same byte fails the model.
    pub struct ByteCells {
        cells: Box<[loom::cell::UnsafeCell<u8>]>,
        // The bytes are copied out of the cells into this mirror when read, so that a
        // `&[u8]` can be handed out; loom checks the access at copy time.
        mirror: Box<[std::cell::UnsafeCell<u8>]>,
    }

    // SAFETY: see the std version; loom additionally checks it.
    unsafe impl Send for ByteCells {}
    // SAFETY: see the std version; loom additionally checks it.
    unsafe impl Sync for ByteCells {}

    impl ByteCells {
        pub fn try_new(len: usize, _align: usize) -> Option<Self> {
            Some(ByteCells {
                cells: (0..len).map(|_| loom::cell::UnsafeCell::new(0)).collect(),
                mirror: (0..len).map(|_| std::cell::UnsafeCell::new(0)).collect(),
            })
        }

        pub fn len(&self) -> usize {
            self.cells.len()
        }

        pub fn is_empty(&self) -> bool {
            self.cells.is_empty()
        }

        /// # Safety
        /// See the std version.
        pub unsafe fn write(&self, offset: usize, src: &[u8]) {
            for (i, byte) in src.iter().enumerate() {
                // SAFETY: loom checks exclusivity of this access.
                self.cells[offset + i].with_mut(|p| unsafe { *p = *byte });
            }
        }

        /// # Safety
        /// See the std version.
        pub unsafe fn slice(&self, offset: usize, len: usize) -> &[u8] {
            for i in offset..offset + len {
                // SAFETY: loom checks this read against concurrent writes.
                let value = self.cells[i].with(|p| unsafe { *p });
                // SAFETY: the mirror byte is only written by the reader that owns it.
                unsafe { *self.mirror[i].get() = value };
            }
            if len == 0 {
                return &[];
            }
            // SAFETY: the mirror was just filled for this range.
            unsafe { std::slice::from_raw_parts(self.mirror[offset].get(), len) }
        }

        /// Touches the bytes again when the reader is done, so that a writer that
        /// overwrote them while they were still in use fails the model.
        pub fn done_reading(&self, offset: usize, len: usize) {
            for i in offset..offset + len {
                self.cells[i].with(|_| ());
            }
        }

        pub fn as_ptr(&self) -> *const u8 {
            std::ptr::null()
        }
    }
}

pub use imp::*;

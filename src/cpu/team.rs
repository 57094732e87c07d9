//! The pool's threads kept together for one image's forward pass. Sharing one small image
//! layer by layer is a fork-join per layer, and on a virtual machine a sleeping thread
//! takes some tens of microseconds to wake for each of the ~35 layers (onnxruntime's
//! pool spins between layers for the same reason). In a team, the other threads join
//! once and wait between layers by spinning, taking their runs of each layer's items as
//! soon as the leader posts it.
//!
//! A job is posted as one 64-bit state, (generation, items, next item), that members
//! claim runs from by compare-and-swap, and a pointer to the job's closure on the
//! leader's stack. A claim that succeeds proves the job is still running: the leader
//! returns only once every claimed item is done, so the closure outlives every call.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

/// Bits of the state for the next item and the item count; the rest is the generation.
const INDEX_BITS: u32 = 20;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;

/// The most items a team job takes; larger jobs go to the pool as before.
pub(super) const MOST_ITEMS: usize = INDEX_MASK as usize;

struct Job<'a> {
    run: &'a (dyn Fn(Range<usize>) + Sync),
    done: AtomicUsize,
}

pub(super) struct Team {
    state: AtomicU64,
    job: AtomicPtr<Job<'static>>,
    threads: usize,
    finished: AtomicBool,
}

fn pack(generation: u64, items: usize, next: usize) -> u64 {
    (generation << (2 * INDEX_BITS)) | ((items as u64) << INDEX_BITS) | next as u64
}

fn unpack(state: u64) -> (u64, usize, usize) {
    (
        state >> (2 * INDEX_BITS),
        ((state >> INDEX_BITS) & INDEX_MASK) as usize,
        (state & INDEX_MASK) as usize,
    )
}

impl Team {
    pub(super) fn new(threads: usize) -> Self {
        Self {
            state: AtomicU64::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            threads,
            finished: AtomicBool::new(false),
        }
    }

    /// Items per claim: four runs per thread, so that a thread that started late still
    /// gets a share and none waits long for the last.
    fn per_run(&self, items: usize) -> usize {
        items.div_ceil(4 * self.threads).max(1)
    }

    /// Claims and runs runs of the posted job until none is left.
    fn help(&self) {
        loop {
            let state = self.state.load(Ordering::Acquire);
            let (generation, items, next) = unpack(state);
            if next >= items {
                return;
            }
            // Read before the claim: a claim of this generation that succeeds means the
            // job was not finished, so the leader had not posted another, and this
            // pointer (posted before the state that was read) is this generation's.
            let job = self.job.load(Ordering::Acquire);
            let end = (next + self.per_run(items)).min(items);
            if self
                .state
                .compare_exchange_weak(
                    state,
                    pack(generation, items, end),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_err()
            {
                continue;
            }
            // SAFETY: the claim succeeded, so the job is live until its `done` counts
            // this run (the leader waits for that), and `job` is its pointer (above).
            let job = unsafe { &*job };
            // Counted even if the run panics, so that no one waits for it forever.
            let _counted = Counted(&job.done, end - next);
            (job.run)(next..end);
        }
    }

    /// Claims the items no one has claimed yet, without running them.
    fn close(&self) -> usize {
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            let (generation, items, next) = unpack(state);
            if next >= items {
                return 0;
            }
            match self.state.compare_exchange_weak(
                state,
                pack(generation, items, items),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return items - next,
                Err(now) => state = now,
            }
        }
    }

    /// A member other than the leader: helps with each job until the team finishes.
    pub(super) fn follow(&self) {
        while !self.finished.load(Ordering::Acquire) {
            self.help();
            std::hint::spin_loop();
        }
    }

    /// The leader: runs `run` over `0..items` with whichever members are there, and
    /// returns when every item is done.
    pub(super) fn share(&self, items: usize, run: &(dyn Fn(Range<usize>) + Sync)) {
        assert!(items <= MOST_ITEMS);
        let job = Job {
            run,
            done: AtomicUsize::new(0),
        };
        let (generation, ..) = unpack(self.state.load(Ordering::Relaxed));
        // The pointer's lifetime is erased for the members; `help` only uses it under a
        // successful claim, and this function does not return (ending `job`) before
        // every claimed run is done.
        let pointer = &job as *const Job as *mut Job<'static>;
        self.job.store(pointer, Ordering::Release);
        self.state
            .store(pack(generation + 1, items, 0), Ordering::Release);
        // Also when `help` unwinds from a panic in `run`: `job` must outlive every
        // claimed run, and items no one will take now are closed.
        let _wait = WaitForAll {
            team: self,
            done: &job.done,
            items,
        };
        self.help();
    }

    pub(super) fn finish(&self) {
        self.finished.store(true, Ordering::Release);
    }
}

/// Adds a run's items to its job's count when dropped.
struct Counted<'a>(&'a AtomicUsize, usize);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(self.1, Ordering::Release);
    }
}

/// Waits, when dropped, until all of a job's items are done or closed.
struct WaitForAll<'a> {
    team: &'a Team,
    done: &'a AtomicUsize,
    items: usize,
}

impl Drop for WaitForAll<'_> {
    fn drop(&mut self) {
        let closed = self.team.close();
        self.done.fetch_add(closed, Ordering::Release);
        while self.done.load(Ordering::Acquire) < self.items {
            std::hint::spin_loop();
        }
    }
}

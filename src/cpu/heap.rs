//! Training on a CPU frees and allocates tensors of tens of megabytes at every step (a batch
//! of the first block's activations is 38 MB). glibc maps each allocation that large afresh
//! and unmaps it when freed, so every step faulted its pages in again and every unmap
//! stopped the other core to flush its TLB: about a third of a training step went to the
//! kernel (`perf record`, page faults and TLB shootdowns). While a `FreedMemoryKept` is
//! alive, freed memory stays in the process's heap for the next step instead.

use std::sync::Mutex;

/// Holders alive: the first sets the policy, the last restores glibc's defaults.
static HOLDERS: Mutex<usize> = Mutex::new(0);

/// Keeps freed memory in the process while alive; dropped, the defaults return and the
/// free pages go back to the kernel. A no-op where the C library is not glibc. After the
/// first, glibc no longer moves its mmap threshold up with the sizes freed: it stays where
/// it had grown before training.
pub struct FreedMemoryKept(());

impl FreedMemoryKept {
    pub fn new() -> Self {
        let mut holders = HOLDERS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *holders == 0 {
            keep_freed_memory(true);
        }
        *holders += 1;
        Self(())
    }
}

impl Default for FreedMemoryKept {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for FreedMemoryKept {
    fn drop(&mut self) {
        let mut holders = HOLDERS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *holders -= 1;
        if *holders == 0 {
            keep_freed_memory(false);
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory(keep: bool) {
    // glibc's defaults (mallopt(3)).
    const MMAP_MAX: libc::c_int = 65_536;
    const TRIM_THRESHOLD: libc::c_int = 128 * 1024;
    let (mmap_max, trim_threshold) = if keep {
        (0, libc::c_int::MAX)
    } else {
        (MMAP_MAX, TRIM_THRESHOLD)
    };
    // SAFETY: mallopt and malloc_trim take plain integers, take glibc's arena locks
    // themselves, and change only where future allocations come from and when free pages
    // are returned; no allocation made before or after is invalidated.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, mmap_max);
        libc::mallopt(libc::M_TRIM_THRESHOLD, trim_threshold);
        if !keep {
            libc::malloc_trim(0);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory(_keep: bool) {}

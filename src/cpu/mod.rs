//! The networks' CPU path: activations as NHWC planes (channels innermost, a zero border
//! for padding), convolutions computed directly by one register-tiled kernel, and the
//! loops around them (Winograd transforms, depthwise convolutions, pooling) in plain
//! Rust. Everything is written once and compiled for each instruction set a PC may have
//! (AVX-512, AVX2 with FMA, NEON, and a portable fallback); the one to run is chosen at
//! run time (`Isa`), or forced with `VOUCH_CPU_KERNEL` so every path can be tested and
//! timed on the machine at hand. Plain loops outside the networks (the copy check's)
//! are compiled per instruction set the same way (`Compiled`).

mod conv;
mod depthwise;
mod heap;
mod plane;
mod separable;
mod simd;
mod team;
mod winograd;

pub use conv::{Activation, Epilogue, PackedConv, convolve, convolve_max_pooled};
pub use depthwise::{Depthwise3x3, same_padding};
pub use heap::FreedMemoryKept;
pub use plane::Plane;
pub use separable::SeparableConv;
pub use simd::Compiled;
pub use winograd::{WinogradConv, convolve_winograd};

/// The instruction sets the kernels are compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Isa {
    /// AVX-512F (with AVX2 and FMA): x86-64-v4.
    Avx512,
    /// AVX2 and FMA: x86-64-v3, what most office PCs since 2013 have.
    Avx2,
    /// ARM NEON (Apple Silicon, ARM kiosks).
    Neon,
    /// The target's baseline (SSE2 on x86-64): the last resort.
    Portable,
}

/// The environment variable that forces a path: `avx512`, `avx2`, `neon` or `portable`.
pub const FORCE_VARIABLE: &str = "VOUCH_CPU_KERNEL";

impl Isa {
    pub const ALL: [Isa; 4] = [Isa::Avx512, Isa::Avx2, Isa::Neon, Isa::Portable];

    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Neon => "neon",
            Isa::Portable => "portable",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|isa| isa.name() == name)
    }

    /// Whether this CPU can run the path.
    pub fn supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        let (avx2, avx512) = {
            let avx2 = std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma");
            (avx2, avx2 && std::arch::is_x86_feature_detected!("avx512f"))
        };
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => avx512,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => avx2,
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => true,
            Isa::Portable => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The paths this CPU can run, fastest first.
    pub fn available() -> Vec<Isa> {
        Self::ALL
            .into_iter()
            .filter(|isa| isa.supported())
            .collect()
    }

    /// The fastest path this CPU runs.
    pub fn fastest() -> Isa {
        Self::available()[0]
    }

    /// The path the networks use: `VOUCH_CPU_KERNEL` when it names one this CPU runs,
    /// else the fastest. Decided once per process.
    pub fn chosen() -> Isa {
        static CHOSEN: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let Ok(name) = std::env::var(FORCE_VARIABLE) else {
                return Isa::fastest();
            };
            match Isa::parse(name.trim()) {
                Some(isa) if isa.supported() => isa,
                _ => {
                    tracing::warn!(
                        requested = %name,
                        available = ?Isa::available(),
                        "{FORCE_VARIABLE} names no path this CPU runs; using the fastest"
                    );
                    Isa::fastest()
                }
            }
        })
    }
}

thread_local! {
    /// Set while a thread runs a whole share of a batch (`per_thread`): its layers then
    /// keep their work to themselves.
    static ON_ITS_OWN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Set while a thread leads a team (`as_team`): its layers are shared by the team.
    static LEADING: std::cell::Cell<*const team::Team> =
        const { std::cell::Cell::new(std::ptr::null()) };
}

/// Runs `forward` (one image's pass through a network, or a batch smaller than the pool)
/// with the pool's threads as one team: they join once and spin between layers, instead
/// of being woken for each (`team`). They stay busy until `forward` returns, so a batch
/// with an image per thread should use `per_thread` instead.
pub(crate) fn as_team<R: Send>(forward: impl FnOnce() -> R + Send) -> R {
    let threads = rayon::current_num_threads();
    if threads == 1 || ON_ITS_OWN.get() || !LEADING.get().is_null() {
        return forward();
    }
    let team = team::Team::new(threads);
    rayon::scope(|scope| {
        for _ in 1..threads {
            scope.spawn(|_| team.follow());
        }
        // Ends the team also when `forward` panics, or the scope would wait for the
        // members forever.
        struct Lead<'a>(&'a team::Team, *const team::Team);
        impl Drop for Lead<'_> {
            fn drop(&mut self) {
                LEADING.set(self.1);
                self.0.finish();
            }
        }
        let _lead = Lead(&team, LEADING.replace(&team));
        forward()
    })
}

/// `work(y, row)` for each of `rows` (a plane's output rows), shared out as a layer's
/// items are (`share_out`).
pub(crate) fn share_rows(rows: Vec<&mut [f32]>, work: impl Fn(usize, &mut [f32]) + Sync) {
    let rows: Vec<std::sync::Mutex<&mut [f32]>> =
        rows.into_iter().map(std::sync::Mutex::new).collect();
    share_out(rows.len(), |range| {
        for y in range {
            let mut row = rows[y].lock().unwrap_or_else(|poison| poison.into_inner());
            work(y, &mut row);
        }
    });
}

/// Runs `work` on each of `items` at once, one rayon task each, every layer inside kept
/// to that task's thread. A batch with an image per thread runs best this way: no layer
/// waits for another thread, where sharing each small layer of one image costs a
/// fork-join per layer (measured: 2 threads took a batch of 8 chips from 3.23 to 2.02 ms
/// a chip sharing each layer, to ~1.6 ms giving each thread its own images).
pub(crate) fn per_thread<T: Sync, R: Send>(items: &[T], work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    use rayon::prelude::*;
    items.par_iter().map(|item| alone(|| work(item))).collect()
}

/// Runs `work` with its layers kept to this thread.
fn alone<R>(work: impl FnOnce() -> R) -> R {
    let before = ON_ITS_OWN.replace(true);
    let result = work();
    ON_ITS_OWN.set(before);
    result
}

/// Runs `run` over `0..items` in contiguous runs handed out as the rayon pool's threads
/// come for them. The calling thread starts at once; a sleeping worker wakes some tens
/// of microseconds later on a virtual machine, and with fixed halves the caller would
/// wait that long for it at the end of every layer.
pub(crate) fn share_out(items: usize, run: impl Fn(std::ops::Range<usize>) + Sync) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let threads = rayon::current_num_threads();
    if threads == 1 || items < 2 || ON_ITS_OWN.get() {
        return run(0..items);
    }
    let leading = LEADING.get();
    if !leading.is_null() && items <= team::MOST_ITEMS {
        // SAFETY: `LEADING` is set only inside `as_team`, to its team, which outlives
        // the call and is unset before the team is dropped.
        return unsafe { &*leading }.share(items, &run);
    }
    let per_run = items.div_ceil(4 * threads);
    let next = AtomicUsize::new(0);
    let work = || {
        loop {
            let first = next.fetch_add(per_run, Ordering::Relaxed);
            if first >= items {
                break;
            }
            run(first..(first + per_run).min(items));
        }
    };
    rayon::scope(|scope| {
        for _ in 1..threads {
            scope.spawn(|_| work());
        }
        work();
    });
}

#[cfg(test)]
mod tests;

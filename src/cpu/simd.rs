//! The vector operations the kernels are written in, on each instruction set's own
//! registers, and the run-time dispatch into code compiled for it. A kernel is written
//! once, generic over `Vector`; `Isa::dispatch` runs it inside a `#[target_feature]`
//! function of the chosen instruction set, where the `#[inline(always)]` operations
//! become single instructions. (pulp's vectors are structs of floats, which the compiler
//! kept in memory between operations: two to three times slower here.)

use super::Isa;

/// One instruction set's vector of f32 lanes.
pub(super) trait Vector: Copy {
    const LANES: usize;
    /// # Safety
    /// `LANES` floats must be readable at `p`, and the instruction set must run here.
    unsafe fn load(p: *const f32) -> Self;
    /// # Safety
    /// `LANES` floats must be writable at `p`, and the instruction set must run here.
    unsafe fn store(self, p: *mut f32);
    fn splat(value: f32) -> Self;
    /// `a * b + c`.
    fn mul_add(a: Self, b: Self, c: Self) -> Self;
    fn add(self, other: Self) -> Self;
    fn mul(self, other: Self) -> Self;
    fn max(self, other: Self) -> Self;
    /// Asks for the cache line at `p` ahead of its use; any address, never faults. (Not
    /// on NEON, whose prefetch intrinsic is not stable Rust, nor portably.)
    #[inline(always)]
    fn prefetch(_p: *const f32) {}
}

/// Work written once over `Vector`, run by `Isa::dispatch` compiled for one instruction
/// set. `run` must be `#[inline(always)]`, with every loop inside it (not in a closure
/// it calls), so that all of it is compiled for that instruction set.
pub(super) trait Kernel {
    type Output;
    fn run<V: Vector>(self) -> Self::Output;
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::Vector;

    #[derive(Clone, Copy)]
    pub struct Avx512(__m512);

    // SAFETY (for every intrinsic below): `Isa::dispatch` only runs this type's code in a
    // function compiled for AVX-512F on a CPU that has it.
    impl Vector for Avx512 {
        const LANES: usize = 16;
        #[inline(always)]
        fn prefetch(p: *const f32) {
            // SAFETY: a prefetch reads nothing and never faults.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p as *const i8) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            // SAFETY: the caller's contract.
            Self(unsafe { _mm512_loadu_ps(p) })
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            // SAFETY: the caller's contract.
            unsafe { _mm512_storeu_ps(p, self.0) }
        }
        #[inline(always)]
        fn splat(value: f32) -> Self {
            // SAFETY: see the impl.
            Self(unsafe { _mm512_set1_ps(value) })
        }
        #[inline(always)]
        fn mul_add(a: Self, b: Self, c: Self) -> Self {
            // SAFETY: see the impl.
            Self(unsafe { _mm512_fmadd_ps(a.0, b.0, c.0) })
        }
        #[inline(always)]
        fn add(self, other: Self) -> Self {
            // SAFETY: see the impl.
            Self(unsafe { _mm512_add_ps(self.0, other.0) })
        }
        #[inline(always)]
        fn mul(self, other: Self) -> Self {
            // SAFETY: see the impl.
            Self(unsafe { _mm512_mul_ps(self.0, other.0) })
        }
        #[inline(always)]
        fn max(self, other: Self) -> Self {
            // SAFETY: see the impl.
            Self(unsafe { _mm512_max_ps(self.0, other.0) })
        }
    }

    #[derive(Clone, Copy)]
    pub struct Avx2(__m256);

    // SAFETY (for every intrinsic below): `Isa::dispatch` only runs this type's code in a
    // function compiled for AVX2 and FMA on a CPU that has them.
    impl Vector for Avx2 {
        const LANES: usize = 8;
        #[inline(always)]
        fn prefetch(p: *const f32) {
            // SAFETY: a prefetch reads nothing and never faults.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p as *const i8) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            // SAFETY: the caller's contract.
            Self(unsafe { _mm256_loadu_ps(p) })
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            // SAFETY: the caller's contract.
            unsafe { _mm256_storeu_ps(p, self.0) }
        }
        #[inline(always)]
        fn splat(value: f32) -> Self {
            // SAFETY: see the impl.
            Self(unsafe { _mm256_set1_ps(value) })
        }
        #[inline(always)]
        fn mul_add(a: Self, b: Self, c: Self) -> Self {
            // SAFETY: see the impl.
            Self(unsafe { _mm256_fmadd_ps(a.0, b.0, c.0) })
        }
        #[inline(always)]
        fn add(self, other: Self) -> Self {
            // SAFETY: see the impl.
            Self(unsafe { _mm256_add_ps(self.0, other.0) })
        }
        #[inline(always)]
        fn mul(self, other: Self) -> Self {
            // SAFETY: see the impl.
            Self(unsafe { _mm256_mul_ps(self.0, other.0) })
        }
        #[inline(always)]
        fn max(self, other: Self) -> Self {
            // SAFETY: see the impl.
            Self(unsafe { _mm256_max_ps(self.0, other.0) })
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use std::arch::aarch64::*;

    use super::Vector;

    #[derive(Clone, Copy)]
    pub struct Neon(float32x4_t);

    // SAFETY (for every intrinsic below): NEON is part of every aarch64 CPU.
    impl Vector for Neon {
        const LANES: usize = 4;
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            // SAFETY: the caller's contract.
            Self(unsafe { vld1q_f32(p) })
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            // SAFETY: the caller's contract.
            unsafe { vst1q_f32(p, self.0) }
        }
        #[inline(always)]
        fn splat(value: f32) -> Self {
            // SAFETY: see the impl.
            Self(unsafe { vdupq_n_f32(value) })
        }
        #[inline(always)]
        fn mul_add(a: Self, b: Self, c: Self) -> Self {
            // SAFETY: see the impl.
            Self(unsafe { vfmaq_f32(c.0, a.0, b.0) })
        }
        #[inline(always)]
        fn add(self, other: Self) -> Self {
            // SAFETY: see the impl.
            Self(unsafe { vaddq_f32(self.0, other.0) })
        }
        #[inline(always)]
        fn mul(self, other: Self) -> Self {
            // SAFETY: see the impl.
            Self(unsafe { vmulq_f32(self.0, other.0) })
        }
        #[inline(always)]
        fn max(self, other: Self) -> Self {
            // SAFETY: see the impl.
            Self(unsafe { vmaxq_f32(self.0, other.0) })
        }
    }
}

/// Four lanes in plain Rust (the compiler vectorises them at the target's baseline,
/// SSE2 on x86-64), without a fused multiply-add: the last resort.
#[derive(Clone, Copy)]
pub(super) struct Portable([f32; 4]);

impl Vector for Portable {
    const LANES: usize = 4;
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller's contract.
        Self(unsafe { core::ptr::read_unaligned(p as *const [f32; 4]) })
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller's contract.
        unsafe { core::ptr::write_unaligned(p as *mut [f32; 4], self.0) }
    }
    #[inline(always)]
    fn splat(value: f32) -> Self {
        Self([value; 4])
    }
    #[inline(always)]
    fn mul_add(a: Self, b: Self, c: Self) -> Self {
        Self(std::array::from_fn(|i| a.0[i] * b.0[i] + c.0[i]))
    }
    #[inline(always)]
    fn add(self, other: Self) -> Self {
        Self(std::array::from_fn(|i| self.0[i] + other.0[i]))
    }
    #[inline(always)]
    fn mul(self, other: Self) -> Self {
        Self(std::array::from_fn(|i| self.0[i] * other.0[i]))
    }
    #[inline(always)]
    fn max(self, other: Self) -> Self {
        Self(std::array::from_fn(|i| self.0[i].max(other.0[i])))
    }
}

/// Work in plain loops, not `Vector`s, run by `Isa::compiled` compiled for one
/// instruction set: the compiler widens the loops as far as that set allows while the
/// operations and their order stay those of the source (Rust never fuses a multiply and
/// an add on its own), so every path gives the same bits. `run` must be
/// `#[inline(always)]`, and so must what its loops call.
pub trait Compiled {
    type Output;
    fn run(self) -> Self::Output;
}

/// A `Compiled` as a `Kernel` that takes no vectors.
struct Plain<C>(C);

impl<C: Compiled> Kernel for Plain<C> {
    type Output = C::Output;
    #[inline(always)]
    fn run<V: Vector>(self) -> C::Output {
        self.0.run()
    }
}

/// # Safety
/// The CPU must have AVX-512F, AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn on_avx512<K: Kernel>(kernel: K) -> K::Output {
    kernel.run::<x86::Avx512>()
}

/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn on_avx2<K: Kernel>(kernel: K) -> K::Output {
    kernel.run::<x86::Avx2>()
}

#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
fn on_neon<K: Kernel>(kernel: K) -> K::Output {
    kernel.run::<arm::Neon>()
}

impl Isa {
    /// Runs `kernel` compiled for this instruction set.
    pub(super) fn dispatch<K: Kernel>(self, kernel: K) -> K::Output {
        assert!(self.supported(), "{self:?} is not a path this CPU runs");
        match self {
            // SAFETY: checked just above.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { on_avx512(kernel) },
            // SAFETY: checked just above.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { on_avx2(kernel) },
            // SAFETY: NEON is part of every aarch64 CPU.
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => unsafe { on_neon(kernel) },
            _ => kernel.run::<Portable>(),
        }
    }

    /// Runs `work` compiled for this instruction set.
    pub fn compiled<C: Compiled>(self, work: C) -> C::Output {
        self.dispatch(Plain(work))
    }
}

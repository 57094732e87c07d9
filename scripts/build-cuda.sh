#!/usr/bin/env bash
# Builds `vouch` with `--features cuda` on a machine that has no CUDA toolkit and may have
# no GPU (a build box, or CI's kind of machine): NVIDIA's CUDA 13.0 compiler, headers and
# libraries come as pip wheels into TOOLKIT, and the binary goes to
# target/release/vouch. A machine with the toolkit installed needs none of this:
# `CUDA_COMPUTE_CAP=90 cargo build --release --features cuda` is enough there.
#
# Usage: scripts/build-cuda.sh [TOOLKIT] (default: target/cuda-toolkit)
# Env: CUDA_COMPUTE_CAP, the GPU generation the kernels are built for (default 90, the
# H100/H200; 80 for the A100, 89 for the L4 and RTX 40xx).
#
# Running the binary needs the NVIDIA driver (libcuda.so.1) and CUDA 13's cuBLAS, cuRAND,
# NVRTC and runtime (libcublas.so.13 ...) on LD_LIBRARY_PATH; `vouch bench devices`
# then says whether the GPU's embeddings match the CPU's.
set -euo pipefail
cd "$(dirname "$0")/.."
toolkit=$(realpath -m "${1:-target/cuda-toolkit}")
root=$toolkit/nvidia/cu13

if [ ! -x "$root/bin/nvcc" ]; then
    python3 -m pip install --quiet --no-deps --only-binary=:all: --target "$toolkit" \
        "nvidia-cuda-nvcc==13.0.*" "nvidia-cuda-crt==13.0.*" "nvidia-nvvm==13.0.*" \
        "nvidia-cuda-cccl==13.0.*" "nvidia-cuda-runtime==13.0.*" "nvidia-cuda-nvrtc==13.0.*" \
        "nvidia-cublas==13.0.*" "nvidia-curand==10.4.0.*"
fi

# The wheels carry only versioned libraries; the linker looks for the plain names.
for library in cublas cublasLt curand nvrtc cudart; do
    versioned=$(cd "$root/lib" && ls "lib$library.so."* | sort | head -n 1)
    ln -sf "$versioned" "$root/lib/lib$library.so"
done

# The driver library (libcuda) comes with the NVIDIA driver, not the toolkit, and a
# machine without a GPU has none. The link needs only its names: a stub that defines
# every driver function cudarc declares, under the driver's soname, so that the real
# libcuda.so.1 is the one loaded at run time.
if [ ! -e /usr/lib/x86_64-linux-gnu/libcuda.so ] && [ ! -e "$root/lib/stubs/libcuda.so" ]; then
    cargo fetch --locked --quiet
    cudarc=$(cargo metadata --format-version 1 --locked --features cuda 2>/dev/null |
        python3 -c 'import json, sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "cudarc").rsplit("/", 1)[0])')
    mkdir -p "$root/lib/stubs"
    grep -o 'fn cu[A-Za-z0-9_]*(' "$cudarc/src/driver/sys/mod.rs" | sort -u |
        sed 's/fn \(.*\)(/void \1(void) {}/' >"$root/lib/stubs/libcuda.c"
    cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$root/lib/stubs/libcuda.so" "$root/lib/stubs/libcuda.c"
fi

export PATH=$root/bin:$PATH CUDA_HOME=$root CUDA_PATH=$root
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export LD_LIBRARY_PATH=$root/lib:$root/lib/stubs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
cargo build --release --locked --features cuda --bin vouch

#!/usr/bin/env bash
# The NEON kernels on an x86-64 Debian machine: cross-compiles for aarch64 and runs the
# kernel tests, the training ops' and the EER sweep's tests, the golden-embedding tests and
# the signature encoder's planes against its tensors under qemu-user (correctness only:
# emulated timings say nothing about an ARM CPU). Installs the cross compiler and qemu once.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
  sudo_if_needed=$([ "$(id -u)" = 0 ] || echo sudo)
  $sudo_if_needed apt-get install -y gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
fi
rustup target add aarch64-unknown-linux-gnu
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
cargo test --release --target aarch64-unknown-linux-gnu --lib -- cpu nn:: matching::
cargo test --release --target aarch64-unknown-linux-gnu --test face_pipeline -- \
  embeddings_match_the_independent_float_reference the_cpu_planes_and_the_tensor_path_agree
cargo test --release --target aarch64-unknown-linux-gnu --test signature -- \
  the_encoder_on_planes_gives_the_tensors_embeddings_on_every_instruction_set

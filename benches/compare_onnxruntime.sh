#!/usr/bin/env bash
# The embed step side by side on this machine: Vouch (candle, criterion bench `embed_chip`
# and `embed_8_chips`) against onnxruntime running the same network on the same chip.
# Usage: benches/compare_onnxruntime.sh   (creates a Python venv under target/ once)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${VOUCH_BENCH_VENV:-target/bench-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q numpy onnx onnxruntime pillow
fi

cargo bench --bench face -- 'embed_' >&2
peer=$("$venv/bin/python" benches/onnxruntime_peer.py models/face_recognition.safetensors tests/data/chip_astronaut.png --runs 200)

"$venv/bin/python" - "$peer" <<'PY'
import json, sys
peer = json.loads(sys.argv[1])
median_ms = lambda name: json.load(open(f"target/criterion/{name}/new/estimates.json"))["median"]["point_estimate"] / 1e6
golden = json.load(open("tests/data/golden_embeddings.json"))["chip_astronaut.png"]
drift = max(abs(a - b) for a, b in zip(golden, peer["embedding"]))
rows = [
    ("batch 1", median_ms("embed_chip"), peer["batch1_median_ms_per_chip"]),
    ("batch 8", median_ms("embed_8_chips") / 8, peer["batch8_median_ms_per_chip"]),
]
print(f"onnxruntime {peer['onnxruntime']} (its default threads); embeddings agree to {drift:.1e}")
print(f"{'per 150x150 chip':<18}{'candle ms':>12}{'onnxruntime ms':>16}{'ort/candle':>12}")
for label, ours, theirs in rows:
    print(f"{label:<18}{ours:>12.2f}{theirs:>16.2f}{theirs / ours:>12.2f}")
PY

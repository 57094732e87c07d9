#!/usr/bin/env bash
# The embed step side by side on this machine: Vouch (its CPU path, `face::nhwc`, on the
# weights candle loads; criterion benches `embed_chip` and `embed_8_chips`) against onnxruntime running the same network on the
# same chip. Shared machines drift by 20% from minute to minute, so the two take turns,
# ROUNDS times (default 5), and the table gives each side's median over the rounds.
# Usage: benches/compare_onnxruntime.sh   (creates a Python venv under target/ once)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${VOUCH_BENCH_VENV:-target/bench-venv}"
rounds="${ROUNDS:-5}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q numpy onnx onnxruntime pillow
fi

results=$(mktemp)
trap 'rm -f "$results"' EXIT
for round in $(seq "$rounds"); do
  cargo bench --bench face -- 'embed_' >&2
  peer=$("$venv/bin/python" benches/onnxruntime_peer.py models/face_recognition.safetensors tests/data/chip_astronaut.png --runs 200)
  "$venv/bin/python" - "$peer" >> "$results" <<'PY'
import json, sys
median_ms = lambda name: json.load(open(f"target/criterion/{name}/new/estimates.json"))["median"]["point_estimate"] / 1e6
peer = json.loads(sys.argv[1])
print(json.dumps({
    "vouch": [median_ms("embed_chip"), median_ms("embed_8_chips") / 8],
    "onnxruntime": [peer["batch1_median_ms_per_chip"], peer["batch8_median_ms_per_chip"]],
    "peer_version": peer["onnxruntime"],
    "peer_embedding": peer["embedding"],
}))
PY
  echo "round $round of $rounds done" >&2
done

"$venv/bin/python" - "$results" <<'PY'
import json, statistics, sys
rounds = [json.loads(line) for line in open(sys.argv[1])]
golden = json.load(open("tests/data/golden_embeddings.json"))["chip_astronaut.png"]
drift = max(abs(a - b) for a, b in zip(golden, rounds[0]["peer_embedding"]))
print(f"onnxruntime {rounds[0]['peer_version']} (its default threads); its embedding agrees "
      f"with the float64 reference to {drift:.1e}; {len(rounds)} alternating rounds")
print(f"{'per 150x150 chip':<18}{'vouch ms':>12}{'onnxruntime ms':>16}{'ort/vouch':>12}   per round")
for index, label in enumerate(["batch 1", "batch 8"]):
    ours = statistics.median(r["vouch"][index] for r in rounds)
    theirs = statistics.median(r["onnxruntime"][index] for r in rounds)
    per_round = " ".join(f"{r['onnxruntime'][index] / r['vouch'][index]:.2f}" for r in rounds)
    print(f"{label:<18}{ours:>12.2f}{theirs:>16.2f}{theirs / ours:>12.2f}   {per_round}")
PY

#!/usr/bin/env bash
# The embed step side by side on this machine: Vouch's CPU kernels, once per instruction set
# this CPU runs (criterion benches `embed_chip/<path>` and `embed_8_chips/<path>`), against
# onnxruntime running the same network on the same chip with its default threads. Shared
# machines drift by 20% from minute to minute, so the two take turns, ROUNDS times (default
# 5), and the table gives each side's median over the rounds.
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
  cargo bench --bench face -- '^embed_' >&2
  peer=$("$venv/bin/python" benches/onnxruntime_peer.py models/face_recognition.safetensors tests/data/chip_astronaut.png --runs 200)
  "$venv/bin/python" - "$peer" >> "$results" <<'PY'
import json, os, sys
peer = json.loads(sys.argv[1])
def median_ms(bench, path):
    estimate = f"target/criterion/{bench}/{path}/new/estimates.json"
    return json.load(open(estimate))["median"]["point_estimate"] / 1e6
paths = sorted(p for p in os.listdir("target/criterion/embed_chip")
               if os.path.exists(f"target/criterion/embed_chip/{p}/new/estimates.json"))
print(json.dumps({
    "vouch": {p: [median_ms("embed_chip", p), median_ms("embed_8_chips", p) / 8] for p in paths},
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
flags = open("/proc/cpuinfo").read().split("flags")[1].split("\n")[0].split() if sys.platform == "linux" else []
has = [f for f in ("avx512f", "avx2", "fma") if f in flags]
print(f"onnxruntime {rounds[0]['peer_version']} (its default threads, its own choice of "
      f"instruction set: this CPU has {' '.join(has) or 'none of avx512f/avx2/fma'}); its embedding "
      f"agrees with the float64 reference to {drift:.1e}; {len(rounds)} alternating rounds")
print(f"{'per 150x150 chip':<18}{'vouch path':<12}{'vouch ms':>10}{'onnxruntime ms':>16}{'ort/vouch':>11}   per round")
for index, label in enumerate(["batch 1", "batch 8"]):
    theirs = statistics.median(r["onnxruntime"][index] for r in rounds)
    for path in rounds[-1]["vouch"]:
        ours = statistics.median(r["vouch"][path][index] for r in rounds)
        per_round = " ".join(f"{r['onnxruntime'][index] / r['vouch'][path][index]:.2f}" for r in rounds)
        print(f"{label:<18}{path:<12}{ours:>10.2f}{theirs:>16.2f}{theirs / ours:>11.2f}   {per_round}")
PY

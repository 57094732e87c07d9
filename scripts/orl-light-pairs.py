#!/usr/bin/env python3
"""ORL faces under synthetic light, as LFW-format pairs for `vouch eval pairs`.

Each pair holds one subject's frontal, evenly lit shot 1 (the reference, as enrolled)
against another photo whose light is changed: the same subject's shots 2-10 (same), or
another subject's shot 1 (different). The light of the second photo is one of:

  even    as ORL has it
  side    a lamp on one side: brightness falls linearly across the face to 30% on the
          far side, with the gamma deepening the shadow (`eval::crops::side_light`, 0.7)
  dim     an under-exposed camera: gamma 2.2 and half the exposure
  shadow  a hard shadow over the lower half of the face at 35% brightness

Usage: scripts/orl-light-pairs.py ORL_ROOT OUT LIGHT
writes OUT/pairs.txt and OUT/root/<name>/<name>_NNNN.jpg (JPEG at quality 98, the names
`eval pairs` expects).
Runs in a venv with pillow and numpy (see models/README.md for the command).
"""

import random
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def relight(grey: np.ndarray, light: str, index: int) -> np.ndarray:
    value = grey.astype(np.float32) / 255.0
    height, width = value.shape
    if light == "even":
        out = value
    elif light == "side":
        strength = 0.7
        across = np.linspace(0.0, 1.0, width)[None, :]
        lit = 1.0 - across if index % 2 == 0 else across
        factor = (1.0 - strength) + strength * lit
        out = np.power(value * factor, 1.0 + 0.5 * strength)
    elif light == "dim":
        out = 0.5 * np.power(value, 2.2)
    elif light == "shadow":
        out = value.copy()
        out[height // 2 :, :] *= 0.35
    else:
        raise SystemExit(f"unknown light {light!r}")
    return np.clip(np.round(255.0 * out), 0, 255).astype(np.uint8)


def main() -> None:
    root, out, light = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    subjects = sorted((p.name for p in root.iterdir() if p.is_dir()), key=lambda s: int(s[1:]))
    images = out / "root"
    lines = []
    for subject in subjects:
        name = f"orl_{subject}"
        (images / name).mkdir(parents=True, exist_ok=True)
        for shot in range(1, 11):
            grey = np.array(Image.open(root / subject / f"{shot}.pgm").convert("L"))
            # Shot 1 is the reference: enrolled as the camera gave it.
            if shot != 1:
                grey = relight(grey, light, shot)
            Image.fromarray(grey).save(images / name / f"{name}_{shot:04d}.jpg", quality=98)
        lines += [f"{name}\t1\t{shot}" for shot in range(2, 11)]
    rng = random.Random(7)
    different = set()
    while len(different) < len(lines):
        a, b = rng.sample(subjects, 2)
        different.add((a, b))
    # A different pair's second photo is under the same light as the same pairs'.
    for a, b in sorted(different):
        lines.append(f"orl_{a}\t1\torl_{b}\t{rng.randint(2, 10)}")
    (out / "pairs.txt").write_text(f"{len(lines) // 2}\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Independent float reference of the MiniFASNet liveness networks: PyTorch on the CPU,
upstream's own model code and its ORIGINAL .pth files (not Vouch's converted safetensors).
Makes tests/data/liveness/golden.json, the logits and softmax of each 80x80 crop:

    python3 tests/reference/minifasnet_reference.py SHARED/models/silent-face-anti-spoofing \\
        tests/data/liveness > tests/data/liveness/golden.json

A crop named *_liveness_2.7.png goes through MiniFASNetV2, *_liveness_4.png through
MiniFASNetV1SE. The input is upstream's transform: the BGR crop, 0-255 as floats, CHW.
Needs torch, numpy and pillow (a venv under target/: see models/README.md).
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

NETWORKS = {
    "2.7": ("2.7_80x80_MiniFASNetV2.pth", "MiniFASNetV2"),
    "4": ("4_0_0_80x80_MiniFASNetV1SE.pth", "MiniFASNetV1SE"),
}


def load(upstream: Path, file: str, name: str) -> torch.nn.Module:
    sys.path.insert(0, str(upstream / "reference"))
    import MiniFASNet  # upstream's model definitions

    # utility.get_kernel(80, 80): the last depthwise convolution's kernel.
    model = getattr(MiniFASNet, name)(conv6_kernel=((80 + 15) // 16, (80 + 15) // 16))
    state = torch.load(upstream / file, map_location="cpu", weights_only=False)
    state = {key.removeprefix("module."): value for key, value in state.items()}
    model.load_state_dict(state)
    return model.eval()


def main() -> None:
    upstream, crops = Path(sys.argv[1]), Path(sys.argv[2])
    models = {scale: load(upstream, *spec) for scale, spec in NETWORKS.items()}
    golden = {}
    for path in sorted(crops.glob("*_liveness_*.png")):
        scale = path.stem.rsplit("_", 1)[1]
        rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
        bgr = rgb[:, :, ::-1].copy()
        batch = torch.from_numpy(bgr).permute(2, 0, 1).unsqueeze(0)
        with torch.no_grad():
            logits = models[scale](batch)
        golden[path.name] = {
            "logits": logits[0].tolist(),
            "softmax": torch.softmax(logits, dim=1)[0].tolist(),
        }
    json.dump(golden, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Independent float64 reference of the face-api.js face recognition network.

Reads the ORIGINAL npm files (face_recognition_model-weights_manifest.json + .bin), not
Vouch's converted safetensors, and follows face-api.js's TypeScript forward pass
(src/faceRecognitionNet/*.ts) in NumPy, in the TensorFlow NHWC layout. Used to make the
golden embeddings in tests/data/golden_embeddings.json:

    python3 tests/reference/faceapi_resnet_reference.py MODEL_DIR CHIP.png [CHIP.png ...]

Needs numpy and pillow.
"""
import json
import sys

import numpy as np
from PIL import Image

MEAN_RGB = np.array([122.782, 117.001, 104.298])


def load_weights(model_dir, network="face_recognition_model"):
    manifest = json.load(open(f"{model_dir}/{network}-weights_manifest.json"))
    weights = {}
    for group in manifest:
        data = b"".join(open(f"{model_dir}/{p}", "rb").read() for p in group["paths"])
        offset = 0
        for spec in group["weights"]:
            count = int(np.prod(spec["shape"]))
            q = spec.get("quantization")
            if q:
                assert q["dtype"] == "uint8"
                raw = np.frombuffer(data, np.uint8, count, offset).astype(np.float64)
                values = raw * np.float64(np.float32(q["scale"])) + np.float64(np.float32(q["min"]))
                offset += count
            else:
                values = np.frombuffer(data, "<f4", count, offset).astype(np.float64)
                offset += 4 * count
            weights[spec["name"]] = values.reshape(spec["shape"])
        assert offset == len(data)
    return weights


def conv2d(x, filters, stride, padding):
    """x: [H, W, C]; filters: [kh, kw, C, O] (TF layout); padding 'valid' or 'same'."""
    kh, kw = filters.shape[:2]
    if padding == "same":
        def pads(size, k):
            out = -(-size // stride)
            total = max((out - 1) * stride + k - size, 0)
            return total // 2, total - total // 2
        x = np.pad(x, (pads(x.shape[0], kh), pads(x.shape[1], kw), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(0, 1))[::stride, ::stride]
    return np.einsum("hwcij,ijco->hwo", windows, filters, optimize=True)


def conv_layer(x, w, prefix, stride, relu, padding="same"):
    out = conv2d(x, w[f"{prefix}/conv/filters"], stride, padding) + w[f"{prefix}/conv/bias"]
    out = out * w[f"{prefix}/scale/weights"] + w[f"{prefix}/scale/biases"]
    return np.maximum(out, 0) if relu else out


def pool(x, size, stride, reduce):
    windows = np.lib.stride_tricks.sliding_window_view(x, (size, size), axis=(0, 1))[::stride, ::stride]
    return reduce(windows, axis=(3, 4))


def residual(x, w, prefix):
    out = conv_layer(x, w, f"{prefix}/conv1", 1, True)
    out = conv_layer(out, w, f"{prefix}/conv2", 1, False)
    return np.maximum(out + x, 0)


def residual_down(x, w, prefix):
    out = conv_layer(x, w, f"{prefix}/conv1", 2, True, "valid")
    out = conv_layer(out, w, f"{prefix}/conv2", 1, False)
    pooled = pool(x, 2, 2, np.mean)
    if pooled.shape[:2] != out.shape[:2]:
        out = np.pad(out, ((0, 1), (0, 1), (0, 0)))
    if pooled.shape[2] != out.shape[2]:
        pooled = np.concatenate([pooled, np.zeros_like(pooled)], axis=2)
    return np.maximum(out + pooled, 0)


def embed(chip_rgb, w):
    x = (chip_rgb.astype(np.float64) - MEAN_RGB) / 255.0
    out = conv_layer(x, w, "conv32_down", 2, True, "valid")
    out = pool(out, 3, 2, np.max)
    for name in ["conv32_1", "conv32_2", "conv32_3"]:
        out = residual(out, w, name)
    out = residual_down(out, w, "conv64_down")
    for name in ["conv64_1", "conv64_2", "conv64_3"]:
        out = residual(out, w, name)
    out = residual_down(out, w, "conv128_down")
    for name in ["conv128_1", "conv128_2"]:
        out = residual(out, w, name)
    out = residual_down(out, w, "conv256_down")
    for name in ["conv256_1", "conv256_2"]:
        out = residual(out, w, name)
    out = residual_down(out, w, "conv256_down_out")
    return out.mean(axis=(0, 1)) @ w["fc"]


def main():
    model_dir, chips = sys.argv[1], sys.argv[2:]
    w = load_weights(model_dir)
    result = {}
    for path in chips:
        chip = np.asarray(Image.open(path).convert("RGB"))
        assert chip.shape == (150, 150, 3), chip.shape
        result[path.rsplit("/", 1)[-1]] = [float(v) for v in embed(chip, w)]
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

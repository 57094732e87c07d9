#!/usr/bin/env python3
"""The peer for the embed step: the same face recognition network (weights read from
Vouch's models/face_recognition.safetensors) as an ONNX graph, run by onnxruntime on CPU.

    python3 benches/onnxruntime_peer.py models/face_recognition.safetensors CHIP.png [--runs N] [--threads T]

Prints JSON: median and mean milliseconds per 150x150 chip at batch 1 and batch 8, and the
embedding of the chip (so the caller can check both engines compute the same thing).
Needs numpy, onnx, onnxruntime, pillow. Called by benches/compare_onnxruntime.sh.
"""
import argparse
import json
import struct
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

MEAN_RGB = np.array([122.782, 117.001, 104.298], dtype=np.float32)
BLOCKS = [
    ("conv32_1", False), ("conv32_2", False), ("conv32_3", False),
    ("conv64_down", True), ("conv64_1", False), ("conv64_2", False), ("conv64_3", False),
    ("conv128_down", True), ("conv128_1", False), ("conv128_2", False),
    ("conv256_down", True), ("conv256_1", False), ("conv256_2", False),
    ("conv256_down_out", True),
]


def read_safetensors(path):
    data = open(path, "rb").read()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_len])
    body = data[8 + header_len:]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32"
        start, end = info["data_offsets"]
        tensors[name] = np.frombuffer(body[start:end], "<f4").reshape(info["shape"])
    return tensors


class Graph:
    def __init__(self, weights):
        self.w, self.nodes, self.inits, self.count = weights, [], [], 0

    def name(self, prefix):
        self.count += 1
        return f"{prefix}_{self.count}"

    def const(self, array, prefix="c"):
        n = self.name(prefix)
        self.inits.append(numpy_helper.from_array(np.asarray(array, np.float32), n))
        return n

    def op(self, kind, inputs, **attrs):
        out = self.name(kind.lower())
        self.nodes.append(helper.make_node(kind, inputs, [out], **attrs))
        return out

    def conv_scale(self, x, prefix, stride, relu):
        w = self.w[f"{prefix}.conv.weight"]
        pad = 0 if stride == 2 else w.shape[2] // 2
        out = self.op("Conv", [x, self.const(w), self.const(self.w[f"{prefix}.conv.bias"])],
                      strides=[stride, stride], pads=[pad] * 4)
        scale = self.w[f"{prefix}.scale.weight"].reshape(1, -1, 1, 1)
        shift = self.w[f"{prefix}.scale.bias"].reshape(1, -1, 1, 1)
        out = self.op("Add", [self.op("Mul", [out, self.const(scale)]), self.const(shift)])
        return self.op("Relu", [out]) if relu else out

    def residual(self, x, prefix, down, shapes):
        out = self.conv_scale(x, f"{prefix}.conv1", 2 if down else 1, True)
        out = self.conv_scale(out, f"{prefix}.conv2", 1, False)
        shortcut = x
        if down:
            shortcut = self.op("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2])
            (c_in, size), c_out = shapes, self.w[f"{prefix}.conv1.conv.weight"].shape[0]
            pooled, conv = size // 2, (size - 3) // 2 + 1
            if pooled != conv:
                out = self.op("Pad", [out, self.const_int([0, 0, 0, 0, 0, 0, 1, 1])])
            if c_out != c_in:
                out_pads = [0, 0, 0, 0, 0, c_out - c_in, 0, 0]
                shortcut = self.op("Pad", [shortcut, self.const_int(out_pads)])
            shapes = (c_out, pooled)
        return self.op("Relu", [self.op("Add", [out, shortcut])]), shapes

    def const_int(self, values):
        n = self.name("pads")
        self.inits.append(numpy_helper.from_array(np.asarray(values, np.int64), n))
        return n


def build_model(weights):
    g = Graph(weights)
    x = g.conv_scale("input", "conv32_down", 2, True)
    x = g.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2])
    shapes = (32, 35)
    for prefix, down in BLOCKS:
        x, shapes = g.residual(x, prefix, down, shapes)
    x = g.op("GlobalAveragePool", [x])
    x = g.op("Flatten", [x])
    out = g.op("MatMul", [x, g.const(weights["fc.weight"].T)])
    graph = helper.make_graph(
        g.nodes, "dlib_resnet",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, 150, 150])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["n", 128])],
        g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("weights")
    parser.add_argument("chip")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--threads", type=int, default=0, help="0: onnxruntime's default")
    args = parser.parse_args()
    model = build_model(read_safetensors(args.weights))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    chip = np.asarray(Image.open(args.chip).convert("RGB"), np.float32)
    x = ((chip - MEAN_RGB) / 255.0).transpose(2, 0, 1)[None].copy()
    result = {"onnxruntime": ort.__version__, "threads": args.threads, "runs": args.runs}
    for batch in (1, 8):
        xb = np.repeat(x, batch, axis=0)
        for _ in range(5):
            session.run(None, {"input": xb})
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            session.run(None, {"input": xb})
            times.append((time.perf_counter() - start) * 1e3 / batch)
        result[f"batch{batch}_median_ms_per_chip"] = float(np.median(times))
        result[f"batch{batch}_mean_ms_per_chip"] = float(np.mean(times))
    result["embedding"] = [float(v) for v in session.run(None, {"input": x})[0][0]]
    print(json.dumps(result))


if __name__ == "__main__":
    main()

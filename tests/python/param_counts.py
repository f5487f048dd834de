"""Parameter counts of graft's built-in architectures as their references build them: a timm
model of that name, else a torchvision one, built on PyTorch's meta device (no memory, no init),
default head. Names neither library has are left out (graft's own resnet18_small, the text
encoder minilm_l6).

usage: param_counts.py OUT_JSON NAME...     (writes {name: count})
"""
import json
import sys

import torch
import timm
import torchvision


def build(name):
    if timm.is_model(name):
        return timm.create_model(name, pretrained=False)
    if name in torchvision.models.list_models():
        return torchvision.models.get_model(name, weights=None)
    return None


def main():
    out, names = sys.argv[1], sys.argv[2:]
    counts = {}
    for name in names:
        with torch.device("meta"):
            model = build(name)
        if model is not None:
            counts[name] = sum(p.numel() for p in model.parameters())
    with open(out, "w") as f:
        json.dump(counts, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()

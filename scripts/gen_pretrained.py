"""Writes crates/graft-zoo/data/pretrained.json: the pretrained weights graft can name.

- "timm": every timm pretrained tag (timm.list_pretrained) whose architecture graft implements
  and whose weights are on the Hugging Face Hub,
  with the fields of its pretrained cfg that locate, describe and preprocess it.
- "torchvision": torchvision's weight enums for graft's torchvision-named models.

Re-run it when timm or torchvision change, or when graft gains a family (add its timm-named
architectures to TIMM_ARCHS, its torchvision-named ones to TV_ARCHS; architectures of
configurable builders come from data/archs.json, written by scripts/gen_archs.py first):

    .venv/bin/python scripts/gen_pretrained.py

`tests/pretrained_table.rs` checks the table against the venv's timm / torchvision, so a stale
table fails `make test`.
"""

import json
import os
import sys

import timm
import torchvision
from timm.data import infer_imagenet_subset
from timm.models import get_pretrained_cfg

# graft architectures named as timm names them (graft-zoo's registry)
TIMM_ARCHS = [
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "mobilenetv3_large_100",
    "mobilenetv3_small_100",
    "efficientnet_b0",
    # timm's EfficientNets (the mbconv builder) load torchvision's layout through a remap table
    "efficientnet_b1",
    "efficientnet_b2",
    "efficientnet_b3",
    "efficientnet_b4",
    "efficientnet_b5",
    "convnext_tiny",
    "convnext_small",
    "convnext_base",
    "convnext_large",
] + [f"regnetx_{w}" for w in ("002", "004", "004_tv", "006", "008", "016", "032", "040", "064", "080", "120", "160", "320")] + [
    f"regnety_{w}" for w in ("002", "004", "006", "008", "008_tv", "016", "032", "040", "064", "080", "080_tv", "120", "160", "320", "640", "1280", "2560")
]
# the architectures graft's configurable builders read off timm (scripts/gen_archs.py)
with open(os.path.join(os.path.dirname(__file__), "..", "crates", "graft-zoo", "data", "archs.json")) as _f:
    _ARCHS = json.load(_f)
TIMM_ARCHS += [e["name"] for family, entries in _ARCHS.items() if family not in ("generated_by", "timm_version", "out") for e in entries]
TIMM_ARCHS = list(dict.fromkeys(TIMM_ARCHS))

# graft architectures named as torchvision names them
TV_ARCHS = [
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "wide_resnet50_2",
    "wide_resnet101_2",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
    "efficientnet_b0",
    # timm's EfficientNets (the mbconv builder) load torchvision's layout through a remap table
    "efficientnet_b1",
    "efficientnet_b2",
    "efficientnet_b3",
    "efficientnet_b4",
    "efficientnet_b5",
    "convnext_tiny",
    "convnext_small",
    "convnext_base",
    "convnext_large",
]


def timm_files(cfg):
    """The files timm tries, in order: the safe alternative before the pickle."""
    name = cfg.hf_hub_filename or "pytorch_model.bin"
    if name.endswith(".safetensors"):
        return [name]
    safe = {"pytorch_model.bin": "model.safetensors",
            "open_clip_pytorch_model.bin": "open_clip_model.safetensors"}.get(name)
    if safe is None and name.endswith(".bin"):
        safe = name[: -len(".bin")] + ".safetensors"
    return [safe, name] if safe else [name]


def label_set(cfg):
    subset = infer_imagenet_subset(cfg)
    if subset:
        return subset
    return "none" if cfg.num_classes == 0 else f"unknown-{cfg.num_classes}"


def size(v):
    return list(v) if v is not None else None


def timm_rows():
    rows = []
    for arch in TIMM_ARCHS:
        default = get_pretrained_cfg(arch).tag
        for tag in timm.list_pretrained(arch + ".*"):
            c = get_pretrained_cfg(tag)
            if not c.hf_hub_id:
                # weights at another URL (a few research releases): graft fetches from the Hub
                continue
            assert c.architecture == arch, (tag, c.architecture)
            rows.append({
                "tag": tag,
                "architecture": arch,
                "default": c.tag == default,
                "hf_hub_id": c.hf_hub_id,
                "files": timm_files(c),
                "input_size": size(c.input_size),
                "test_input_size": size(c.test_input_size),
                "crop_pct": c.crop_pct,
                "test_crop_pct": c.test_crop_pct,
                "crop_mode": c.crop_mode,
                "interpolation": c.interpolation,
                "mean": list(c.mean),
                "std": list(c.std),
                "num_classes": c.num_classes,
                "label_set": label_set(c),
                "first_conv": c.first_conv,
                # the first of several (DeiT distilled: head, head_dist; the arch knows both)
                "classifier": c.classifier if isinstance(c.classifier, str) else c.classifier[0],
                "license": c.license,
                "origin_url": c.origin_url,
                "paper_ids": c.paper_ids,
                "paper_name": c.paper_name,
            })
    return rows


def tv_rows():
    graft_1k = open(os.path.join(DATA, "imagenet_classes.txt")).read().splitlines()
    rows = []
    for arch in TV_ARCHS:
        enum = torchvision.models.get_model_weights(arch)
        default = enum.DEFAULT.name
        for w in enum:
            t = w.transforms()
            interp = t.interpolation.value  # "bilinear" / "bicubic"
            rows.append({
                "tag": f"tv:{arch}.{w.name}",
                "architecture": arch,
                "default": w.name == default,
                "weights": w.name,
                "url": w.url,
                "file": os.path.basename(w.url),
                "input_size": [3, t.crop_size[0], t.crop_size[0]],
                "resize_size": t.resize_size[0],
                "interpolation": interp,
                "mean": list(t.mean),
                "std": list(t.std),
                "num_classes": len(w.meta["categories"]),
                # graft ships torchvision's ImageNet-1k names (data/imagenet_classes.txt)
                "label_set": "imagenet-1k" if w.meta["categories"] == graft_1k else "unknown",
                "num_params": w.meta["num_params"],
                "recipe": w.meta.get("recipe"),
                "acc_at_1": w.meta.get("_metrics", {}).get("ImageNet-1K", {}).get("acc@1"),
                "license": "bsd-3-clause",
            })
    return rows


DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "graft-zoo", "data")


def main():
    out = os.path.join(DATA, "pretrained.json")
    table = {
        "generated_by": "scripts/gen_pretrained.py",
        "timm_version": timm.__version__,
        "torchvision_version": torchvision.__version__,
        "timm": timm_rows(),
        "torchvision": tv_rows(),
    }
    text = json.dumps(table, indent=1, sort_keys=False) + "\n"
    if len(sys.argv) > 1 and sys.argv[1] == "--print":
        sys.stdout.write(text)
        return
    with open(out, "w") as f:
        f.write(text)
    print(f"{out}: {len(table['timm'])} timm tags, {len(table['torchvision'])} torchvision weights")


if __name__ == "__main__":
    main()

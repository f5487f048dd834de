"""What timm and torchvision say about the pretrained weights of graft's architectures, for
tests/pretrained_table.rs:  pretrained_reference.py OUT_DIR ARCH...

OUT_DIR/reference.json:
  "timm": {arch: [tag, ...]} for every ARCH timm knows (timm.list_pretrained), the tags whose
          weights are on the Hugging Face Hub
  "cfgs": {tag: timm's get_pretrained_cfg(tag), as a dict}
  "keys": {"arch/num_classes": {state_dict key: shape}} of timm.create_model(arch, num_classes)
  "transforms": {tag or tv tag: {"train": file, "test": file?}}: timm's eval transform
              (resolve_data_config + create_transform, use_test_size False / True), or
              torchvision's weights.transforms(), on scikit-learn's china.jpg, before
              normalisation, 0-255 units, [3, H, W] float32 .npy files (one per distinct transform)
  "photo": the JPEG's path
"""

import json
import os
import sys

import numpy as np
import sklearn.datasets
import timm
import torch
import torchvision
from PIL import Image
from timm.data import create_transform, resolve_data_config
from timm.models import get_pretrained_cfg
from torchvision import transforms

out, archs = sys.argv[1], sys.argv[2:]
os.makedirs(out, exist_ok=True)
photo = os.path.join(os.path.dirname(sklearn.datasets.__file__), "images", "china.jpg")
img = Image.open(photo).convert("RGB")

ref = {"timm": {}, "default": {}, "cfgs": {}, "keys": {}, "transforms": {}, "photo": photo}
saved = {}


def save(key, fn):
    """Runs fn() once per distinct transform key; returns the file name."""
    if key not in saved:
        name = f"t{len(saved)}.npy"
        np.save(os.path.join(out, name), fn().astype(np.float32))
        saved[key] = name
    return saved[key]


def timm_pixels(cfg):
    t = create_transform(**cfg)
    pre = transforms.Compose([s for s in t.transforms if not isinstance(s, transforms.Normalize)])
    return pre(img).numpy() * 255.0


for arch in archs:
    if not timm.is_model(arch):
        continue
    # tags whose weights are on the Hugging Face Hub (a few point at other URLs graft does not fetch)
    tags = [t for t in timm.list_pretrained(arch + ".*") if get_pretrained_cfg(t).hf_hub_id]
    ref["timm"][arch] = tags
    default = f"{arch}.{get_pretrained_cfg(arch).tag}"
    if default in tags:
        ref["default"][arch] = default
    for tag in tags:
        c = get_pretrained_cfg(tag).to_dict()
        ref["cfgs"][tag] = {k: v for k, v in c.items() if k != "state_dict"}
        key = f"{arch}/{c['num_classes']}"
        if key not in ref["keys"]:
            with torch.device("meta"):
                m = timm.create_model(arch, pretrained=False, num_classes=c["num_classes"])
            ref["keys"][key] = {k: list(v.shape) for k, v in m.state_dict().items()}
        entry = {}
        for which, use_test in (("train", False), ("test", True)):
            dc = resolve_data_config({}, pretrained_cfg=c, use_test_size=use_test)
            if use_test and not c.get("test_input_size"):
                continue
            k = json.dumps(dc, sort_keys=True)
            entry[which] = save(k, lambda dc=dc: timm_pixels(dc))
        ref["transforms"][tag] = entry

for arch in archs:
    try:
        enum = torchvision.models.get_model_weights(arch)
    except (ValueError, KeyError):
        continue
    for w in enum:
        t = w.transforms()
        mean = torch.tensor(t.mean).view(3, 1, 1)
        std = torch.tensor(t.std).view(3, 1, 1)
        k = f"tv {t.crop_size} {t.resize_size} {t.interpolation}"
        name = save(k, lambda t=t, mean=mean, std=std: ((t(img) * std + mean) * 255.0).numpy())
        ref["transforms"][f"tv:{arch}.{w.name}"] = {"train": name}

with open(os.path.join(out, "reference.json"), "w") as f:
    json.dump(ref, f)
print(f"{sum(len(v) for v in ref['timm'].values())} timm tags, {len(saved)} transforms")

"""timm's eval transform (resolve_data_config + create_transform, without the final Normalize)
on scikit-learn's two sample photos, in 0-255 units: transform_reference.py OUT_DIR.
Writes <photo>-<cfg>.npy ([3, H, W] float32) and photos.txt (the JPEG paths)."""
import os
import sys

import numpy as np
import sklearn.datasets
import timm
from PIL import Image
from timm.data import create_transform, resolve_data_config
from torchvision import transforms

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
img_dir = os.path.join(os.path.dirname(sklearn.datasets.__file__), "images")
photos = [os.path.join(img_dir, n) for n in ("china.jpg", "flower.jpg")]
cfgs = {
    # timm resnet50.a1_in1k: bicubic, crop_pct 0.95; vit_tiny: bicubic, crop_pct 0.9, mean/std 0.5
    "resnet": resolve_data_config({}, model=timm.create_model("resnet50.a1_in1k", pretrained=False)),
    "vit": resolve_data_config({}, model=timm.create_model("vit_tiny_patch16_224", pretrained=False)),
}
for name, cfg in cfgs.items():
    t = create_transform(**cfg)
    pre = transforms.Compose([s for s in t.transforms if not isinstance(s, transforms.Normalize)])
    for p in photos:
        x = pre(Image.open(p).convert("RGB")).numpy() * 255.0
        stem = os.path.splitext(os.path.basename(p))[0]
        np.save(os.path.join(out, f"{stem}-{name}.npy"), x.astype(np.float32))
with open(os.path.join(out, "photos.txt"), "w") as f:
    f.write("\n".join(photos) + "\n")
print({k: dict(v) for k, v in cfgs.items()})

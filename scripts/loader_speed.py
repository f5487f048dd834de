"""Loader throughput side by side: graft's loader (examples/loader_speed.rs, release build) and
torchvision's ImageFolder + DataLoader(num_workers=2), alternating, on the same folder of JPEGs
(made here from scikit-learn's two sample photos: random 400-600 px crops, quality 90).

usage: .venv/bin/python scripts/loader_speed.py [N_IMAGES] [RUNS]
prints best and median images/s of each and their ratio."""
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time

import sklearn.datasets
import torch
from PIL import Image
from torchvision import datasets, transforms

n_images = int(sys.argv[1]) if len(sys.argv) > 1 else 256
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
root = tempfile.mkdtemp(prefix="graft-loader-")
img_dir = os.path.join(os.path.dirname(sklearn.datasets.__file__), "images")
photos = [Image.open(os.path.join(img_dir, n)).convert("RGB") for n in ("china.jpg", "flower.jpg")]
rng = random.Random(0)
for i in range(n_images):
    cls = f"class{i % 4}"
    os.makedirs(os.path.join(root, cls), exist_ok=True)
    p = photos[i % 2]
    w, h = rng.randint(400, 600), rng.randint(380, 420)
    x, y = rng.randint(0, p.width - w), rng.randint(0, p.height - h)
    p.crop((x, y, x + w, y + h)).save(os.path.join(root, cls, f"{i}.jpg"), quality=90)

tf = transforms.Compose([
    transforms.Resize(256, interpolation=transforms.InterpolationMode.BILINEAR),
    transforms.CenterCrop(224),
    transforms.ToTensor(),
    transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
])


def torch_pass():
    ds = datasets.ImageFolder(root, transform=tf)
    dl = torch.utils.data.DataLoader(ds, batch_size=32, num_workers=2, shuffle=False)
    t0 = time.perf_counter()
    n = sum(x.shape[0] for x, _ in dl)
    return n / (time.perf_counter() - t0)


def graft_pass():
    out = subprocess.run(["target/release/examples/loader_speed", root], capture_output=True, text=True, check=True).stdout
    return float(re.search(r"([0-9.]+) img/s", out).group(1))


g, t = [], []
for _ in range(runs):
    g.append(graft_pass())
    t.append(torch_pass())
print(f"{n_images} JPEGs ~500x400 -> 224x224, batch 32, {runs} alternating runs")
print(f"graft loader (rayon, {os.cpu_count()} cores): best {max(g):.1f} img/s, median {statistics.median(g):.1f}")
print(f"torchvision DataLoader(num_workers=2):  best {max(t):.1f} img/s, median {statistics.median(t):.1f}")
print(f"graft / torchvision: best {max(g) / max(t):.2f}x, median {statistics.median(g) / statistics.median(t):.2f}x")

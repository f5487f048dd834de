"""open_clip reference for graft's CLIP parity test: a CLIP built by open_clip from its own
configuration with random weights, written as a Hub repo of open_clip's layout
(open_clip_config.json, open_clip_model.safetensors) with a tokenizer.json of CLIP's BPE made
from the vocabulary open_clip ships (by transformers' CLIPTokenizer), plus what open_clip computes:
token ids, image and text embeddings, the logit scale.

usage: clip_reference.py ID OUT_DIR     (ID: openai | custom)
"""
import gzip
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import open_clip
import torch
from open_clip.tokenizer import bytes_to_unicode, default_bpe
from safetensors.torch import save_file

torch.set_num_threads(2)
torch.manual_seed(0)
which, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)

# CLIP's BPE as vocab.json + merges.txt, the way open_clip's SimpleTokenizer builds it
merges = gzip.open(default_bpe()).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
merges = [tuple(m.split()) for m in merges]
vocab = list(bytes_to_unicode().values())
vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m) for m in merges]
vocab += ["<|startoftext|>", "<|endoftext|>"]
tok_dir = os.path.join(out, "bpe")
os.makedirs(tok_dir, exist_ok=True)
with open(os.path.join(tok_dir, "vocab.json"), "w") as f:
    json.dump({t: i for i, t in enumerate(vocab)}, f)
with open(os.path.join(tok_dir, "merges.txt"), "w") as f:
    f.write("#version: 0.2\n" + "".join(" ".join(m) + "\n" for m in merges))
from transformers import CLIPTokenizer

hf = CLIPTokenizer.from_pretrained(tok_dir)
hf.save_pretrained(tok_dir)
os.replace(os.path.join(tok_dir, "tokenizer.json"), os.path.join(out, "tokenizer.json"))

if which == "openai":
    # OpenAI's layout (QuickGELU, class-token pooling, a bare text projection), small
    cfg = {
        "embed_dim": 48,
        "quick_gelu": True,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
    }
    pre = {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711],
           "interpolation": "bicubic", "resize_mode": "shortest"}
    model = open_clip.CLIP(**cfg)
elif which == "custom":
    # CustomTextCLIP (text.* keys), GELU, LayerScale, average pooling, a text projection with bias
    cfg = {
        "embed_dim": 40,
        "custom_text": True,
        "vision_cfg": {"image_size": [32, 48], "layers": 2, "width": 64, "head_width": 16,
                       "patch_size": 16, "ls_init_value": 0.5, "pool_type": "avg", "mlp_ratio": 2.0},
        "text_cfg": {"context_length": 40, "vocab_size": 49408, "width": 48, "heads": 4, "layers": 3,
                     "ls_init_value": 0.5, "proj_bias": True, "mlp_ratio": 3.0},
    }
    pre = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bilinear",
           "resize_mode": "squash"}
    model = open_clip.CustomTextCLIP(**{k: v for k, v in cfg.items() if k != "custom_text"})
else:
    sys.exit(f"unknown id {which}")
model.eval()
# every tensor re-randomised so that no init pattern hides a mistake
with torch.no_grad():
    for name, p in model.named_parameters():
        if name.endswith("logit_scale"):
            p.fill_(2.3)
        elif p.ndim == 1 and ("ln" in name or "norm" in name) and name.endswith("weight"):
            p.copy_(1 + 0.2 * torch.randn_like(p))
        else:
            p.copy_(0.08 * torch.randn_like(p))
sd = {k: v.contiguous() for k, v in model.state_dict().items()}
save_file(sd, os.path.join(out, "open_clip_model.safetensors"))
with open(os.path.join(out, "open_clip_config.json"), "w") as f:
    json.dump({"model_cfg": cfg, "preprocess_cfg": pre}, f, indent=2)

texts = [
    "a photo of a dog.",
    "A bad photo of the ITAP!",
    "a sculpture of a tench.",
    "café, naïve, façade: 123 4.5 $%^",
    "it's a photo of my      cat",
    "日本語のテキスト and emoji 😀",
    " ".join(["word"] * 120),  # longer than the context: truncated, end-of-text kept
    "x",
    "don't stop: it's 2023, we'll see... U.S.A.!!! (ok?) [a]{b} #tag @user a-b_c",
    "ÉCOLE Ünïcödé ß œ — déjà-vu",
]
ctx = cfg["text_cfg"]["context_length"]
ids = open_clip.tokenize(texts, context_length=ctx)
h, w = (cfg["vision_cfg"]["image_size"],) * 2 if isinstance(cfg["vision_cfg"]["image_size"], int) else cfg["vision_cfg"]["image_size"]
images = torch.randn(3, 3, h, w)
with torch.no_grad():
    img = model.encode_image(images)
    txt = model.encode_text(ids)
# zero-shot: open_clip's classifier from CLIP's 80 ImageNet templates, and the image logits
from open_clip.zero_shot_classifier import build_zero_shot_classifier
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

classes = ["dog", "goldfish", "traffic light", "Granny Smith"]
zs = build_zero_shot_classifier(
    model, lambda t: open_clip.tokenize(t, context_length=ctx), classes, OPENAI_IMAGENET_TEMPLATES
)
with torch.no_grad():
    logits = model.logit_scale.exp() * torch.nn.functional.normalize(img, dim=-1) @ zs
np.save(os.path.join(out, "zs_weights.npy"), zs.T.contiguous().numpy())
np.save(os.path.join(out, "zs_logits.npy"), logits.numpy())
np.save(os.path.join(out, "images.npy"), images.numpy())

# image files in class folders (for `graft embed --clip` and the zero-shot experiment), through
# open_clip's own preprocessing (PIL decode, resize, crop, normalise) and image tower
from PIL import Image

prep = open_clip.image_transform(
    cfg["vision_cfg"]["image_size"], is_train=False, mean=pre["mean"], std=pre["std"],
    resize_mode=pre["resize_mode"], interpolation=pre["interpolation"],
)
rng = np.random.default_rng(0)
files = []
for k, c in enumerate(classes):
    os.makedirs(os.path.join(out, "folder", c), exist_ok=True)
    for j in range(3):
        hh, ww = int(rng.integers(40, 90)), int(rng.integers(40, 90))
        yy, xx = np.mgrid[0:hh, 0:ww]
        base = np.stack([(xx * (k + 1) * 3) % 256, (yy * (j + 2) * 5) % 256, ((xx + yy) * 7) % 256], -1)
        pix = np.clip(base + rng.normal(0, 30, base.shape), 0, 255).astype(np.uint8)
        path = os.path.join("folder", c, f"{j}.png")
        Image.fromarray(pix).save(os.path.join(out, path))
        files.append(path)
batch = torch.stack([prep(Image.open(os.path.join(out, f))) for f in files])
with torch.no_grad():
    file_emb = model.encode_image(batch)
    file_logits = torch.nn.functional.normalize(file_emb, dim=-1) @ zs
np.save(os.path.join(out, "file_emb.npy"), file_emb.numpy())
np.save(os.path.join(out, "file_pred.npy"), file_logits.argmax(-1).numpy().astype(np.int64))
np.save(os.path.join(out, "ids.npy"), ids.numpy().astype(np.int64))
np.save(os.path.join(out, "image_emb.npy"), img.numpy())
np.save(os.path.join(out, "text_emb.npy"), txt.numpy())
with open(os.path.join(out, "meta.json"), "w") as f:
    json.dump({"texts": texts, "files": files, "zero_shot_classes": classes, "logit_scale": float(model.logit_scale.detach().exp()), "context_length": ctx}, f)

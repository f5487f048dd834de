"""One architecture of the zoo sweep (examples/zoo_sweep.rs): timm's model with every parameter
and buffer re-randomised (zoo_fixtures.py's rules), built for a small input, its weights, an input
batch, its logits and pooled pre-logits features.

usage: zoo_sweep_fixture.py ARCH SIZE OUT_DIR     (ViTs are built for SIZE²; CNNs take it as is)
"""
import json
import os
import sys

import torch
import timm
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
from zoo_fixtures import randomise  # noqa: E402

torch.set_num_threads(2)


def main():
    arch, size, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    torch.manual_seed(0)
    kwargs = {}
    entry = timm.models.model_entrypoint(arch)
    # the families built for an input size (position embeddings, rotary tables, windows)
    vit = entry.__module__ in ("timm.models.vision_transformer", "timm.models.deit", "timm.models.eva", "timm.models.swin_transformer", "timm.models.swin_transformer_v2")
    if vit:
        kwargs["img_size"] = size
    model = timm.create_model(arch, pretrained=False, **kwargs)
    randomise(model, seed=1234)
    model.eval()
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        logits = model(x)
        features = model.forward_head(model.forward_features(x), pre_logits=True)
    os.makedirs(out, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, os.path.join(out, "weights.safetensors"))
    save_file({"input": x, "logits": logits.contiguous(), "features": features.contiguous()}, os.path.join(out, "io.safetensors"))
    meta = {"model": arch, "img_size": [size, size] if vit else None, "num_classes": model.num_classes,
            "num_params": sum(p.numel() for p in model.parameters())}
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f)


if __name__ == "__main__":
    main()

"""Writes crates/graft-zoo/data/archs.json: timm architectures graft builds from a configurable
family builder, each with graft's hyper-parameters read off the model timm builds.

timm registers most Vision Transformers as one class with many switches (timm
`vision_transformer.py`, DeiT's `deit.py`), and its ConvNeXts likewise (`convnext.py`). For every timm architecture that has a pretrained
tag and is built by such a class, this script builds the model on the meta device (no memory, no
weights), reads its structure (modules, shapes, norms, activations, pooling) and writes the
matching graft config. A model with a part graft's builder does not implement is listed under
"out" with the reason, so docs/zoo.md can say what remains and why.

Reading the built model rather than the entrypoint's arguments means defaults, the pretrained
cfg's input size and timm's own argument handling are all taken as timm resolves them.

    .venv/bin/python scripts/gen_archs.py [OUT.json]

`tests/zoo_tables.rs` checks the file against the venv's timm, so a stale file fails `make test`;
`tests/zoo_parity.rs::every_builtin_counts_the_references_parameters` counts every architecture's
parameters against timm's.
"""

import json
import os
import sys

import torch
import timm
from timm.models import get_pretrained_cfg, model_entrypoint

VIT_MODULES = ("timm.models.vision_transformer", "timm.models.deit")


class Out(Exception):
    """A part of the model graft's builder does not implement."""


def cls_name(m):
    return type(m).__name__


def layer_norm_eps(m, what):
    if not isinstance(m, torch.nn.LayerNorm):
        raise Out(f"{what} is {cls_name(m)}, not LayerNorm")
    if not m.elementwise_affine or m.bias is None:
        raise Out(f"{what} is a LayerNorm without affine weight and bias")
    return m.eps


def is_identity(m):
    return isinstance(m, torch.nn.Identity)


def activation(act):
    name = cls_name(act)
    if name == "GELU":
        # torch's GELU has `approximate`; timm's own GELU is the exact one
        return {"none": "gelu", "tanh": "gelu_tanh"}[getattr(act, "approximate", "none")]
    if name == "GELUTanh":
        return "gelu_tanh"
    if name == "QuickGELU":
        return "quick_gelu"
    if name in ("SiLU", "Swish"):
        return "silu"
    raise Out(f"activation {name}")


def vit_config(name, m):
    """graft's `Vit` for timm's VisionTransformer `m`, or `Out`."""
    if cls_name(m) != "VisionTransformer":
        raise Out({"VisionTransformerDistilled": "distillation token and second head (DeiT distilled)"}.get(cls_name(m), cls_name(m)))
    if "flexi" in name or "radio" in name:
        raise Out("timm resamples its position embeddings bilinearly (graft: bicubic, antialiased)")
    if m.dynamic_img_size:
        raise Out("position embeddings resampled at every forward (dynamic_img_size)")
    pe = m.patch_embed
    if cls_name(pe) != "PatchEmbed" or not is_identity(pe.norm) or pe.dynamic_img_pad:
        raise Out(f"patch embedding {cls_name(pe)} with a norm or dynamic padding")
    if pe.patch_size[0] != pe.patch_size[1] or pe.proj.stride != pe.proj.kernel_size:
        raise Out("non-square patches")
    if m.pos_embed is None:
        raise Out("no learned position embedding")
    if getattr(m, "attn_pool", None) is not None:
        raise Out(f"attention pooling head ({cls_name(m.attn_pool)}, global_pool='{m.global_pool}')")
    if m.global_pool not in ("token", "avg"):
        raise Out(f"global_pool '{m.global_pool}'")
    if m.pool_include_prefix:
        raise Out("pooling over the prefix tokens")
    if not is_identity(m.patch_drop):
        raise Out("patch dropout")
    eps = set()
    pre_norm = not is_identity(m.norm_pre)
    if pre_norm:
        eps.add(layer_norm_eps(m.norm_pre, "norm_pre"))
    if pre_norm == (pe.proj.bias is not None):
        raise Out("patch-embedding bias and pre-norm not tied as timm ties them")
    blocks = list(m.blocks)
    b0 = blocks[0]
    cfg_block = None
    for i, b in enumerate(blocks):
        if cls_name(b) != "Block":
            raise Out(f"block {cls_name(b)}")
        a = b.attn
        if cls_name(a) != "Attention" or getattr(a, "gate", None) is not None or not is_identity(a.norm):
            raise Out(f"attention {cls_name(a)} (gated or scale-normed)")
        if a.proj.bias is None:
            raise Out("attention projection without bias")
        if a.head_dim * a.num_heads != m.embed_dim:
            raise Out("attention head width other than dim / heads")
        qk_norm = not is_identity(a.q_norm)
        if qk_norm:
            eps.add(layer_norm_eps(a.q_norm, "q_norm"))
            eps.add(layer_norm_eps(a.k_norm, "k_norm"))
        eps.add(layer_norm_eps(b.norm1, "norm1"))
        eps.add(layer_norm_eps(b.norm2, "norm2"))
        ls = None
        if not is_identity(b.ls1):
            if cls_name(b.ls1) != "LayerScale" or cls_name(b.ls2) != "LayerScale":
                raise Out(f"layer scale {cls_name(b.ls1)}")
            ls = float(b.ls1.init_values)
        mlp = b.mlp
        kind = cls_name(mlp)
        if kind == "Mlp":
            if not is_identity(mlp.norm) or mlp.fc1.bias is None or mlp.fc2.bias is None:
                raise Out("MLP with a norm or without biases")
            hidden, mlp_kind = mlp.fc1.out_features, "mlp"
        elif kind == "GluMlp":
            if mlp.gate_last or mlp.chunk_dim != -1 or not is_identity(mlp.norm):
                raise Out("gated MLP other than SwiGLUPacked")
            hidden, mlp_kind = mlp.fc2.in_features, "glu_packed"
        elif kind == "SwiGLU":
            if not is_identity(mlp.norm):
                raise Out("SwiGLU MLP with a norm")
            hidden, mlp_kind = mlp.fc2.in_features, "swiglu"
        else:
            raise Out(f"MLP {kind}")
        this = {
            "qkv_bias": a.qkv.bias is not None,
            "qk_norm": qk_norm,
            "layer_scale": ls,
            "mlp": mlp_kind,
            "mlp_hidden": hidden,
            "act": activation(mlp.act),
            "heads": a.num_heads,
        }
        if cfg_block is None:
            cfg_block = this
        elif this != cfg_block:
            raise Out(f"blocks differ (block {i})")
    final_norm = not is_identity(m.norm)
    fc_norm = not is_identity(m.fc_norm)
    if final_norm:
        eps.add(layer_norm_eps(m.norm, "norm"))
    if fc_norm:
        eps.add(layer_norm_eps(m.fc_norm, "fc_norm"))
    if len(eps) != 1:
        raise Out(f"LayerNorms with different eps {sorted(eps)}")
    head = m.head
    if not isinstance(head, (torch.nn.Linear, torch.nn.Identity)):
        raise Out(f"head {cls_name(head)}")
    cfg = {
        "patch": pe.patch_size[0],
        "dim": m.embed_dim,
        "depth": len(blocks),
        "heads": cfg_block["heads"],
        "mlp_hidden": cfg_block["mlp_hidden"],
        "img_size": list(pe.img_size),
        "class_token": m.cls_token is not None,
        "reg_tokens": m.num_reg_tokens,
        "no_embed_class": bool(m.no_embed_class),
        "pool": m.global_pool,
        "norm": final_norm,
        "fc_norm": fc_norm,
        "pre_norm": pre_norm,
        "qkv_bias": cfg_block["qkv_bias"],
        "qk_norm": cfg_block["qk_norm"],
        "layer_scale": cfg_block["layer_scale"],
        "act": cfg_block["act"],
        "mlp": cfg_block["mlp"],
        "norm_eps": eps.pop(),
    }
    # the head (its classes, or none: a feature tower) comes from the pretrained cfg
    return cfg



CONVNEXT_MODULES = ("timm.models.convnext",)
# graft's convnext_tiny is torchvision's network and names (timm's tags load into it through the
# remap table); the table does not register it a second time
TORCHVISION_NAMED = {"convnext_tiny"}


def convnext_config(name, m):
    """graft's `ConvNeXt` (torchvision's names; timm's layout loads through its remap table) for
    timm's ConvNeXt `m`, or `Out`."""
    if cls_name(m) != "ConvNeXt":
        raise Out(cls_name(m))
    stem = list(m.stem)
    if len(stem) != 2 or cls_name(stem[0]) != "Conv2d" or stem[0].kernel_size != (4, 4) or stem[0].stride != (4, 4):
        raise Out("overlapping stem (_ols)" if len(stem) > 2 else f"stem {[cls_name(s) for s in stem]}")
    if not is_identity(m.norm_pre):
        raise Out("head norm first (_hnf)")
    head = m.head
    if not is_identity(getattr(head, "pre_logits", None) or torch.nn.Identity()) or not hasattr(head, "norm"):
        raise Out("MLP head (head_hidden_size)")
    if m.head.global_pool.pool_type != "avg":
        raise Out(f"head pool {m.head.global_pool.pool_type}")
    eps = {layer_norm_eps(stem[1], "stem norm"), layer_norm_eps(head.norm, "head norm")}
    depths, dims, grn, gamma = [], [], set(), set()
    for s, stage in enumerate(m.stages):
        ds = stage.downsample
        if s == 0:
            if not is_identity(ds):
                raise Out("a first-stage downsample")
        else:
            parts = list(ds)
            if len(parts) != 2 or parts[1].kernel_size != (2, 2) or parts[1].stride != (2, 2):
                raise Out("downsample other than norm + 2x2 conv")
            eps.add(layer_norm_eps(parts[0], "downsample norm"))
        for b in stage.blocks:
            if b.conv_dw.kernel_size != (7, 7) or b.conv_dw.bias is None or b.conv_dw.dilation != (1, 1):
                raise Out("depthwise conv other than 7x7 with bias")
            if not is_identity(b.shortcut):
                raise Out("projection shortcut")
            eps.add(layer_norm_eps(b.norm, "block norm"))
            kind = cls_name(b.mlp)
            if kind not in ("Mlp", "GlobalResponseNormMlp"):
                raise Out(f"MLP {kind}")
            if activation(b.mlp.act) != "gelu":
                raise Out(f"activation {cls_name(b.mlp.act)}")
            fc1 = b.mlp.fc1
            hidden = fc1.out_channels if isinstance(fc1, torch.nn.Conv2d) else fc1.out_features
            if isinstance(fc1, torch.nn.Conv2d) and fc1.kernel_size != (1, 1):
                raise Out("conv MLP with a kernel other than 1x1")
            if hidden != 4 * b.conv_dw.out_channels:
                raise Out("MLP width other than 4x")
            grn.add(kind == "GlobalResponseNormMlp")
            if kind == "GlobalResponseNormMlp" and b.mlp.grn.eps != 1e-6:
                raise Out("GRN eps other than 1e-6")
            gamma.add(b.gamma is not None)
        depths.append(len(stage.blocks))
        dims.append(stage.blocks[0].conv_dw.out_channels)
    if len(depths) != 4 or len(eps) != 1 or len(grn) != 1 or len(gamma) != 1:
        raise Out("stages that differ in norm eps, GRN or layer scale")
    return {
        "depths": depths,
        "dims": dims,
        "stochastic_depth": 0.0,
        # timm's ls_init_value (1e-6 in every timm ConvNeXt): the init of a fresh model's gamma
        "layer_scale": 1e-6 if gamma.pop() else None,
        "grn": grn.pop(),
        "norm_eps": eps.pop(),
    }


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(__file__), "..", "crates", "graft-zoo", "data", "archs.json")
    archs = sorted({t.split(".")[0] for t in timm.list_pretrained()})
    builders = [("vit", VIT_MODULES, vit_config), ("convnext", CONVNEXT_MODULES, convnext_config)]
    found = {family: [] for family, _, _ in builders}
    out = []
    for name in archs:
        module = model_entrypoint(name).__module__
        for family, modules, config in builders:
            if module not in modules or name in TORCHVISION_NAMED:
                continue
            if not any(get_pretrained_cfg(t).hf_hub_id for t in timm.list_pretrained(name + ".*")):
                out.append({"name": name, "family": family, "why": "no weights on the Hugging Face Hub"})
                continue
            with torch.device("meta"):
                m = timm.create_model(name, pretrained=False)
            try:
                found[family].append({"name": name, "config": config(name, m)})
            except Out as e:
                out.append({"name": name, "family": family, "why": str(e.args[0])})
    doc = {"generated_by": "scripts/gen_archs.py", "timm_version": timm.__version__, **found, "out": out}
    tmp = out_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    os.replace(tmp, out_path)
    print(", ".join(f"{len(v)} {k}" for k, v in found.items()) + f" architectures, {len(out)} out", file=sys.stderr)


if __name__ == "__main__":
    main()

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


def attn_pool(m):
    """The model's attention-pooling head (timm's `AttentionPoolLatent`) if it has one, checked
    against what graft's `map` pool builds."""
    ap = getattr(m, "attn_pool", None)
    if ap is not None:
        if cls_name(ap) != "AttentionPoolLatent" or m.global_pool != "map":
            raise Out(f"attention pooling head {cls_name(ap)}")
        if ap.latent_len != 1 or ap.pos_embed is not None or ap.pool != "token" or ap.latent_dim != m.embed_dim:
            raise Out("attention pool with several latents, a position embedding or another width")
        if not isinstance(ap.q, torch.nn.Linear) or ap.q.bias is None or ap.kv.bias is None or ap.num_heads * ap.head_dim != m.embed_dim:
            raise Out("attention pool without a biased query projection")
        if not is_identity(ap.q_norm) or cls_name(ap.mlp) != "Mlp" or not is_identity(ap.mlp.norm):
            raise Out("attention pool with qk-norm or another MLP")
    return ap


def attn_pool_widths(ap, cfg_block):
    """The attention pool's heads and MLP width where they differ from the blocks' (Perception
    Encoder core), or `Out`."""
    if cfg_block["mlp"] != "mlp" or activation(ap.mlp.act) != cfg_block["act"]:
        raise Out("attention pool with another MLP form or activation than the blocks")
    widths = {}
    if ap.num_heads != cfg_block["heads"]:
        widths["pool_heads"] = ap.num_heads
    if ap.mlp.fc1.out_features != cfg_block["mlp_hidden"]:
        widths["pool_mlp_hidden"] = ap.mlp.fc1.out_features
    return widths


def patch_embed(m):
    """The ViT's patch embedding, checked against graft's (square, non-overlapping patches, no
    norm or dynamic padding)."""
    pe = m.patch_embed
    if cls_name(pe) != "PatchEmbed" or not is_identity(pe.norm) or pe.dynamic_img_pad:
        raise Out(f"patch embedding {cls_name(pe)} with a norm or dynamic padding")
    if pe.patch_size[0] != pe.patch_size[1] or pe.proj.stride != pe.proj.kernel_size:
        raise Out("non-square patches")
    return pe


def vit_common(m, pe, cfg_block, eps, ap, pre_norm):
    """The config keys timm's VisionTransformer and Eva share: sizes, tokens, norms, pooling and
    the blocks' common switches, after checking the final norms, the pool and the head."""
    final_norm = not is_identity(m.norm)
    fc_norm = not is_identity(m.fc_norm)
    if final_norm:
        eps.add(layer_norm_eps(m.norm, "norm"))
    if fc_norm:
        eps.add(layer_norm_eps(m.fc_norm, "fc_norm"))
    pool = {}
    if ap is not None:
        eps.add(layer_norm_eps(ap.norm, "attention pool norm"))
        pool = attn_pool_widths(ap, cfg_block)
    if len(eps) != 1:
        raise Out(f"LayerNorms with different eps {sorted(eps)}")
    if not isinstance(m.head, (torch.nn.Linear, torch.nn.Identity)):
        raise Out(f"head {cls_name(m.head)}")
    return {
        "patch": pe.patch_size[0],
        "dim": m.embed_dim,
        "depth": len(m.blocks),
        "heads": cfg_block["heads"],
        "mlp_hidden": cfg_block["mlp_hidden"],
        "img_size": list(pe.img_size),
        "class_token": m.cls_token is not None,
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
        **pool,
    }


def vit_config(name, m):
    """graft's `Vit` for timm's VisionTransformer `m`, or `Out`."""
    distilled = cls_name(m) == "VisionTransformerDistilled"
    if cls_name(m) != "VisionTransformer" and not distilled:
        raise Out(cls_name(m))
    if distilled and (m.num_reg_tokens or m.global_pool != "token"):
        raise Out("distillation token with registers or another pooling")
    # timm resamples FlexiViT's and RADIO's checkpoints bilinearly, without antialiasing
    # (vision_transformer.py's _create_vision_transformer)
    from timm.models import vision_transformer as tvt
    pos_resample = None
    if "flexi" in name:
        pos_resample = "bilinear"
    elif "radio" in name:
        aligned = any(n in name for n in tvt._RADIO_ALIGN_CORNERS)
        pos_resample = "bilinear_align_corners" if aligned else "bilinear"
    pe = patch_embed(m)
    if m.pos_embed is None:
        raise Out("no learned position embedding")
    ap = attn_pool(m)
    if m.global_pool not in ("token", "avg", "map"):
        raise Out(f"global_pool '{m.global_pool}'")
    if m.pool_include_prefix:
        raise Out("pooling over the prefix tokens")
    if not is_identity(m.patch_drop):
        raise Out("patch dropout")
    eps = set()
    pre_norm = not is_identity(m.norm_pre)
    if pre_norm:
        eps.add(layer_norm_eps(m.norm_pre, "norm_pre"))
        if pe.proj.bias is not None:
            raise Out("patch-embedding bias and pre-norm not tied as timm ties them")
    elif pe.proj.bias is None:
        raise Out("patch-embedding bias and pre-norm not tied as timm ties them")
    blocks = list(m.blocks)
    b0 = blocks[0]
    cfg_block = None
    for i, b in enumerate(blocks):
        if cls_name(b) != "Block":
            raise Out(f"block {cls_name(b)}")
        a = b.attn
        if cls_name(a) != "Attention" or getattr(a, "gate", None) is not None:
            raise Out(f"attention {cls_name(a)} (gated)")
        # BEiT-3's scale norms: a LayerNorm over the attention output before `proj`, one over
        # the MLP's hidden activations before `fc2`
        attn_norm = not is_identity(a.norm)
        if attn_norm:
            eps.add(layer_norm_eps(a.norm, "attn.norm"))
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
        mlp_norm = kind == "Mlp" and not is_identity(mlp.norm)
        if mlp_norm:
            eps.add(layer_norm_eps(mlp.norm, "mlp.norm"))
        if kind == "Mlp":
            if mlp.fc1.bias is None or mlp.fc2.bias is None:
                raise Out("MLP without biases")
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
            "attn_norm": attn_norm,
            "mlp_norm": mlp_norm,
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
    cfg = vit_common(m, pe, cfg_block, eps, ap, pre_norm)
    cfg.update({
        "reg_tokens": m.num_reg_tokens,
    })
    if distilled:
        cfg["dist_token"] = True
    if pos_resample is not None:
        cfg["pos_resample"] = pos_resample
    if m.dynamic_img_size:
        cfg["dynamic_img_size"] = True
    if cfg_block["attn_norm"]:
        cfg["attn_norm"] = True
    if cfg_block["mlp_norm"]:
        cfg["mlp_norm"] = True
    # the head (its classes, or none: a feature tower) comes from the pretrained cfg
    return cfg



EVA_MODULES = ("timm.models.eva",)


def rope_config(m, head_dim):
    """graft's `VitRope` for timm's rotary embedding `m.rope` (EVA's `RotaryEmbeddingCat` over
    token indices, DINOv3's `RotaryEmbeddingDinoV3` over centred coordinates), or `Out`."""
    r = m.rope
    kind = cls_name(r)
    if kind == "RotaryEmbeddingCat":
        if r.in_pixels or r.grid_type != "index" or r.dim != head_dim:
            raise Out("rotary embedding over pixel coordinates")
        cfg = {"kind": "index", "temperature": float(r.temperature), "offset": float(r.grid_offset)}
        if r.ref_feat_shape is not None:
            cfg["ref_grid"] = list(r.ref_feat_shape)
    elif kind == "RotaryEmbeddingDinoV3":
        if r.min_period is not None or r.max_period is not None or r.normalize_coords != "separate" or r.dim != head_dim:
            raise Out("DINOv3 rotary embedding with min / max periods or joint normalisation")
        cfg = {"kind": "centered", "temperature": float(r.temperature), "offset": float(r.grid_offset)}
    else:
        raise Out({"RotaryEmbeddingMixed": "learned mixed-frequency rotary embedding (RoPE-Mixed)"}.get(kind, f"rotary embedding {kind}"))
    if r.aug_active:
        raise Out("rotary coordinate augmentation")
    cfg["xy"] = r.grid_indexing == "xy"
    cfg["half"] = bool(r.rotate_half)
    return cfg


def eva_config(name, m):
    """graft's `Vit` for timm's `Eva` `m` (timm `eva.py`: EVA, EVA-02, DINOv3, Perception
    Encoder and the RoPE ViTs), or `Out`."""
    if cls_name(m) != "Eva":
        raise Out(cls_name(m))
    # dynamic_img_size resamples a learned position embedding at every forward; a model with
    # rotary embeddings only (DINOv3) computes them for the input's grid, as graft does
    if m.dynamic_img_size and m.pos_embed is not None:
        raise Out("position embeddings resampled at every forward (dynamic_img_size)")
    pe = patch_embed(m)
    ap = attn_pool(m)
    if m.global_pool not in ("token", "avg", "map"):
        raise Out(f"global_pool '{m.global_pool}'")
    if m.patch_drop is not None:
        raise Out("patch dropout")
    eps = set()
    pre_norm = not is_identity(m.norm_pre)
    if pre_norm:
        eps.add(layer_norm_eps(m.norm_pre, "norm_pre"))
        if pe.proj.bias is not None:
            raise Out("patch-embedding bias and pre-norm not tied as timm ties them")
    elif pe.proj.bias is None:
        raise Out("patch-embedding bias and pre-norm not tied as timm ties them")
    cfg_block = None
    head_dim = None
    for i, b in enumerate(m.blocks):
        if cls_name(b) != "EvaBlock":
            raise Out(f"block {cls_name(b)} (post-norm)")
        a = b.attn
        if cls_name(a) not in ("EvaAttention", "AttentionRope") or getattr(a, "gate", None) is not None:
            raise Out(f"attention {cls_name(a)} (gated)")
        if getattr(a, "num_kv_groups", 1) != 1:
            raise Out("grouped-query attention")
        if a.proj.bias is None or a.head_dim * a.num_heads != m.embed_dim:
            raise Out("attention projection without bias, or heads of another width")
        head_dim = a.head_dim
        if a.qkv is not None:
            if getattr(a, "q_bias", None) is not None:
                qkv, qkv_bias, k_bias = "fused_qv_bias", True, False
            else:
                qkv, qkv_bias, k_bias = "fused", a.qkv.bias is not None, a.qkv.bias is not None
            if getattr(a, "qkv_bias_separate", False):
                raise Out("qkv bias added apart from the projection")
        else:
            qkv, qkv_bias, k_bias = "split", a.q_proj.bias is not None, a.k_proj.bias is not None
            if (a.v_proj.bias is not None) != qkv_bias:
                raise Out("query and value projections that differ in bias")
        qk_norm = not is_identity(a.q_norm)
        if qk_norm:
            eps.add(layer_norm_eps(a.q_norm, "q_norm"))
            eps.add(layer_norm_eps(a.k_norm, "k_norm"))
        attn_norm = not is_identity(a.norm)
        if attn_norm:
            eps.add(layer_norm_eps(a.norm, "attn.norm"))
        eps.add(layer_norm_eps(b.norm1, "norm1"))
        eps.add(layer_norm_eps(b.norm2, "norm2"))
        if (b.gamma_1 is None) != (b.gamma_2 is None):
            raise Out("layer scale on the attention branch only")
        ls = float(b.init_values) if b.gamma_1 is not None else None
        mlp = b.mlp
        kind = cls_name(mlp)
        mlp_norm = not is_identity(mlp.norm)
        if mlp_norm:
            eps.add(layer_norm_eps(mlp.norm, "mlp.norm"))
        if kind == "Mlp":
            if mlp.fc1.bias is None or mlp.fc2.bias is None:
                raise Out("MLP without biases")
            hidden, mlp_kind = mlp.fc1.out_features, "mlp"
        elif kind == "GluMlp":
            if mlp.gate_last or mlp.chunk_dim != -1:
                raise Out("gated MLP other than SwiGLUPacked")
            hidden, mlp_kind = mlp.fc2.in_features, "glu_packed"
        elif kind == "SwiGLU":
            hidden, mlp_kind = mlp.fc2.in_features, "swiglu"
            if mlp.fc1_g.out_features != hidden:
                raise Out("SwiGLU with an aligned hidden width")
        else:
            raise Out(f"MLP {kind}")
        this = {
            "qkv": qkv, "qkv_bias": qkv_bias, "k_bias": k_bias, "qk_norm": qk_norm,
            "attn_norm": attn_norm, "layer_scale": ls, "mlp": mlp_kind, "mlp_norm": mlp_norm,
            "mlp_hidden": hidden, "act": activation(mlp.act), "heads": a.num_heads,
        }
        if cfg_block is None:
            cfg_block = this
        elif this != cfg_block:
            raise Out(f"blocks differ (block {i})")
    cfg = vit_common(m, pe, cfg_block, eps, ap, pre_norm)
    cfg.update({
        "reg_tokens": m.num_prefix_tokens - (m.cls_token is not None),
    })
    # EVA's parts past timm's VisionTransformer, only where used
    if cfg_block["layer_scale"] is not None:
        cfg["ls_gamma"] = True
    if m.pos_embed is None:
        cfg["pos_embed"] = False
    if m.rope is not None:
        cfg["rope"] = rope_config(m, head_dim)
    if cfg_block["qkv"] != "fused":
        cfg["qkv"] = cfg_block["qkv"]
    if cfg_block["qkv"] == "split" and cfg_block["k_bias"] != cfg_block["qkv_bias"]:
        cfg["k_bias"] = cfg_block["k_bias"]
    if cfg_block["attn_norm"]:
        cfg["attn_norm"] = True
    if cfg_block["mlp_norm"]:
        cfg["mlp_norm"] = True
    return cfg


SWIN_MODULES = ("timm.models.swin_transformer", "timm.models.swin_transformer_v2")


def swin_config(name, m):
    """graft's `Swin` for timm's SwinTransformer `m` (timm `swin_transformer.py`), or `Out`."""
    v2 = cls_name(m) == "SwinTransformerV2"
    if cls_name(m) not in ("SwinTransformer", "SwinTransformerV2"):
        raise Out(cls_name(m))
    pretrained_windows = []
    pe = m.patch_embed
    if cls_name(pe) != "PatchEmbed" or pe.patch_size[0] != pe.patch_size[1] or pe.proj.stride != pe.proj.kernel_size:
        raise Out("patch embedding other than square non-overlapping patches")
    if pe.proj.bias is None or pe.dynamic_img_pad:
        raise Out("patch embedding without bias or with dynamic padding")
    eps = {layer_norm_eps(pe.norm, "patch_embed.norm"), layer_norm_eps(m.norm, "norm")}
    if m.head.global_pool.pool_type != "avg" or not isinstance(m.head.fc, (torch.nn.Linear, torch.nn.Identity)):
        raise Out("head other than average pool + linear")
    depths, heads, windows, ratio, qkv_bias = [], [], [], set(), set()
    dim = None
    for i, stage in enumerate(m.layers):
        if cls_name(stage) not in ("SwinTransformerStage", "SwinTransformerV2Stage"):
            raise Out(f"stage {cls_name(stage)}")
        ds = stage.downsample
        if i == 0:
            if not is_identity(ds):
                raise Out("a first-stage downsample")
        else:
            if cls_name(ds) != "PatchMerging" or ds.reduction.bias is not None or ds.reduction.out_features != 2 * dim:
                raise Out("downsample other than patch merging to twice the width")
            eps.add(layer_norm_eps(ds.norm, "downsample norm"))
            if ds.norm.normalized_shape[0] != (2 * dim if v2 else 4 * dim):
                raise Out("patch merging's norm on another width than the builder's")
        blocks = list(stage.blocks)
        dim = blocks[0].dim
        win = set()
        for j, b in enumerate(blocks):
            if cls_name(b) not in ("SwinTransformerBlock", "SwinTransformerV2Block") or b.always_partition or b.dynamic_mask:
                raise Out(f"block {cls_name(b)} (always_partition / dynamic_mask)")
            a = b.attn
            if cls_name(a) != "WindowAttention" or a.qkv.out_features != 3 * dim:
                raise Out(f"attention {cls_name(a)}")
            if v2:
                if a.qkv.bias is not None or getattr(a, "qkv_bias_separate", False):
                    raise Out("V2 qkv with its own bias")
                if a.cpb_mlp[0].out_features != 512 or a.cpb_mlp[2].bias is not None:
                    raise Out("V2 position-bias MLP other than 2 -> 512 -> heads")
                if j == 0:
                    pretrained_windows.append(a.pretrained_window_size[0])
                if a.pretrained_window_size[0] != a.pretrained_window_size[1]:
                    raise Out("non-square pretraining window")
            if b.window_size[0] != b.window_size[1]:
                raise Out("non-square windows")
            win.add(b.window_size[0])
            expect_shift = 0 if j % 2 == 0 or min(b.input_resolution) <= b.window_size[0] else b.window_size[0] // 2
            if tuple(b.shift_size) != (expect_shift, expect_shift):
                raise Out(f"shift {b.shift_size} other than half a window on odd blocks")
            eps.add(layer_norm_eps(b.norm1, "norm1"))
            eps.add(layer_norm_eps(b.norm2, "norm2"))
            if cls_name(b.mlp) != "Mlp" or activation(b.mlp.act) != "gelu" or not is_identity(b.mlp.norm):
                raise Out("MLP other than fc1 / GELU / fc2")
            ratio.add(b.mlp.fc1.out_features / dim)
            qkv_bias.add((a.q_bias is not None) if v2 else (a.qkv.bias is not None))
            heads_ = a.num_heads
        if len(win) != 1:
            raise Out("windows that differ within a stage")
        depths.append(len(blocks))
        heads.append(heads_)
        windows.append(win.pop())
    if len(eps) != 1 or len(ratio) != 1 or len(qkv_bias) != 1:
        raise Out("norms, MLP ratios or qkv biases that differ")
    if m.embed_dim != m.layers[0].blocks[0].dim or any(m.layers[i].blocks[0].dim != m.embed_dim << i for i in range(len(depths))):
        raise Out("stage widths other than doubling")
    cfg = {
        "patch": pe.patch_size[0],
        "embed_dim": m.embed_dim,
        "depths": depths,
        "heads": heads,
        "windows": windows,
        "mlp_ratio": ratio.pop(),
        "img_size": list(pe.img_size),
        "qkv_bias": qkv_bias.pop(),
        "norm_eps": eps.pop(),
    }
    if v2:
        cfg["v2"] = True
        if any(pretrained_windows):
            cfg["pretrained_windows"] = pretrained_windows
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
    overlap = None
    if len(stem) == 3 and all(cls_name(c) == "Conv2d" and c.kernel_size == (3, 3) and c.stride == (2, 2) and c.padding == (1, 1) and c.bias is not None for c in stem[:2]):
        # timm's overlapping stem (_ols): two 3x3 stride-2 convs, no activation between
        overlap = stem[0].out_channels
        stem = [stem[1], stem[2]]
    elif len(stem) != 2 or cls_name(stem[0]) != "Conv2d" or stem[0].kernel_size != (4, 4) or stem[0].stride != (4, 4):
        raise Out(f"stem {[cls_name(s) for s in stem]}")
    if not is_identity(m.norm_pre):
        raise Out("head norm first (_hnf)")
    head = m.head
    if not hasattr(head, "norm"):
        raise Out("head without a norm")
    head_hidden = None
    pl = getattr(head, "pre_logits", None)
    if pl is not None and not is_identity(pl):
        # timm's NormMlpClassifierHead with hidden_size: Linear + GELU before the classifier
        if cls_name(pl) != "Sequential" or not isinstance(pl.fc, torch.nn.Linear) or activation(pl.act) != "gelu" or pl.fc.bias is None:
            raise Out("MLP head other than Linear + GELU")
        head_hidden = pl.fc.out_features
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
    cfg = {
        "depths": depths,
        "dims": dims,
        "stochastic_depth": 0.0,
        # timm's ls_init_value (1e-6 in every timm ConvNeXt): the init of a fresh model's gamma
        "layer_scale": 1e-6 if gamma.pop() else None,
        "grn": grn.pop(),
        "norm_eps": eps.pop(),
    }
    if overlap is not None:
        cfg["overlap_stem"] = overlap
    if head_hidden is not None:
        cfg["head_hidden"] = head_hidden
    return cfg


RESNET_MODULES = ("timm.models.resnet",)
# graft's resnet18/34/50/101 are torchvision's (timm shares their names and layout)
RESNET_TORCHVISION_NAMED = {"resnet18", "resnet34", "resnet50", "resnet101"}


def make_divisible(v, divisor=8, round_limit=0.0):
    """timm's `make_divisible` (layers/helpers.py) as its SE module calls it."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < round_limit * v:
        new_v += divisor
    return new_v


def batch_norm(m, what):
    if cls_name(m) != "BatchNorm2d":
        raise Out(f"{what} is {cls_name(m)}, not BatchNorm2d")
    if m.eps != 1e-5 or not m.affine or not m.track_running_stats:
        raise Out(f"{what}: a BatchNorm other than eps 1e-5 with affine and running stats")


def relu(m, what):
    if cls_name(m) != "ReLU":
        raise Out(f"activation {cls_name(m)} ({what})")


def resnet_config(name, m):
    """graft's `ResNet` for timm's ResNet `m` (timm `resnet.py`), or `Out`."""
    if cls_name(m) != "ResNet":
        raise Out(cls_name(m))
    # stem: a 7x7 conv, or three 3x3 convs (deep; tiered: a narrower first conv)
    deep_stem, tiered = None, False
    if isinstance(m.conv1, torch.nn.Conv2d):
        if m.conv1.kernel_size != (7, 7) or m.conv1.out_channels != 64:
            raise Out("stem conv other than 7x7, 64 channels")
    else:
        c = list(m.conv1)
        if len(c) != 7 or [cls_name(x) for x in c[::3]] != ["Conv2d"] * 3:
            raise Out("stem other than three 3x3 convs")
        batch_norm(c[1], "stem norm")
        batch_norm(c[4], "stem norm")
        relu(c[2], "stem")
        sw = c[3].out_channels
        tiered = c[0].out_channels != sw
        if tiered and c[0].out_channels != 3 * (sw // 4):
            raise Out("deep stem widths other than timm's deep / deep_tiered")
        if c[6].out_channels != 2 * sw:
            raise Out("deep stem output other than twice its width")
        deep_stem = sw
    batch_norm(m.bn1, "bn1")
    relu(m.act1, "stem")
    # stem pool: max-pool, a conv (ResNet-RS), or a 2x2 average pool (anti-aliased)
    pool = m.maxpool
    replace_stem_pool, aa_stem = False, False
    if isinstance(pool, torch.nn.MaxPool2d):
        if (pool.kernel_size, pool.stride, pool.padding) != (3, 2, 1):
            raise Out("stem max-pool other than 3x3 stride 2")
    elif isinstance(pool, torch.nn.AvgPool2d):
        if (pool.kernel_size, pool.stride, pool.padding) != (2, 2, 0):
            raise Out("stem average pool other than 2x2")
        aa_stem = True
    elif isinstance(pool, torch.nn.Sequential) and [cls_name(x) for x in pool] == ["Conv2d", "BatchNorm2d", "ReLU"]:
        if pool[0].stride != (2, 2) or pool[0].kernel_size != (3, 3):
            raise Out("stem conv-pool other than 3x3 stride 2")
        batch_norm(pool[1], "stem pool norm")
        replace_stem_pool = True
    else:
        raise Out(f"stem pool {[cls_name(x) for x in pool] if isinstance(pool, torch.nn.Sequential) else cls_name(pool)} (blur / anti-aliased conv pool)")
    stages = [m.layer1, m.layer2, m.layer3, m.layer4]
    kinds = {cls_name(b) for s in stages for b in s}
    if kinds not in ({"BasicBlock"}, {"Bottleneck"}):
        raise Out(f"blocks {sorted(kinds)}")
    bottleneck = kinds == {"Bottleneck"}
    expansion = 4 if bottleneck else 1
    first = m.layer1[0]
    cardinality = first.conv2.groups if bottleneck else 1
    base_width = first.conv2.out_channels // cardinality if bottleneck else 64
    found = {"avg_down": set(), "attn": set(), "aa": set()}
    for s, stage in enumerate(stages):
        planes = 64 << s
        for i, b in enumerate(stage):
            if b.conv1.kernel_size != ((1, 1) if bottleneck else (3, 3)):
                raise Out("block conv kernels other than timm's defaults")
            if b.conv2.dilation != (1, 1):
                raise Out("dilated blocks (output stride < 32)")
            last_conv = b.conv3 if bottleneck else b.conv2
            if last_conv.out_channels != planes * expansion:
                raise Out("stage widths other than 64, 128, 256, 512 planes (pruned or custom channels)")
            if bottleneck:
                width = int(planes * (base_width / 64)) * cardinality
                if b.conv2.out_channels != width or b.conv1.out_channels != width or b.conv2.groups != cardinality:
                    raise Out("bottleneck widths other than planes x base_width / 64 x cardinality (pruned, reduce_first)")
            elif b.conv1.out_channels != planes:
                raise Out("basic-block widths other than its planes (reduce_first)")
            for j, n in enumerate([b.bn1, b.bn2] + ([b.bn3] if bottleneck else [])):
                batch_norm(n, f"block norm {j + 1}")
            for a in [b.act1, b.act2] + ([b.act3] if bottleneck else []):
                relu(a, "block")
            if cls_name(b.drop_block) != "Identity":
                raise Out("DropBlock")
            # anti-aliasing: a 2x2 average pool after the strided conv's activation
            if not is_identity(b.aa):
                if not isinstance(b.aa, torch.nn.AvgPool2d) or b.aa.kernel_size != 2 or b.aa.stride != 2:
                    raise Out(f"anti-aliasing {cls_name(b.aa)} (blur pool)")
                found["aa"].add(True)
            elif b.stride == 2:
                found["aa"].add(False)
            ch = planes * expansion
            se = b.se
            if se is None or is_identity(se):
                found["attn"].add(("none", None))
            elif cls_name(se) == "SEModule":
                if se.add_maxpool or not is_identity(se.bn) or cls_name(se.act) != "ReLU" or cls_name(se.gate) != "Sigmoid" or se.fc1.bias is None:
                    raise Out("SE module other than ReLU / sigmoid with biases")
                ratio = next((r for r in (1 / 16, 0.25) if make_divisible(ch * r) == se.fc1.out_channels), None)
                if ratio is None:
                    raise Out("SE width other than 1/16 or 1/4 of the channels")
                found["attn"].add(("se", ratio))
            elif cls_name(se) == "EcaModule":
                if se.conv2 is not None or cls_name(se.gate) != "Sigmoid" or se.conv.bias is not None:
                    raise Out("ECA other than a bias-free conv and a sigmoid")
                found["attn"].add(("eca", None))
            else:
                raise Out(f"attention {cls_name(se)}")
            d = b.downsample
            if d is None:
                continue
            parts = list(d)
            if cls_name(parts[0]) in ("AvgPool2d", "Identity"):
                found["avg_down"].add(True)
                if isinstance(parts[0], torch.nn.AvgPool2d) and (parts[0].kernel_size != 2 or not parts[0].ceil_mode or parts[0].count_include_pad):
                    raise Out("shortcut pool other than timm's avg-down")
                parts = parts[1:]
            else:
                found["avg_down"].add(False)
            if len(parts) != 2 or parts[0].kernel_size != (1, 1):
                raise Out("shortcut conv other than 1x1 (down_kernel_size)")
            batch_norm(parts[1], "shortcut norm")
    if any(len(v) > 1 for v in found.values()):
        raise Out("blocks that differ in shortcut, attention or anti-aliasing")
    aa = found["aa"].pop() if found["aa"] else False
    if aa != aa_stem:
        raise Out("anti-aliased blocks with another stem pool, or the reverse")
    if aa and replace_stem_pool:
        raise Out("anti-aliased conv stem pool")
    attn, ratio = found["attn"].pop()
    if m.global_pool.pool_type != "avg" or not isinstance(m.fc, torch.nn.Linear):
        raise Out("head other than average pool + linear")
    cfg = {
        "block": "bottleneck" if bottleneck else "basic",
        "layers": [len(s) for s in stages],
        "deep_stem": deep_stem,
        "avg_down": bool(found["avg_down"] and found["avg_down"].pop()),
        "cardinality": cardinality,
        "base_width": base_width,
        "se": attn == "se",
    }
    # options past the hand-written variants only where used, so their configs read as before
    if tiered:
        cfg["tiered_stem"] = True
    if replace_stem_pool:
        cfg["conv_stem_pool"] = True
    if aa:
        cfg["anti_alias"] = True
    if attn == "eca":
        cfg["eca"] = True
    if attn == "se" and ratio != 1 / 16:
        cfg["se_reduction"] = round(1 / ratio)
    return cfg


MBCONV_MODULES = ("timm.models.efficientnet", "timm.models.mobilenetv3")
# graft's efficientnet_b0 and mobilenetv3_{large,small}_100 are the hand-written networks under
# torchvision's names (timm's tags load into them through their remap tables)
MBCONV_TORCHVISION_NAMED = {"efficientnet_b0", "mobilenetv3_large_100", "mobilenetv3_small_100"}


def mb_activation(act, what):
    """The activation of a timm EfficientNet / MobileNet block (`BatchNormAct2d.act`, an SE's
    `act1`, MobileNetV3's `act2`)."""
    name = cls_name(act)
    if name == "Identity":
        return "none"
    if name in ("ReLU", "ReLU6", "Hardswish"):
        return {"ReLU": "relu", "ReLU6": "relu6", "Hardswish": "hardswish"}[name]
    if name in ("SiLU", "Swish"):
        return "silu"
    raise Out(f"activation {name} ({what})")


class MbConvReader:
    """Reads one timm EfficientNet / MobileNetV3 into graft's `MbConvNet` config, checking every
    conv's padding and every norm's eps against the model-wide choice."""

    def __init__(self, m):
        # timm's tf_ ports pad every strided conv as TensorFlow's "same" (Conv2dSame)
        self.same = any(cls_name(c) == "Conv2dSame" for c in m.modules())
        self.eps = set()

    def conv(self, c, what, bias=False, depthwise=False):
        if cls_name(c) not in ("Conv2d", "Conv2dSame"):
            raise Out(f"{what} is {cls_name(c)}")
        k, s = c.kernel_size[0], c.stride[0]
        if c.kernel_size != (k, k) or c.stride != (s, s) or c.dilation != (1, 1):
            raise Out(f"{what}: non-square or dilated conv")
        if (c.bias is not None) != bias:
            raise Out(f"{what}: conv bias other than the builder's")
        if depthwise != (c.groups == c.in_channels == c.out_channels and c.groups > 1) or (not depthwise and c.groups != 1):
            raise Out(f"{what}: grouped conv other than depthwise")
        if cls_name(c) == "Conv2dSame":
            if not (self.same and s > 1):
                raise Out(f"{what}: 'same' padding on an unstrided conv")
        elif c.padding != ((k - 1) // 2, (k - 1) // 2) or (self.same and s > 1):
            raise Out(f"{what}: padding other than symmetric (k-1)/2")
        return k, s

    def bn(self, n, what):
        if cls_name(n) != "BatchNormAct2d" or not n.affine or not n.track_running_stats:
            raise Out(f"{what} is {cls_name(n)}, not BatchNormAct2d")
        if not is_identity(n.drop):
            raise Out(f"{what}: dropout inside the norm")
        if n.momentum != 0.1:
            raise Out(f"{what}: BatchNorm momentum {n.momentum}")
        self.eps.add(n.eps)
        return mb_activation(n.act, what)

    def se(self, se, block_act, what):
        if is_identity(se):
            return None
        if cls_name(se) != "SqueezeExcite":
            raise Out(f"attention {cls_name(se)} ({what})")
        self.conv(se.conv_reduce, what + " SE reduce", bias=True)
        self.conv(se.conv_expand, what + " SE expand", bias=True)
        gate = {"Sigmoid": "sigmoid", "Hardsigmoid": "hardsigmoid"}.get(cls_name(se.gate))
        if gate is None:
            raise Out(f"SE gate {cls_name(se.gate)}")
        act = mb_activation(se.act1, what + " SE")
        return {"rd": se.conv_reduce.out_channels, "act": act, "gate": gate}

    def block(self, b, what):
        kind = cls_name(b)
        if getattr(b, "conv_s2d", None) is not None or not is_identity(getattr(b, "aa", torch.nn.Identity())):
            raise Out("space-to-depth or anti-aliased blocks")
        if kind == "DepthwiseSeparableConv":
            k, s = self.conv(b.conv_dw, what + ".conv_dw", depthwise=True)
            act = self.bn(b.bn1, what + ".bn1")
            se = self.se(b.se, act, what)
            self.conv(b.conv_pw, what + ".conv_pw")
            pw_act = self.bn(b.bn2, what + ".bn2")
            if pw_act not in ("none", act):
                raise Out("point-wise activation other than the block's")
            cfg = {"kind": "ds", "kernel": k, "stride": s, "in": b.conv_dw.in_channels,
                   "out": b.conv_pw.out_channels, "act": act}
            if pw_act != "none":
                cfg["pw_act"] = True
        elif kind == "InvertedResidual":
            self.conv(b.conv_pw, what + ".conv_pw")
            act = self.bn(b.bn1, what + ".bn1")
            k, s = self.conv(b.conv_dw, what + ".conv_dw", depthwise=True)
            if self.bn(b.bn2, what + ".bn2") != act:
                raise Out("block activations that differ")
            se = self.se(b.se, act, what)
            self.conv(b.conv_pwl, what + ".conv_pwl")
            if self.bn(b.bn3, what + ".bn3") != "none":
                raise Out("activation after the projection")
            if b.conv_pw.kernel_size != (1, 1) or b.conv_pwl.kernel_size != (1, 1):
                raise Out("expansion / projection conv other than 1x1")
            cfg = {"kind": "ir", "kernel": k, "stride": s, "in": b.conv_pw.in_channels,
                   "mid": b.conv_pw.out_channels, "out": b.conv_pwl.out_channels, "act": act}
        elif kind == "EdgeResidual":
            k, s = self.conv(b.conv_exp, what + ".conv_exp")
            act = self.bn(b.bn1, what + ".bn1")
            se = self.se(b.se, act, what)
            self.conv(b.conv_pwl, what + ".conv_pwl")
            if self.bn(b.bn2, what + ".bn2") != "none" or b.conv_pwl.kernel_size != (1, 1):
                raise Out("edge residual projection other than 1x1 without activation")
            cfg = {"kind": "er", "kernel": k, "stride": s, "in": b.conv_exp.in_channels,
                   "mid": b.conv_exp.out_channels, "out": b.conv_pwl.out_channels, "act": act}
        elif kind == "ConvBnAct":
            k, s = self.conv(b.conv, what + ".conv")
            act = self.bn(b.bn1, what + ".bn1")
            se = None
            cfg = {"kind": "cn", "kernel": k, "stride": s, "in": b.conv.in_channels,
                   "out": b.conv.out_channels, "act": act}
        elif kind == "UniversalInvertedResidual":
            # MobileNetV4: optional depthwise convs before the expansion (start), after it (mid,
            # with the activation) and after the projection (end)
            cfg = {"kind": "uir", "in": b.pw_exp.conv.in_channels, "mid": b.pw_exp.conv.out_channels,
                   "out": b.pw_proj.conv.out_channels}
            strides = {}
            for part in ("dw_start", "dw_mid", "dw_end"):
                cna = getattr(b, part)
                if is_identity(cna):
                    continue
                if cls_name(cna) != "ConvNormAct" or getattr(cna, "aa", None) is not None:
                    raise Out(f"{what}.{part} is {cls_name(cna)}")
                k, st = self.conv(cna.conv, f"{what}.{part}.conv", depthwise=True)
                a = self.bn(cna.bn, f"{what}.{part}.bn")
                cfg[part.split("_")[1] + "_kernel"] = k
                strides[part] = st
                if (part == "dw_mid") != (a != "none"):
                    raise Out("depthwise activations other than MobileNetV4's (mid only)")
            for part, act_expected in (("pw_exp", True), ("pw_proj", False)):
                cna = getattr(b, part)
                if cls_name(cna) != "ConvNormAct":
                    raise Out(f"{what}.{part} is {cls_name(cna)}")
                self.conv(cna.conv, f"{what}.{part}.conv")
                a = self.bn(cna.bn, f"{what}.{part}.bn")
                if part == "pw_exp":
                    act = a
                elif a != "none":
                    raise Out("activation after the projection")
            # timm strides dw_mid when present, else dw_start, else dw_end
            stride = max(strides.values(), default=1)
            strided = next((q for q in ("dw_mid", "dw_start", "dw_end") if q in strides), None)
            if any(v != (stride if q == strided else 1) for q, v in strides.items()):
                raise Out("a universal inverted residual strided other than timm's builder strides it")
            cfg["stride"] = stride
            cfg["act"] = act
            se = self.se(b.se, act, what)
            if not is_identity(b.layer_scale):
                cfg["layer_scale"] = True
        else:
            raise Out(f"block {kind}")
        if se is not None:
            cfg["se"] = se
        # timm's blocks add the shortcut where shapes allow unless built with noskip
        natural = cfg["stride"] == 1 and cfg["in"] == cfg["out"]
        if b.has_skip != natural:
            cfg["skip"] = b.has_skip
        if not is_identity(b.drop_path):
            raise Out("drop path set by the entrypoint")
        return cfg


def mbconv_config(name, m):
    """graft's `MbConvNet` for timm's EfficientNet / MobileNetV3 `m` (timm `efficientnet.py`,
    `mobilenetv3.py` and the block builder they share), or `Out`."""
    kind = cls_name(m)
    if kind not in ("EfficientNet", "MobileNetV3"):
        raise Out(kind)
    r = MbConvReader(m)
    k, s = r.conv(m.conv_stem, "conv_stem")
    if (k, s) != (3, 2):
        raise Out("stem other than a 3x3 stride-2 conv")
    stem_act = r.bn(m.bn1, "bn1")
    stages = []
    for si, stage in enumerate(m.blocks):
        stages.append([r.block(b, f"blocks.{si}.{bi}") for bi, b in enumerate(stage)])
    if m.global_pool.pool_type != "avg" or not isinstance(m.classifier, torch.nn.Linear):
        raise Out("head other than average pool + linear")
    if kind == "EfficientNet" and is_identity(m.conv_head):
        # MobileNetV1: the pool right after the blocks
        if not is_identity(m.bn2):
            raise Out("a head norm without a head conv")
        head = None
    elif kind == "EfficientNet":
        if r.conv(m.conv_head, "conv_head") != (1, 1):
            raise Out("head conv other than 1x1")
        head = {"kind": "conv_bn", "out": m.conv_head.out_channels, "act": r.bn(m.bn2, "bn2")}
    else:
        if is_identity(m.conv_head):
            raise Out("MobileNetV3 head without a conv")
        bias = m.conv_head.bias is not None
        if r.conv(m.conv_head, "conv_head", bias=bias) != (1, 1):
            raise Out("head conv other than 1x1")
        if is_identity(m.norm_head):
            head = {"kind": "pool_conv", "out": m.conv_head.out_channels,
                    "act": mb_activation(m.act2, "act2"), "bias": bias}
        else:
            # MobileNetV4: BatchNorm (with the activation) after the head conv
            if bias or not is_identity(m.act2):
                raise Out("a normed head conv with a bias or a second activation")
            head = {"kind": "pool_conv_bn", "out": m.conv_head.out_channels,
                    "act": r.bn(m.norm_head, "norm_head")}
    if len(r.eps) != 1:
        raise Out("norms that differ in eps")
    # timm's feature_info: the stacks whose output is a feature level (the stem's when the first
    # block is strided); graft groups the stacks between two levels into one stage
    levels = [int(f["module"].split(".")[1]) for f in m.feature_info if f["module"].startswith("blocks.")]
    cfg = {
        "stem": {"out": m.conv_stem.out_channels, "act": stem_act},
        "stages": stages,
        "levels": levels,
        "same_pad": r.same,
        "bn_eps": r.eps.pop(),
        "drop_rate": m.drop_rate,
        "drop_path_rate": 0.0,
    }
    if head is not None:
        cfg["head"] = head
    return cfg


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(__file__), "..", "crates", "graft-zoo", "data", "archs.json")
    archs = sorted({t.split(".")[0] for t in timm.list_pretrained()})
    builders = [
        ("resnet", RESNET_MODULES, resnet_config, RESNET_TORCHVISION_NAMED),
        ("vit", VIT_MODULES, vit_config, set()),
        ("vit", EVA_MODULES, eva_config, set()),
        ("convnext", CONVNEXT_MODULES, convnext_config, TORCHVISION_NAMED),
        ("mbconv", MBCONV_MODULES, mbconv_config, MBCONV_TORCHVISION_NAMED),
        ("swin", SWIN_MODULES, swin_config, set()),
    ]
    found = {family: [] for family, _, _, _ in builders}
    out = []
    for name in archs:
        module = model_entrypoint(name).__module__
        for family, modules, config, torchvision_named in builders:
            if module not in modules or name in torchvision_named:
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

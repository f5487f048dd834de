"""Parity fixtures for graft's zoo: build the reference model in torchvision / timm, re-randomise
every parameter and buffer from a fixed seed (default inits hide bugs: timm zeroes the last BN
weight of each ResNet block and ConvNeXt's layer scale starts at 1e-6), and save its weights, an
input batch, the logits, the pooled pre-logits features and every stage's output.

usage: zoo_fixtures.py FIXTURE_ID OUT_DIR    (writes OUT_DIR atomically: tmp dir + rename)
"""
import json
import math
import os
import shutil
import sys

import torch
import timm
import torchvision
from safetensors.torch import save_file

torch.set_num_threads(2)

MNV3_L = ["features.0", "features.1", "features.3", "features.6", "features.10", "features.12", "features.15", "features.16"]
MNV3_S = ["features.0", "features.1", "features.3", "features.6", "features.8", "features.11", "features.12"]


def tv_resnet18_small():
    m = torchvision.models.resnet18(num_classes=10)
    m.conv1 = torch.nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    m.maxpool = torch.nn.Identity()
    return m


def vit_stages(depth, pre_norm=False):
    return ["norm_pre" if pre_norm else "pos_drop"] + [f"blocks.{i}" for i in range(depth)]


def mb_stages(levels, head=False):
    """A timm EfficientNet / MobileNet's graft stages: the stem, the stacks ending each feature
    level, the head conv (EfficientNet's, before the pool)."""
    return ["bn1"] + [f"blocks.{i}" for i in levels] + (["bn2"] if head else [])


def timm_at(name, size):
    """timm's architecture built for a small input (its position embeddings for that grid)."""
    return lambda: timm.create_model(name, img_size=size)


def vit_custom(**kw):
    """A ViT no timm tag uses in this form, from timm's own class: graft builds it from the
    config scripts/gen_archs.py reads off it (meta "arch")."""
    from timm.models.vision_transformer import VisionTransformer
    return lambda: VisionTransformer(**kw)


# fixture id -> (graft model name, builder, input hw, stage modules (graft stage order), options)
FIXTURES = {
    "resnet18": ("resnet18", lambda: timm.create_model("resnet18"), 64, ["act1", "layer1", "layer2", "layer3", "layer4"], {}),
    "resnet34": ("resnet34", lambda: timm.create_model("resnet34"), 64, ["act1", "layer1", "layer2", "layer3", "layer4"], {}),
    "resnet50": ("resnet50", lambda: timm.create_model("resnet50"), 64, ["act1", "layer1", "layer2", "layer3", "layer4"], {}),
    "resnet101": ("resnet101", lambda: timm.create_model("resnet101"), 64, ["act1", "layer1", "layer2", "layer3", "layer4"], {}),
    "resnet50d": ("resnet50d", lambda: timm.create_model("resnet50d"), 64, ["act1", "layer1", "layer2", "layer3", "layer4"], {}),
    "resnext50_32x4d": ("resnext50_32x4d", lambda: timm.create_model("resnext50_32x4d"), 64, ["act1", "layer1", "layer2", "layer3", "layer4"], {}),
    "seresnext26d_32x4d": ("seresnext26d_32x4d", lambda: timm.create_model("seresnext26d_32x4d"), 64, ["act1", "layer1", "layer2", "layer3", "layer4"], {}),
    "resnet18d": ("resnet18d", lambda: timm.create_model("resnet18d"), 64, ["act1", "layer1", "layer2", "layer3", "layer4"], {}),
    # timm's ResNet options past ResNet-D: tiered stem + ECA, anti-aliased pools, ResNet-RS's conv stem pool + SE 1/4
    "ecaresnet26t": ("ecaresnet26t", lambda: timm.create_model("ecaresnet26t"), 64, ["act1", "layer1", "layer2", "layer3", "layer4"], {}),
    "resnetaa50": ("resnetaa50", lambda: timm.create_model("resnetaa50"), 64, ["act1", "layer1", "layer2", "layer3", "layer4"], {}),
    "resnetrs50": ("resnetrs50", lambda: timm.create_model("resnetrs50"), 64, ["act1", "layer1", "layer2", "layer3", "layer4"], {}),
    "resnet10t": ("resnet10t", lambda: timm.create_model("resnet10t"), 64, ["act1", "layer1", "layer2", "layer3", "layer4"], {}),
    "resnet50_tv": ("resnet50", lambda: torchvision.models.resnet50(), 64, ["relu", "layer1", "layer2", "layer3", "layer4"], {}),
    "resnet18_small": ("resnet18_small", tv_resnet18_small, 16, ["relu", "layer1", "layer2", "layer3", "layer4"], {"num_classes": 10}),
    "mobilenet_v3_large": ("mobilenet_v3_large", lambda: torchvision.models.mobilenet_v3_large(), 64, MNV3_L, {}),
    "mobilenet_v3_small": ("mobilenet_v3_small", lambda: torchvision.models.mobilenet_v3_small(), 64, MNV3_S, {}),
    "efficientnet_b0": ("efficientnet_b0", lambda: torchvision.models.efficientnet_b0(), 64, [f"features.{i}" for i in range(9)], {}),
    "convnext_tiny": ("convnext_tiny", lambda: torchvision.models.convnext_tiny(), 64, ["features.0", "features.1", "features.3", "features.5", "features.7"], {}),
    "regnetx_002": ("regnetx_002", lambda: timm.create_model("regnetx_002"), 64, ["stem", "s1", "s2", "s3", "s4"], {}),
    "regnety_002": ("regnety_002", lambda: timm.create_model("regnety_002"), 64, ["stem", "s1", "s2", "s3", "s4"], {}),
    # timm's EfficientNet builder: TF "same" padding + eps 1e-3 (ds / ir blocks, SE, head conv + BN);
    # V2's cn / er blocks; ReLU6 without SE; MobileNetV3's pool-then-conv head with hard-swish /
    # hard-sigmoid SE and a strided first stack; MobileNetV1 without a head conv; MobileNetV4's
    # universal inverted residuals (start / mid / end depthwise convs, FFN-only) and normed head
    "tf_efficientnet_b0": ("tf_efficientnet_b0", lambda: timm.create_model("tf_efficientnet_b0"), 64, mb_stages([0, 1, 2, 4, 6], head=True), {}),
    "tf_efficientnetv2_b0": ("tf_efficientnetv2_b0", lambda: timm.create_model("tf_efficientnetv2_b0"), 64, mb_stages([0, 1, 2, 4, 5], head=True), {}),
    "efficientnet_lite0": ("efficientnet_lite0", lambda: timm.create_model("efficientnet_lite0"), 64, mb_stages([0, 1, 2, 4, 6], head=True), {}),
    "tf_mobilenetv3_small_075": ("tf_mobilenetv3_small_075", lambda: timm.create_model("tf_mobilenetv3_small_075"), 64, mb_stages([0, 1, 3, 5]), {}),
    "mobilenetv4_conv_small": ("mobilenetv4_conv_small", lambda: timm.create_model("mobilenetv4_conv_small"), 64, mb_stages([0, 1, 2, 4]), {}),
    "mobilenetv4_conv_medium": ("mobilenetv4_conv_medium", lambda: timm.create_model("mobilenetv4_conv_medium"), 64, mb_stages([0, 1, 2, 4]), {}),
    # torchvision's EfficientNet-B1 file into timm's names (the mbconv builder's remap table)
    "efficientnet_b1_tv": ("efficientnet_b1", lambda: torchvision.models.efficientnet_b1(), 64, [f"features.{i}" for i in (0, 1, 2, 3, 5, 7, 8)], {"renamed_all": True}),
    "mobilenetv1_100": ("mobilenetv1_100", lambda: timm.create_model("mobilenetv1_100"), 64, mb_stages([0, 1, 2, 3, 4]), {}),
    "convnext_tiny_timm": ("convnext_tiny", lambda: timm.create_model("convnext_tiny"), 64, ["stem", "stages.0", "stages.1", "stages.2", "stages.3"], {}),
    "vit_tiny_patch16_224": ("vit_tiny_patch16_224", lambda: timm.create_model("vit_tiny_patch16_224"), 224, vit_stages(12), {}),
    "vit_small_patch16_224": ("vit_small_patch16_224", lambda: timm.create_model("vit_small_patch16_224"), 224, vit_stages(12), {}),
    "vit_base_patch16_224": ("vit_base_patch16_224", lambda: timm.create_model("vit_base_patch16_224"), 224, vit_stages(12), {}),
    # weights saved at 224 (14x14 grid); the reference runs at 96 with timm's resampled embeddings
    "vit_tiny_patch16_224_at96": ("vit_tiny_patch16_224", lambda: timm.create_model("vit_tiny_patch16_224"), 96, vit_stages(12), {"img_size": [96, 96], "resampled": True}),
    "vit_tiny_patch16_224_at320": ("vit_tiny_patch16_224", lambda: timm.create_model("vit_tiny_patch16_224"), 320, vit_stages(12), {"img_size": [320, 320], "resampled": True}),
    # one of each ViT configuration timm's tags use, built for a small input
    # CLIP image tower: pre-norm, no patch bias, QuickGELU, LayerNorm eps 1e-5, projection head
    "vit_clip_quickgelu": ("vit_base_patch32_clip_quickgelu_224", timm_at("vit_base_patch32_clip_quickgelu_224", 64), 64, vit_stages(12, pre_norm=True), {"img_size": [64, 64]}),
    # DINOv2 with registers: 4 register tokens, position embeddings without the prefix, LayerScale, no head
    "vit_dinov2_reg4": ("vit_small_patch14_reg4_dinov2", timm_at("vit_small_patch14_reg4_dinov2", 56), 56, vit_stages(12), {"img_size": [56, 56]}),
    # no class token, one register, average pooling with fc_norm, MLP 5x
    "vit_reg1_gap": ("vit_wee_patch16_reg1_gap_256", timm_at("vit_wee_patch16_reg1_gap_256", 64), 64, vit_stages(14), {"img_size": [64, 64]}),
    # SigLIP tower with average pooling: no class token, tanh-GELU
    "vit_siglip_gap": ("vit_base_patch32_siglip_gap_256", timm_at("vit_base_patch32_siglip_gap_256", 64), 64, vit_stages(12), {"img_size": [64, 64]}),
    # DeiT-III: class token outside the position embeddings, LayerScale
    # SigLIP's attention-pooling head (global_pool='map': a learned latent query, then an MLP)
    "vit_siglip_map": ("vit_base_patch16_siglip_224", timm_at("vit_base_patch16_siglip_224", 32), 32, vit_stages(12), {"img_size": [32, 32]}),
    "deit3_small": ("deit3_small_patch16_224", timm_at("deit3_small_patch16_224", 64), 64, vit_stages(12), {"img_size": [64, 64]}),
    # BEiT-3 as timm remaps it: LayerNorms over the attention output and the MLP's hidden
    # activations (scale norms), average pooling with fc_norm, LayerNorm eps 1e-5
    "beit3_base": ("beit3_base_patch16_224", timm_at("beit3_base_patch16_224", 32), 32, vit_stages(12), {"img_size": [32, 32]}),
    # FlexiViT: position embeddings without the prefix, resampled bilinearly without antialiasing
    # (timm's filter for flexi*), 15² -> 6²
    "flexivit_small_at96": ("flexivit_small", lambda: timm.create_model("flexivit_small"), 96, vit_stages(12), {"img_size": [96, 96], "resampled": True, "interpolation": {"interpolation": "bilinear", "antialias": False}}),
    # C-RADIOv3 base: 7 summary tokens outside the position embeddings, no final norm, its 32²
    # grid resampled bilinearly with aligned corners (timm's filter for this RADIO) to 4²
    "radio_base_at64": ("vit_base_patch16_radio_v3", lambda: timm.create_model("vit_base_patch16_radio_v3"), 64, vit_stages(12), {"img_size": [64, 64], "resampled": True, "interpolation": {"interpolation": "bilinear", "antialias": False, "align_corners": True}}),
    # DeiT distilled: a distillation token after the class token, two heads averaged
    # (`head`, `head_dist`), pre-logits the mean of the two tokens
    "deit_distilled": ("deit_tiny_distilled_patch16_224", timm_at("deit_tiny_distilled_patch16_224", 48), 48, vit_stages(12), {"img_size": [48, 48]}),
    # no qkv bias, average pooling without fc_norm
    "vit_medium_gap": ("vit_medium_patch16_gap_240", timm_at("vit_medium_patch16_gap_240", 64), 64, vit_stages(12), {"img_size": [64, 64]}),
    # timm's ConvNeXt forms, through graft's remap table: conv-MLP (1x1 convs reshaped to Linear); V2 with GRN, conv-MLP and not
    "convnext_atto_timm": ("convnext_atto", lambda: timm.create_model("convnext_atto"), 64, ["stem", "stages.0", "stages.1", "stages.2", "stages.3"], {}),
    "convnextv2_atto_timm": ("convnextv2_atto", lambda: timm.create_model("convnextv2_atto"), 64, ["stem", "stages.0", "stages.1", "stages.2", "stages.3"], {}),
    "convnext_atto_ols_timm": ("convnext_atto_ols", lambda: timm.create_model("convnext_atto_ols"), 64, ["stem", "stages.0", "stages.1", "stages.2", "stages.3"], {}),
    "convnext_large_mlp_timm": ("convnext_large_mlp", lambda: timm.create_model("convnext_large_mlp"), 32, ["stem", "stages.0", "stages.1", "stages.2", "stages.3"], {}),
    "convnextv2_tiny_timm": ("convnextv2_tiny", lambda: timm.create_model("convnextv2_tiny"), 64, ["stem", "stages.0", "stages.1", "stages.2", "stages.3"], {}),
    # forms no tag uses as a whole: packed SwiGLU (DINOv2 giant's MLP) with qk-norm and registers; split SwiGLU with average pooling
    # timm's Eva (eva.py) on the ViT builder: EVA-02 (rotary embeddings over token indices rescaled
    # to the pretraining grid, q / v biases, SwiGLUPacked, avg pool + fc_norm); EVA-02 CLIP (split
    # q / k / v, attention and MLP norms, SwiGLU); a RoPE ViT (column-first rope, learned position
    # embedding too, LayerScale as gamma_1 / gamma_2); DINOv3 (centred-coordinate rope in halves,
    # 4 registers); Perception Encoder spatial (pre-norm, offset rope) and core (an attention pool
    # with its own heads)
    "eva02_tiny": ("eva02_tiny_patch14_224", timm_at("eva02_tiny_patch14_224", 28), 28, vit_stages(12), {"img_size": [28, 28]}),
    "eva02_base_clip": ("eva02_base_patch16_clip_224", timm_at("eva02_base_patch16_clip_224", 32), 32, vit_stages(12), {"img_size": [32, 32]}),
    "vit_rope_ape": ("vit_small_patch16_rope_ape_224", timm_at("vit_small_patch16_rope_ape_224", 32), 32, vit_stages(12), {"img_size": [32, 32]}),
    "dinov3_small": ("vit_small_patch16_dinov3", timm_at("vit_small_patch16_dinov3", 48), 48, vit_stages(12), {"img_size": [48, 48]}),
    "pe_core_tiny": ("vit_pe_core_tiny_patch16_384", timm_at("vit_pe_core_tiny_patch16_384", 32), 32, vit_stages(12, pre_norm=True), {"img_size": [32, 32]}),
    "pe_spatial_tiny": ("vit_pe_spatial_tiny_patch16_512", timm_at("vit_pe_spatial_tiny_patch16_512", 32), 32, vit_stages(12, pre_norm=True), {"img_size": [32, 32]}),
    # Swin at 64²: shifted, padded windows in the first two stages, one unshifted window after;
    # S3's per-stage windows
    "swin_tiny": ("swin_tiny_patch4_window7_224", timm_at("swin_tiny_patch4_window7_224", 64), 64, ["patch_embed", "layers.0", "layers.1", "layers.2", "layers.3"], {"img_size": [64, 64]}),
    "swin_s3_tiny": ("swin_s3_tiny_224", timm_at("swin_s3_tiny_224", 112), 112, ["patch_embed", "layers.0", "layers.1", "layers.2", "layers.3"], {"img_size": [112, 112]}),
    # Swin V2 at 80²: cosine attention, the position-bias MLP, post-norms, shifted padded windows;
    # a window fine-tuned from a smaller pretraining window (the offsets normalised by it)
    "swinv2_tiny": ("swinv2_tiny_window8_256", timm_at("swinv2_tiny_window8_256", 80), 80, ["patch_embed", "layers.0", "layers.1", "layers.2", "layers.3"], {"img_size": [80, 80]}),
    "swinv2_base_12to16": ("swinv2_base_window12to16_192to256", timm_at("swinv2_base_window12to16_192to256", 64), 64, ["patch_embed", "layers.0", "layers.1", "layers.2", "layers.3"], {"img_size": [64, 64]}),
    "vit_custom_glu_qknorm": ("vit_custom_glu_qknorm", vit_custom(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, mlp_ratio=5.0, num_classes=10, qk_norm=True, init_values=1e-5, reg_tokens=2, no_embed_class=True, mlp_layer=__import__("timm.layers", fromlist=["SwiGLUPacked"]).SwiGLUPacked, act_layer=torch.nn.SiLU), 32, vit_stages(2), {"img_size": [32, 32], "num_classes": 10, "custom": True}),
    # timm's dynamic_img_size: built for 32² (a 4² grid), run at 48² (6²) and 24² (3²): the
    # position embeddings resampled at every forward, the prefix (class + 2 registers) kept
    "vit_custom_dynamic_up": ("vit_custom_dynamic_up", vit_custom(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, num_classes=10, reg_tokens=2, dynamic_img_size=True), 48, vit_stages(2), {"img_size": [32, 32], "num_classes": 10, "custom": True}),
    "vit_custom_dynamic_down": ("vit_custom_dynamic_down", vit_custom(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, num_classes=10, reg_tokens=2, dynamic_img_size=True), 24, vit_stages(2), {"img_size": [32, 32], "num_classes": 10, "custom": True}),
    "vit_custom_swiglu": ("vit_custom_swiglu", vit_custom(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, mlp_ratio=2.5, num_classes=10, class_token=False, global_pool="avg", mlp_layer=__import__("timm.layers", fromlist=["SwiGLU"]).SwiGLU, act_layer=torch.nn.SiLU), 32, vit_stages(2), {"img_size": [32, 32], "num_classes": 10, "custom": True}),
}


# fixtures that also record a training-mode forward: the buffers to compare after it
TRAIN_MODE = {
    "resnet18_small": ["bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked", "layer4.1.bn2.running_var"],
    "efficientnet_b0": ["features.0.1.running_mean", "features.8.1.running_var", "features.8.1.num_batches_tracked"],
    "tf_efficientnetv2_b0": ["bn1.running_mean", "blocks.0.0.bn1.running_var", "blocks.1.0.bn2.running_mean", "blocks.5.7.bn3.running_var", "bn2.num_batches_tracked"],
}


def randomise(model, seed):
    g = torch.Generator().manual_seed(seed)
    norm_types = (torch.nn.BatchNorm2d, torch.nn.LayerNorm, torch.nn.GroupNorm)
    owners = {}
    for mname, mod in model.named_modules():
        for pname, _ in mod.named_parameters(recurse=False):
            owners[f"{mname}.{pname}" if mname else pname] = mod
        for bname, _ in mod.named_buffers(recurse=False):
            owners[f"{mname}.{bname}" if mname else bname] = mod
    with torch.no_grad():
        for name, t in list(model.state_dict(keep_vars=True).items()):
            mod = owners[name]
            leaf = name.rsplit(".", 1)[-1]
            shape = t.shape
            if leaf == "num_batches_tracked":
                t.fill_(int(torch.randint(0, 1000, (1,), generator=g)))
            elif leaf == "running_mean":
                t.copy_(torch.randn(shape, generator=g) * 0.1)
            elif leaf == "running_var":
                t.copy_(torch.rand(shape, generator=g) * 1.5 + 0.5)
            elif isinstance(mod, norm_types) or "norm" in type(mod).__name__.lower():
                if leaf == "weight":
                    t.copy_(torch.rand(shape, generator=g) + 0.5)
                else:
                    t.copy_(torch.randn(shape, generator=g) * 0.1)
            elif leaf == "logit_scale":
                t.copy_(torch.rand(shape, generator=g) * 2.0 + 1.0)  # some over timm's clamp at ln 100
            elif leaf in ("gamma", "gamma_1", "gamma_2", "layer_scale") or "grn" in name:
                t.copy_(torch.rand(shape, generator=g) + 0.5)
            elif leaf in ("cls_token", "dist_token", "reg_token", "pos_embed", "latent", "relative_position_bias_table"):
                t.copy_(torch.randn(shape, generator=g) * 0.2)
            elif leaf in ("bias", "q_bias", "v_bias"):
                t.copy_(torch.randn(shape, generator=g) * 0.1)
            elif leaf == "weight" and t.dim() >= 2:
                fan_in = t[0].numel()
                t.copy_(torch.randn(shape, generator=g) / math.sqrt(fan_in))
            else:
                raise SystemExit(f"no randomisation rule for {name} {tuple(shape)} in {type(mod).__name__}")


def main():
    fid, out = sys.argv[1], sys.argv[2]
    graft_name, build, hw, stage_modules, opts = FIXTURES[fid]
    torch.manual_seed(0)
    model = build()
    randomise(model, seed=1234)
    model.eval()
    weights = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    if opts.get("resampled"):
        # the weights stay at the built grid; the model runs at img_size with its position
        # embeddings resampled as timm's checkpoint filter does for the architecture
        from timm.layers import resample_abs_pos_embed
        model = timm.create_model(graft_name, img_size=opts["img_size"][0])
        sd = dict(weights)
        grid = model.patch_embed.grid_size
        how = opts.get("interpolation", {})
        prefix = 0 if model.no_embed_class else model.num_prefix_tokens
        sd["pos_embed"] = resample_abs_pos_embed(sd["pos_embed"], new_size=grid, num_prefix_tokens=prefix, **how)
        model.load_state_dict(sd)
        model.eval()
    x = torch.randn(2, 3, hw, hw, generator=torch.Generator().manual_seed(7))
    captured = {}
    hooks = []
    modules = dict(model.named_modules())
    for i, mname in enumerate(stage_modules):
        def hook(_m, _inp, output, i=i):
            captured.setdefault(i, output.detach().clone())
        hooks.append(modules[mname].register_forward_hook(hook))
    pooled = {}
    classifier = None
    if not hasattr(model, "forward_head"):
        classifier = {"resnet": "fc", "mobilenet": "classifier.3", "efficientnet": "classifier.1", "convnext": "classifier.2"}
        key = next(k for k in classifier if graft_name.startswith(k))
        hooks.append(modules[classifier[key]].register_forward_pre_hook(lambda _m, inp: pooled.setdefault("f", inp[0].detach().clone())))
    with torch.no_grad():
        logits = model(x)
        if classifier is None:
            pooled["f"] = model.forward_head(model.forward_features(x), pre_logits=True)
    for h in hooks:
        h.remove()
    io = {"input": x, "logits": logits, "features": pooled["f"]}
    for i in range(len(stage_modules)):
        y = captured[i]
        if graft_name.startswith("swin"):
            y = y.permute(0, 3, 1, 2)  # timm's Swin keeps its maps channels-last
        elif hasattr(model, "num_prefix_tokens"):
            n, t, d = y.shape
            k = model.num_prefix_tokens
            g = int(math.isqrt(t - k))
            y = y[:, k:].reshape(n, g, g, d).permute(0, 3, 1, 2)
        io[f"stage.{i}"] = y.contiguous()
    if fid in TRAIN_MODE:
        # One training-mode forward with stochastic depth / dropout switched off: BatchNorm uses
        # batch statistics and updates its running statistics and num_batches_tracked.
        for mod in model.modules():
            if isinstance(mod, torch.nn.Dropout) or type(mod).__name__ == "StochasticDepth":
                mod.p = 0.0
        model.train()
        with torch.no_grad():
            io["train.logits"] = model(x)
        sd = model.state_dict()
        for k in TRAIN_MODE[fid]:
            io[f"train.{k}"] = sd[k].detach().clone()
    tmp = out + ".tmp-" + str(os.getpid())
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    save_file(weights, os.path.join(tmp, "weights.safetensors"))
    save_file({k: v.contiguous() for k, v in io.items()}, os.path.join(tmp, "io.safetensors"))
    num_params = sum(p.numel() for p in model.parameters())
    if graft_name.startswith("convnext") and hasattr(model, "stages"):
        # timm's layout: every key renamed into graft's (torchvision's) names; gamma [C] and the
        # conv-MLP's 1x1 conv weights reshaped
        reshaped = sum(1 for k, v in weights.items() if k.endswith(".gamma") or (".mlp.fc" in k and v.dim() == 4))
        opts = dict(opts, renamed_all=True, reshaped=reshaped)
    if opts.get("custom"):
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
        from gen_archs import vit_config
        opts = dict(opts, arch=dict(vit_config(graft_name, model), family="vit"))
    meta = {"model": graft_name, "options": opts, "num_params": num_params, "torch": torch.__version__, "timm": timm.__version__, "torchvision": torchvision.__version__}
    with open(os.path.join(tmp, "meta.json"), "w") as f:
        json.dump(meta, f)
    try:
        os.rename(tmp, out)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not os.path.isdir(out):
            raise


if __name__ == "__main__":
    main()

//! Small building blocks shared by the families: conv + norm + activation with the reference's
//! names, LayerNorm over channels of an NCHW map, pooling to a vector.

use graft_backend::nn;
use graft_backend::{Backend, Conv2dOpts, Ctx, Init, ParamPath, Params};
use graft_core::Result;
use graft_core::name::join;

/// Activation after a conv / norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Act {
    None,
    Relu,
    Relu6,
    Hardswish,
    Silu,
}

/// The activation on `x`, which it consumes (in place where the backend can: `x` must be a
/// fresh op output nothing else reads).
pub(crate) fn act<B: Backend>(b: &B, x: B::Tensor, a: Act) -> Result<B::Tensor> {
    match a {
        Act::None => Ok(x),
        Act::Relu => b.relu_consume(x),
        Act::Relu6 => b.relu6(&x),
        Act::Hardswish => b.hardswish_consume(x),
        Act::Silu => b.silu_consume(x),
    }
}

/// A conv weight (and optional zero bias) with Kaiming-normal fan-out init (torchvision's CNNs).
pub(crate) fn init_conv_kaiming<B: Backend>(
    p: &ParamPath<'_, B>,
    in_ch: usize,
    out_ch: usize,
    k: usize,
    groups: usize,
    bias: bool,
) -> Result<()> {
    p.param(
        "weight",
        &[out_ch, in_ch / groups, k, k],
        Init::KaimingNormalFanOut,
    )?;
    if bias {
        p.param("bias", &[out_ch], Init::Zeros)?;
    }
    Ok(())
}

/// torchvision's `Conv2dNormActivation` under `path`: `path.0` conv (no bias), `path.1` BatchNorm.
pub(crate) fn init_conv_bn<B: Backend>(
    p: &ParamPath<'_, B>,
    in_ch: usize,
    out_ch: usize,
    k: usize,
    groups: usize,
) -> Result<()> {
    init_conv_bn_named(p, ["0", "1"], in_ch, out_ch, k, groups)
}

/// A conv (no bias, Kaiming-normal fan-out) and the BatchNorm after it, under `path.{conv}` and
/// `path.{bn}` (torchvision: `0` / `1`; timm's `ConvNormAct`: `conv` / `bn`).
pub(crate) fn init_conv_bn_named<B: Backend>(
    p: &ParamPath<'_, B>,
    [conv, bn]: [&str; 2],
    in_ch: usize,
    out_ch: usize,
    k: usize,
    groups: usize,
) -> Result<()> {
    init_conv_kaiming(&p.sub(conv)?, in_ch, out_ch, k, groups, false)?;
    nn::init_batch_norm(&p.sub(bn)?, out_ch)
}

/// Batch-norm hyper-parameters of a family.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BnCfg {
    pub eps: f64,
    pub momentum: f64,
}

/// Runs `Conv2dNormActivation` at `path` (`path.0` conv, `path.1` BN) with "same" padding.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_bn_act<B: Backend>(
    p: &Params<B>,
    path: &str,
    x: &B::Tensor,
    k: usize,
    stride: usize,
    groups: usize,
    bn: BnCfg,
    a: Act,
    ctx: &Ctx<'_>,
) -> Result<B::Tensor> {
    let y = nn::conv2d(
        p,
        &join(path, "0"),
        x,
        Conv2dOpts::new()
            .stride(stride)
            .padding((k - 1) / 2)
            .groups(groups),
    )?;
    let y = nn::batch_norm(p, &join(path, "1"), &y, ctx, bn.eps, bn.momentum)?;
    act(p.backend(), y, a)
}

/// LayerNorm over the channel dim of an NCHW map (torchvision's / timm's `LayerNorm2d`).
pub(crate) fn layer_norm_2d<B: Backend>(
    p: &Params<B>,
    path: &str,
    x: &B::Tensor,
    eps: f64,
) -> Result<B::Tensor> {
    let b = p.backend();
    let y = b.permute(x, &[0, 2, 3, 1])?;
    let y = nn::layer_norm(p, path, &y, eps)?;
    b.permute(&y, &[0, 3, 1, 2])
}

/// Global average pool of an NCHW map to `[N, C]`.
pub(crate) fn avg_pool_flat<B: Backend>(b: &B, x: &B::Tensor) -> Result<B::Tensor> {
    let y = b.adaptive_avg_pool2d(x, (1, 1))?;
    b.flatten(&y, 1, 3)
}

/// timm's / torchvision's `trunc_normal_(std=0.02)` (truncated at ±2, absolute, as PyTorch).
pub(crate) const TRUNC_02: Init = Init::TruncNormal {
    mean: 0.0,
    std: 0.02,
    lo: -2.0,
    hi: 2.0,
};

/// A Linear with trunc-normal(0.02) weight and zero bias (timm's / torchvision ConvNeXt's init).
pub(crate) fn init_linear_trunc<B: Backend>(
    p: &ParamPath<'_, B>,
    in_f: usize,
    out_f: usize,
) -> Result<()> {
    init_linear_trunc_with(p, in_f, out_f, true)
}

/// [`init_linear_trunc`] with the bias optional (timm's `qkv_bias = False`).
pub(crate) fn init_linear_trunc_with<B: Backend>(
    p: &ParamPath<'_, B>,
    in_f: usize,
    out_f: usize,
    bias: bool,
) -> Result<()> {
    p.param("weight", &[out_f, in_f], TRUNC_02)?;
    if bias {
        p.param("bias", &[out_f], Init::Zeros)?;
    }
    Ok(())
}

/// `_make_divisible` of the MobileNet / EfficientNet papers.
pub(crate) fn make_divisible(v: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let mut n = ((v + d / 2.0) / d).floor() as usize * divisor;
    n = n.max(divisor);
    if (n as f64) < 0.9 * v {
        n += divisor;
    }
    n
}

/// The gate of a squeeze-excitation block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    Sigmoid,
    Hardsigmoid,
}

/// torchvision's `SqueezeExcitation` parameters: 1×1 convs `fc1` (`ch → squeeze`) and `fc2`
/// (`squeeze → ch`) with bias, Kaiming fan-out init.
pub(crate) fn init_squeeze_excite<B: Backend>(
    p: &ParamPath<'_, B>,
    ch: usize,
    squeeze: usize,
) -> Result<()> {
    init_conv_kaiming(&p.sub("fc1")?, ch, squeeze, 1, 1, true)?;
    init_conv_kaiming(&p.sub("fc2")?, squeeze, ch, 1, 1, true)
}

/// The names of a squeeze-excitation's two 1×1 convs in torchvision's `SqueezeExcitation` and
/// timm's `SEModule`.
pub(crate) const SE_FC: [&str; 2] = ["fc1", "fc2"];

/// A squeeze-excitation at `path` with its convs named `[reduce, expand]` (torchvision's
/// `SqueezeExcitation`, timm's `SEModule`: [`SE_FC`]; timm's EfficientNet `SqueezeExcite`:
/// `conv_reduce` / `conv_expand`): `x · gate(expand(act(reduce(avgpool(x)))))`.
pub(crate) fn squeeze_excite<B: Backend>(
    p: &Params<B>,
    path: &str,
    [reduce, expand]: [&str; 2],
    x: &B::Tensor,
    a: Act,
    gate: Gate,
) -> Result<B::Tensor> {
    let b = p.backend();
    let s = b.adaptive_avg_pool2d(x, (1, 1))?;
    let s = act(
        b,
        nn::conv2d(p, &join(path, reduce), &s, Conv2dOpts::new())?,
        a,
    )?;
    let s = nn::conv2d(p, &join(path, expand), &s, Conv2dOpts::new())?;
    let s = match gate {
        Gate::Sigmoid => b.sigmoid(&s)?,
        Gate::Hardsigmoid => b.hardsigmoid(&s)?,
    };
    b.mul(&s, x)
}

/// timm's names inside one inverted-residual / depthwise-separable block at `from`
/// (`blocks.{s}.{i}`), mapped onto torchvision's numbered sub-blocks at `to` (`....block`):
/// with an expansion conv, `conv_pw`/`bn1` → `.0`, `conv_dw`/`bn2` → `.1`, SE → `.2`,
/// `conv_pwl`/`bn3` → last; without one (timm's `DepthwiseSeparableConv`), `conv_dw`/`bn1` → `.0`,
/// SE → `.1`, `conv_pw`/`bn2` → last. SE: `se.conv_reduce` / `se.conv_expand` → `fc1` / `fc2`.
pub(crate) fn timm_block_remaps(
    from: &str,
    to: &str,
    expand: bool,
    se: bool,
) -> Vec<crate::load::Remap> {
    use crate::load::Remap;
    let mut v = Vec::new();
    let mut j = 0;
    let pair = |conv: &str, bn: &str, j: usize, v: &mut Vec<Remap>| {
        v.push(Remap::prefix(
            &format!("{from}.{conv}"),
            &format!("{to}.{j}.0"),
        ));
        v.push(Remap::prefix(
            &format!("{from}.{bn}"),
            &format!("{to}.{j}.1"),
        ));
    };
    let (dw_bn, last) = if expand {
        pair("conv_pw", "bn1", j, &mut v);
        j += 1;
        ("bn2", ("conv_pwl", "bn3"))
    } else {
        ("bn1", ("conv_pw", "bn2"))
    };
    pair("conv_dw", dw_bn, j, &mut v);
    j += 1;
    if se {
        v.push(Remap::prefix(
            &format!("{from}.se.conv_reduce"),
            &format!("{to}.{j}.fc1"),
        ));
        v.push(Remap::prefix(
            &format!("{from}.se.conv_expand"),
            &format!("{to}.{j}.fc2"),
        ));
        j += 1;
    }
    pair(last.0, last.1, j, &mut v);
    v
}

/// timm's `EcaModule` (Wang et al. 2020, "ECA-Net: Efficient Channel Attention") with its
/// conv at `path`: `x · sigmoid(conv1d(avgpool(x)))`, the 1-d conv (weight `[1, 1, k]`, no bias,
/// zero padding `(k - 1) / 2`) sliding across the pooled channels. Run as a `1 × k` 2-d conv over
/// the channels laid along the width.
pub(crate) fn efficient_channel_attention<B: Backend>(
    p: &Params<B>,
    path: &str,
    x: &B::Tensor,
) -> Result<B::Tensor> {
    let b = p.backend();
    let w = p.get(&join(path, "weight"))?;
    let k = b.shape(w).last().copied().unwrap_or(1);
    let (n, c) = (b.shape(x)[0], b.shape(x)[1]);
    let s = b.reshape(&b.adaptive_avg_pool2d(x, (1, 1))?, &[n, 1, 1, c])?;
    let w = b.reshape(w, &[1, 1, 1, k])?;
    let mut o = Conv2dOpts::new();
    o.padding = (0, (k - 1) / 2);
    let s = b.conv2d(&s, &w, None, o)?;
    let s = b.sigmoid(&b.reshape(&s, &[n, c, 1, 1])?)?;
    b.mul(&s, x)
}

/// Refuses an input `[N, C, H, W]` whose `H × W` is not the `img_size` a model's parameters
/// were built for (a ViT's position embeddings, a Swin's windows), naming both and how to
/// build for another size.
pub(crate) fn check_built_size(
    family: &'static str,
    shape: &[usize],
    img_size: [usize; 2],
) -> Result<()> {
    if shape.len() == 4 && shape[2] == img_size[0] && shape[3] == img_size[1] {
        return Ok(());
    }
    Err(graft_core::Error::shape(
        family,
        format!(
            "input {:?} but the model is built for {}x{} (create it with img_size = [{}, {}] for another size)",
            shape,
            img_size[0],
            img_size[1],
            shape.get(2).unwrap_or(&0),
            shape.get(3).unwrap_or(&0)
        ),
    ))
}

//! timm's EfficientNet / MobileNet builder (`efficientnet.py`, `mobilenetv3.py` and the block
//! builder they share, `_efficientnet_builder.py` / `_efficientnet_blocks.py`): EfficientNet
//! B0–B8 (Tan & Le 2019) and their TensorFlow ports (`tf_`), EfficientNet-Lite, EfficientNetV2
//! (Tan & Le 2021), MobileNetV1 / V2 / V3 (Howard et al. 2017, 2019; Sandler et al. 2018),
//! MNASNet, FBNet, TinyNet, LCNet and MobileNetV4's conv models (Qin et al. 2024) — every
//! network of those stacks of blocks, with timm's names.
//!
//! `conv_stem` / `bn1`, then `blocks.{stack}.{block}` of four kinds: `ds` (depthwise-separable:
//! `conv_dw`/`bn1` → `se` → `conv_pw`/`bn2`), `ir` (inverted residual, MBConv: `conv_pw`/`bn1` →
//! `conv_dw`/`bn2` → `se` → `conv_pwl`/`bn3`), `er` (edge residual, fused MBConv: `conv_exp`/`bn1`
//! → `se` → `conv_pwl`/`bn2`), `cn` (`conv`/`bn1`) and `uir` (MobileNetV4's universal inverted
//! residual: `dw_start` → `pw_exp` → `dw_mid` → `se` → `pw_proj` → `dw_end`, each `.conv`/`.bn`,
//! the depthwise ones optional, `layer_scale.gamma`); squeeze-excitation `se.conv_reduce` /
//! `se.conv_expand`; the head: EfficientNet's `conv_head`/`bn2` before the pool, or MobileNetV3's
//! pool → `conv_head` (with bias) → activation, MobileNetV4's pool → `conv_head` → `norm_head`
//! → activation, or none (MobileNetV1); `classifier`. The structure is data read off the
//! model timm builds (`scripts/gen_archs.py`), block by block: kernel, stride, widths, activation,
//! squeeze width, activation and gate, shortcut. TensorFlow's "same" padding (the `tf_` ports:
//! timm's `Conv2dSame`) pads each strided conv by `max((⌈i/s⌉ − 1)·s + k − i, 0)`, the odd pixel
//! at the bottom / right.
//!
//! Stages follow timm's `feature_info`: the stem, then the stacks up to each feature level (the
//! stacks before a strided one), then EfficientNet's head conv.

use graft_backend::nn;
use graft_backend::{Backend, Conv2dOpts, Ctx, Init, ParamPath, Params};
use graft_core::name::join;
use graft_core::{Error, Result};


use crate::cfg::{Interpolation, PretrainedCfg};
use crate::layers::{self, Gate};
use crate::model::Arch;
use crate::model::{ClassifierSpec, Family, HeadInit, Side, StageSpec};
use crate::registry::Builtin;

mod config;

pub use config::{MbAct, MbBlock, MbConvNet, MbGate, MbHead, MbHeadKind, MbKind, MbSe, MbStem};

/// timm's BatchNorm momentum in these networks (PyTorch's default; the `tf_` ports change eps).
const BN_MOMENTUM: f64 = 0.1;

/// timm's `_init_weight_goog` for a conv: N(0, √(2 / fan_out)) with fan_out = k²·out / groups,
/// bias zero.
fn init_conv<B: Backend>(
    p: &ParamPath<'_, B>,
    in_ch: usize,
    out_ch: usize,
    k: usize,
    groups: usize,
    bias: bool,
) -> Result<()> {
    let fan_out = (k * k * out_ch / groups).max(1) as f64;
    let std = (2.0 / fan_out).sqrt();
    p.param(
        "weight",
        &[out_ch, in_ch / groups, k, k],
        Init::Normal { mean: 0.0, std },
    )?;
    if bias {
        p.param("bias", &[out_ch], Init::Zeros)?;
    }
    Ok(())
}

fn init_conv_bn<B: Backend>(
    root: &ParamPath<'_, B>,
    [conv, bn]: [&str; 2],
    in_ch: usize,
    out_ch: usize,
    k: usize,
    groups: usize,
) -> Result<()> {
    init_conv(&root.sub(conv)?, in_ch, out_ch, k, groups, false)?;
    nn::init_batch_norm(&root.sub(bn)?, out_ch)
}

/// TensorFlow's "same" padding for a strided conv (timm's `pad_same`): the input with the odd
/// row / column of padding concatenated as zeros at the bottom / right, and the symmetric
/// padding the conv adds to both sides.
fn pad_same<B: Backend>(
    b: &B,
    x: &B::Tensor,
    k: usize,
    s: usize,
) -> Result<(B::Tensor, (usize, usize))> {
    let shape = b.shape(x);
    let total = |i: usize| ((i.div_ceil(s).max(1) - 1) * s + k).saturating_sub(i);
    let (ph, pw) = (total(shape[2]), total(shape[3]));
    let mut y = x.clone();
    if ph % 2 == 1 {
        let z = b.zeros(&[shape[0], shape[1], 1, shape[3]], b.dtype(x))?;
        y = b.cat(&[&y, &z], 2)?;
    }
    if pw % 2 == 1 {
        let h = b.shape(&y)[2];
        let z = b.zeros(&[shape[0], shape[1], h, 1], b.dtype(x))?;
        y = b.cat(&[&y, &z], 3)?;
    }
    Ok((y, (ph / 2, pw / 2)))
}

fn bad(why: String) -> Error {
    Error::invalid("mbconv", why)
}

impl MbConvNet {
    /// Refuses a config the builder cannot run, naming the part.
    fn check(&self) -> Result<()> {
        let last = self.stages.len().checked_sub(1);
        if self.levels.last().copied() != last || self.levels.windows(2).any(|w| w[0] >= w[1]) {
            return Err(bad(format!(
                "levels {:?} must ascend and end at the last stack ({:?})",
                self.levels, last
            )));
        }
        let mut width = self.stem.out;
        for (s, stage) in self.stages.iter().enumerate() {
            if stage.is_empty() {
                return Err(bad(format!("stack {s} has no blocks")));
            }
            for (i, b) in stage.iter().enumerate() {
                let at = format!("blocks.{s}.{i}");
                if b.input != width {
                    return Err(bad(format!(
                        "{at} takes {} channels, the previous layer gives {width}",
                        b.input
                    )));
                }
                let kernels = [b.start_kernel, b.mid_kernel, b.end_kernel];
                let uir = b.kind == MbKind::Uir;
                if uir != (b.kernel == 0) || (!uir && kernels.iter().any(Option::is_some)) {
                    return Err(bad(format!(
                        "{at}: `kernel` belongs to ds / ir / er / cn blocks, start / mid / end kernels to uir"
                    )));
                }
                if uir && b.stride > 1 && kernels.iter().all(Option::is_none) {
                    return Err(bad(format!("{at}: a strided uir block needs a depthwise conv")));
                }
                if kernels.iter().flatten().any(|k| k % 2 == 0) || (!uir && b.kernel % 2 == 0)
                    || !(1..=2).contains(&b.stride)
                {
                    return Err(bad(format!(
                        "{at}: kernel {} stride {} (an odd kernel, stride 1 or 2)",
                        b.kernel, b.stride
                    )));
                }
                if matches!(b.kind, MbKind::Ir | MbKind::Er | MbKind::Uir) != b.mid.is_some() {
                    return Err(bad(format!(
                        "{at}: `mid` is the expanded width of ir / er / uir blocks only"
                    )));
                }
                if b.layer_scale && !uir {
                    return Err(bad(format!("{at}: layer_scale belongs to uir blocks")));
                }
                if b.kind == MbKind::Cn && b.se.is_some() {
                    return Err(bad(format!("{at}: a cn block has no squeeze-excitation")));
                }
                if b.has_skip() && (b.stride != 1 || b.input != b.out) {
                    return Err(bad(format!(
                        "{at}: a shortcut needs stride 1 and equal widths"
                    )));
                }
                width = b.out;
            }
        }
        Ok(())
    }
    fn total_blocks(&self) -> usize {
        self.stages.iter().map(Vec::len).sum()
    }
    /// The stacks of graft stage `level` (1-based: stage 0 is the stem).
    fn stacks_of(&self, level: usize) -> std::ops::RangeInclusive<usize> {
        let start = if level == 1 {
            0
        } else {
            self.levels[level - 2] + 1
        };
        start..=self.levels[level - 1]
    }
    fn last_width(&self) -> usize {
        self.stages
            .last()
            .and_then(|s| s.last())
            .map_or(self.stem.out, |b| b.out)
    }
    /// A conv of the network: symmetric `(k − 1) / 2` padding, or TensorFlow's "same" on a
    /// strided conv of a `tf_` port.
    #[allow(clippy::too_many_arguments)]
    fn conv_bn<B: Backend>(
        &self,
        p: &Params<B>,
        [conv, bn]: [&str; 2],
        x: &B::Tensor,
        k: usize,
        stride: usize,
        groups: usize,
        a: MbAct,
        ctx: &Ctx<'_>,
    ) -> Result<B::Tensor> {
        let b = p.backend();
        let opts = Conv2dOpts::new().stride(stride).groups(groups);
        let y = if self.same_pad && stride > 1 {
            let (x, (ph, pw)) = pad_same(b, x, k, stride)?;
            let mut o = opts;
            o.padding = (ph, pw);
            nn::conv2d(p, conv, &x, o)?
        } else {
            nn::conv2d(p, conv, x, opts.padding((k - 1) / 2))?
        };
        let y = nn::batch_norm(p, bn, &y, ctx, self.bn_eps, BN_MOMENTUM)?;
        layers::act(b, y, a.into())
    }
    fn se<B: Backend>(
        &self,
        p: &Params<B>,
        path: &str,
        x: B::Tensor,
        se: Option<MbSe>,
    ) -> Result<B::Tensor> {
        let Some(se) = se else { return Ok(x) };
        let gate = match se.gate {
            MbGate::Sigmoid => Gate::Sigmoid,
            MbGate::Hardsigmoid => Gate::Hardsigmoid,
        };
        layers::squeeze_excite(
            p,
            &join(path, "se"),
            ["conv_reduce", "conv_expand"],
            &x,
            se.act.into(),
            gate,
        )
    }
    /// Block `blk` at `path`, the `index`-th of the network (for its stochastic-depth rate).
    fn block<B: Backend>(
        &self,
        p: &Params<B>,
        path: &str,
        blk: &MbBlock,
        index: usize,
        x: &B::Tensor,
        ctx: &Ctx<'_>,
    ) -> Result<B::Tensor> {
        let b = p.backend();
        let at = |a: &str, n: &str| [join(path, a), join(path, n)];
        let (k, s, mid) = (blk.kernel, blk.stride, blk.mid());
        let run = |names: [String; 2], x: &B::Tensor, k, s, g, a| {
            self.conv_bn(p, [&names[0], &names[1]], x, k, s, g, a, ctx)
        };
        let y = match blk.kind {
            MbKind::Ds => {
                let y = run(at("conv_dw", "bn1"), x, k, s, blk.input, blk.act)?;
                let y = self.se(p, path, y, blk.se)?;
                let a = if blk.pw_act { blk.act } else { MbAct::None };
                run(at("conv_pw", "bn2"), &y, 1, 1, 1, a)?
            }
            MbKind::Ir => {
                let y = run(at("conv_pw", "bn1"), x, 1, 1, 1, blk.act)?;
                let y = run(at("conv_dw", "bn2"), &y, k, s, mid, blk.act)?;
                let y = self.se(p, path, y, blk.se)?;
                run(at("conv_pwl", "bn3"), &y, 1, 1, 1, MbAct::None)?
            }
            MbKind::Er => {
                let y = run(at("conv_exp", "bn1"), x, k, s, 1, blk.act)?;
                let y = self.se(p, path, y, blk.se)?;
                run(at("conv_pwl", "bn2"), &y, 1, 1, 1, MbAct::None)?
            }
            MbKind::Cn => run(at("conv", "bn1"), x, k, s, 1, blk.act)?,
            MbKind::Uir => {
                let [s0, s1, s2] = blk.uir_strides();
                let none = MbAct::None;
                let mut y = x.clone();
                if let Some(k) = blk.start_kernel {
                    y = run(at("dw_start.conv", "dw_start.bn"), &y, k, s0, blk.input, none)?;
                }
                y = run(at("pw_exp.conv", "pw_exp.bn"), &y, 1, 1, 1, blk.act)?;
                if let Some(k) = blk.mid_kernel {
                    y = run(at("dw_mid.conv", "dw_mid.bn"), &y, k, s1, mid, blk.act)?;
                }
                let y = self.se(p, path, y, blk.se)?;
                let mut y = run(at("pw_proj.conv", "pw_proj.bn"), &y, 1, 1, 1, none)?;
                if let Some(k) = blk.end_kernel {
                    y = run(at("dw_end.conv", "dw_end.bn"), &y, k, s2, blk.out, none)?;
                }
                if blk.layer_scale {
                    let g = p.get(&join(path, "layer_scale.gamma"))?;
                    y = b.mul(&y, &b.reshape(g, &[1, blk.out, 1, 1])?)?;
                }
                y
            }
        };
        if !blk.has_skip() {
            return Ok(y);
        }
        let rate = self.drop_path_rate * index as f64 / self.total_blocks() as f64;
        let y = nn::drop_path(b, &y, rate, ctx, &join(path, "drop_path"))?;
        b.add_consume(y, x)
    }
    fn init_block<B: Backend>(&self, bp: &ParamPath<'_, B>, blk: &MbBlock) -> Result<()> {
        let (i, o, k, m) = (blk.input, blk.out, blk.kernel, blk.mid());
        let se_width = match blk.kind {
            MbKind::Ds => {
                init_conv_bn(bp, ["conv_dw", "bn1"], i, i, k, i)?;
                init_conv_bn(bp, ["conv_pw", "bn2"], i, o, 1, 1)?;
                i
            }
            MbKind::Ir => {
                init_conv_bn(bp, ["conv_pw", "bn1"], i, m, 1, 1)?;
                init_conv_bn(bp, ["conv_dw", "bn2"], m, m, k, m)?;
                init_conv_bn(bp, ["conv_pwl", "bn3"], m, o, 1, 1)?;
                m
            }
            MbKind::Er => {
                init_conv_bn(bp, ["conv_exp", "bn1"], i, m, k, 1)?;
                init_conv_bn(bp, ["conv_pwl", "bn2"], m, o, 1, 1)?;
                m
            }
            MbKind::Cn => {
                init_conv_bn(bp, ["conv", "bn1"], i, o, k, 1)?;
                o
            }
            MbKind::Uir => {
                let dw = |part: &str, kernel: Option<usize>, c: usize| -> Result<()> {
                    match kernel {
                        Some(k) => init_conv_bn(bp, [&format!("{part}.conv"), &format!("{part}.bn")], c, c, k, c),
                        None => Ok(()),
                    }
                };
                dw("dw_start", blk.start_kernel, i)?;
                init_conv_bn(bp, ["pw_exp.conv", "pw_exp.bn"], i, m, 1, 1)?;
                dw("dw_mid", blk.mid_kernel, m)?;
                init_conv_bn(bp, ["pw_proj.conv", "pw_proj.bn"], m, o, 1, 1)?;
                dw("dw_end", blk.end_kernel, o)?;
                if blk.layer_scale {
                    bp.sub("layer_scale")?.param("gamma", &[o], Init::Constant(1e-5))?;
                }
                m
            }
        };
        if let Some(se) = blk.se {
            init_conv(&bp.sub("se.conv_reduce")?, se_width, se.rd, 1, 1, true)?;
            init_conv(&bp.sub("se.conv_expand")?, se.rd, se_width, 1, 1, true)?;
        }
        Ok(())
    }
}

impl Family for MbConvNet {
    fn batch_norm_eps(&self) -> Option<f64> {
        Some(self.bn_eps)
    }
    fn is_convnet(&self) -> bool {
        true
    }
    fn set_drop_rates(&mut self, drop_path: Option<f64>, drop: Option<f64>) {
        if let Some(d) = drop {
            self.drop_rate = d;
        }
        if let Some(d) = drop_path {
            self.drop_path_rate = d;
        }
    }
    fn conv_before_norm(&self, bn: &str) -> Option<String> {
        match bn {
            "bn1" => return Some("conv_stem".into()),
            "bn2" if self.head.is_some() => return Some("conv_head".into()),
            "norm_head" => return Some("conv_head".into()),
            _ => {}
        }
        // blocks.{s}.{i}.bnK
        let rest = bn.strip_prefix("blocks.")?;
        let mut parts = rest.splitn(3, '.');
        let s: usize = parts.next()?.parse().ok()?;
        let i: usize = parts.next()?.parse().ok()?;
        let name = parts.next()?;
        let conv = self.stages.get(s)?.get(i)?.conv_of(name)?;
        Some(format!("blocks.{s}.{i}.{conv}"))
    }
    fn init_trunk<B: Backend>(&self, root: &ParamPath<'_, B>, in_chans: usize) -> Result<()> {
        self.check()?;
        init_conv_bn(root, ["conv_stem", "bn1"], in_chans, self.stem.out, 3, 1)?;
        for (s, stage) in self.stages.iter().enumerate() {
            for (i, blk) in stage.iter().enumerate() {
                self.init_block(&root.sub(format!("blocks.{s}.{i}"))?, blk)?;
            }
        }
        let last = self.last_width();
        match self.head {
            None => Ok(()),
            Some(h) if h.kind == MbHeadKind::ConvBn => {
                init_conv_bn(root, ["conv_head", "bn2"], last, h.out, 1, 1)
            }
            Some(h) if h.kind == MbHeadKind::PoolConvBn => {
                init_conv_bn(root, ["conv_head", "norm_head"], last, h.out, 1, 1)
            }
            Some(h) => init_conv(&root.sub("conv_head")?, last, h.out, 1, 1, h.bias),
        }
    }
    fn classifier(&self) -> ClassifierSpec {
        ClassifierSpec {
            prefix: "classifier",
            init: HeadInit::UniformInvSqrtOut,
            dropout: self.drop_rate,
            dropout_path: "head_drop",
        }
    }
    fn stage_specs(&self) -> Vec<StageSpec> {
        let mut v = vec![StageSpec {
            name: "stem".into(),
            prefixes: vec!["conv_stem".into(), "bn1".into()],
            channels: self.stem.out,
            reduction: 2,
        }];
        let mut red = 2;
        for level in 1..=self.levels.len() {
            let stacks = self.stacks_of(level);
            let mut channels = 0;
            for s in stacks.clone() {
                for blk in &self.stages[s] {
                    red *= blk.stride;
                    channels = blk.out;
                }
            }
            v.push(StageSpec {
                name: format!("stage{level}"),
                prefixes: stacks.map(|s| format!("blocks.{s}")).collect(),
                channels,
                reduction: red,
            });
        }
        if let Some(h) = self.head.filter(|h| h.kind == MbHeadKind::ConvBn) {
            v.push(StageSpec {
                name: "conv_head".into(),
                prefixes: vec!["conv_head".into(), "bn2".into()],
                channels: h.out,
                reduction: red,
            });
        }
        v
    }
    fn head_stage_prefixes(&self) -> Vec<String> {
        match self.head {
            Some(h) if h.kind == MbHeadKind::PoolConv => {
                vec!["conv_head".into(), "classifier".into()]
            }
            Some(h) if h.kind == MbHeadKind::PoolConvBn => {
                vec!["conv_head".into(), "norm_head".into(), "classifier".into()]
            }
            _ => vec!["classifier".into()],
        }
    }
    fn num_features(&self) -> usize {
        self.head.map_or(self.last_width(), |h| h.out)
    }
    fn forward_stage<B: Backend>(
        &self,
        p: &Params<B>,
        i: usize,
        x: &B::Tensor,
        _side: &Side<B>,
        ctx: &Ctx<'_>,
    ) -> Result<B::Tensor> {
        if i == 0 {
            let a = self.stem.act;
            return self.conv_bn(p, ["conv_stem", "bn1"], x, 3, 2, 1, a, ctx);
        }
        if i > self.levels.len() {
            let a = self.head.map_or(MbAct::None, |h| h.act);
            return self.conv_bn(p, ["conv_head", "bn2"], x, 1, 1, 1, a, ctx);
        }
        let mut y = x.clone();
        for s in self.stacks_of(i) {
            let first: usize = self.stages[..s].iter().map(Vec::len).sum();
            for (k, blk) in self.stages[s].iter().enumerate() {
                y = self.block(p, &format!("blocks.{s}.{k}"), blk, first + k, &y, ctx)?;
            }
        }
        Ok(y)
    }
    /// torchvision's EfficientNet layout (`features.0` stem, `features.{s+1}.{i}.block.{j}`,
    /// `features.{n+1}` head conv, `classifier.1`) for the networks it shares with timm —
    /// EfficientNet B0–B7: `ds` / `ir` blocks, the head conv + BatchNorm — so torchvision's
    /// `tv:efficientnet_b*` weights load into timm's names.
    fn remaps(&self) -> Vec<crate::load::Remap> {
        use crate::load::Remap;
        let tv_like = self.head.is_some_and(|h| h.kind == MbHeadKind::ConvBn)
            && self
                .stages
                .iter()
                .flatten()
                .all(|b| matches!(b.kind, MbKind::Ds | MbKind::Ir));
        if !tv_like {
            return Vec::new();
        }
        let pair = |from: String, [conv, bn]: [&str; 2], to: &str, v: &mut Vec<Remap>| {
            v.push(Remap::prefix(&format!("{from}.0"), &join(to, conv)));
            v.push(Remap::prefix(&format!("{from}.1"), &join(to, bn)));
        };
        let mut v = Vec::new();
        pair("features.0".into(), ["conv_stem", "bn1"], "", &mut v);
        let head = format!("features.{}", self.stages.len() + 1);
        pair(head, ["conv_head", "bn2"], "", &mut v);
        v.push(Remap::prefix("classifier.1", "classifier"));
        for (s, stage) in self.stages.iter().enumerate() {
            for (i, b) in stage.iter().enumerate() {
                let (from, to) = (format!("features.{}.{i}.block", s + 1), format!("blocks.{s}.{i}"));
                let mut j = 0;
                let mut next = |v: &mut Vec<Remap>, names: [&str; 2]| {
                    pair(format!("{from}.{j}"), names, &to, v);
                    j += 1;
                };
                if b.kind == MbKind::Ir {
                    next(&mut v, ["conv_pw", "bn1"]);
                    next(&mut v, ["conv_dw", "bn2"]);
                } else {
                    next(&mut v, ["conv_dw", "bn1"]);
                }
                if b.se.is_some() {
                    let se = format!("{from}.{j}");
                    v.push(Remap::prefix(&format!("{se}.fc1"), &join(&to, "se.conv_reduce")));
                    v.push(Remap::prefix(&format!("{se}.fc2"), &join(&to, "se.conv_expand")));
                    j += 1;
                }
                let last = if b.kind == MbKind::Ir { ["conv_pwl", "bn3"] } else { ["conv_pw", "bn2"] };
                pair(format!("{from}.{j}"), last, &to, &mut v);
            }
        }
        v
    }
    fn pool<B: Backend>(
        &self,
        p: &Params<B>,
        x: &B::Tensor,
        _side: &Side<B>,
        ctx: &Ctx<'_>,
    ) -> Result<B::Tensor> {
        let b = p.backend();
        match self.head {
            Some(h) if h.kind == MbHeadKind::PoolConv => {
                let y = b.adaptive_avg_pool2d(x, (1, 1))?;
                let y = nn::conv2d(p, "conv_head", &y, Conv2dOpts::new())?;
                let y = layers::act(b, y, h.act.into())?;
                b.flatten(&y, 1, 3)
            }
            Some(h) if h.kind == MbHeadKind::PoolConvBn => {
                let y = b.adaptive_avg_pool2d(x, (1, 1))?;
                let names = ["conv_head", "norm_head"];
                let y = self.conv_bn(p, names, &y, 1, 1, 1, h.act, ctx)?;
                b.flatten(&y, 1, 3)
            }
            _ => layers::avg_pool_flat(b, x),
        }
    }
}

/// The table's networks (`data/archs.json`, family `mbconv`), each with its default tag's cfg.
pub(crate) fn builtins() -> Vec<Builtin> {
    crate::arch_table::entries::<MbConvNet>("mbconv")
        .into_iter()
        .map(|(name, c)| {
            let base = PretrainedCfg::imagenet(
                224,
                0.875,
                Interpolation::Bicubic,
                "conv_stem",
                "classifier",
                "timm",
            );
            let cfg = crate::arch_table::with_default_tag(&name, base);
            let reference = format!("timm {name} (timm's names)");
            Builtin::new(&name, Arch::MbConvNet(c), cfg, &reference)
        })
        .collect()
}

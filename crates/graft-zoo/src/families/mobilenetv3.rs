//! MobileNetV3 (Howard et al. 2019) with torchvision's names: `features.0` stem,
//! `features.{i}.block.{j}` inverted residuals (expand / depthwise / squeeze-excitation `fc1`,
//! `fc2` / project), the last 1×1 conv, then `classifier.{0,3}` (Linear, Hardswish, Dropout,
//! Linear). BatchNorm eps 1e-3, momentum 0.01 as torchvision; timm's `mobilenetv3_*_100` are the
//! same network with BatchNorm eps 1e-5, momentum 0.1, and their files (timm's names:
//! `conv_stem`, `bn1`, `blocks.{s}.{i}.*`, `conv_head`, `classifier`) load through
//! [`MobileNetV3::timm_remaps`].

use graft_backend::nn;
use graft_backend::{Backend, Ctx, Init, ParamPath, Params};
use graft_core::name::join;
use graft_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::layers::{
    Act, BnCfg, Gate, act, avg_pool_flat, conv_bn_act, init_conv_bn, init_squeeze_excite,
    make_divisible, squeeze_excite,
};
use crate::model::{ClassifierSpec, Family, HeadInit, Side, StageSpec};
use crate::cfg::{Interpolation, PretrainedCfg};
use crate::model::Arch;
use crate::registry::Builtin;

/// torchvision's BatchNorm settings.
pub(crate) const BN: BnCfg = BnCfg {
    eps: 1e-3,
    momentum: 0.01,
};
/// timm's (PyTorch's defaults).
pub(crate) const BN_TIMM: BnCfg = BnCfg {
    eps: 1e-5,
    momentum: 0.1,
};

fn tv_eps() -> f64 {
    BN.eps
}
fn tv_momentum() -> f64 {
    BN.momentum
}

/// One inverted-residual block (torchvision's `InvertedResidualConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IrBlock {
    pub input: usize,
    pub kernel: usize,
    pub expanded: usize,
    pub out: usize,
    pub se: bool,
    /// Hardswish (true) or ReLU.
    pub hs: bool,
    pub stride: usize,
}

/// A MobileNetV3's hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MobileNetV3 {
    pub blocks: Vec<IrBlock>,
    /// Width of the classifier's hidden layer (the pre-logits features).
    pub last_channel: usize,
    /// Block indices (into `blocks`) that start a new stage, after the first.
    pub stage_starts: Vec<usize>,
    pub dropout: f64,
    /// BatchNorm eps (torchvision 1e-3, timm 1e-5).
    #[serde(default = "tv_eps")]
    pub bn_eps: f64,
    /// BatchNorm momentum in train mode (torchvision 0.01, timm 0.1).
    #[serde(default = "tv_momentum")]
    pub bn_momentum: f64,
}

const fn ir(
    input: usize,
    kernel: usize,
    expanded: usize,
    out: usize,
    se: bool,
    hs: bool,
    stride: usize,
) -> IrBlock {
    IrBlock {
        input,
        kernel,
        expanded,
        out,
        se,
        hs,
        stride,
    }
}

impl MobileNetV3 {
    /// torchvision's `mobilenet_v3_large`.
    pub fn large() -> Self {
        Self {
            blocks: vec![
                ir(16, 3, 16, 16, false, false, 1),
                ir(16, 3, 64, 24, false, false, 2),
                ir(24, 3, 72, 24, false, false, 1),
                ir(24, 5, 72, 40, true, false, 2),
                ir(40, 5, 120, 40, true, false, 1),
                ir(40, 5, 120, 40, true, false, 1),
                ir(40, 3, 240, 80, false, true, 2),
                ir(80, 3, 200, 80, false, true, 1),
                ir(80, 3, 184, 80, false, true, 1),
                ir(80, 3, 184, 80, false, true, 1),
                ir(80, 3, 480, 112, true, true, 1),
                ir(112, 3, 672, 112, true, true, 1),
                ir(112, 5, 672, 160, true, true, 2),
                ir(160, 5, 960, 160, true, true, 1),
                ir(160, 5, 960, 160, true, true, 1),
            ],
            last_channel: 1280,
            stage_starts: vec![1, 3, 6, 10, 12],
            dropout: 0.2,
            bn_eps: BN.eps,
            bn_momentum: BN.momentum,
        }
    }
    /// torchvision's `mobilenet_v3_small`.
    pub fn small() -> Self {
        Self {
            blocks: vec![
                ir(16, 3, 16, 16, true, false, 2),
                ir(16, 3, 72, 24, false, false, 2),
                ir(24, 3, 88, 24, false, false, 1),
                ir(24, 5, 96, 40, true, true, 2),
                ir(40, 5, 240, 40, true, true, 1),
                ir(40, 5, 240, 40, true, true, 1),
                ir(40, 5, 120, 48, true, true, 1),
                ir(48, 5, 144, 48, true, true, 1),
                ir(48, 5, 288, 96, true, true, 2),
                ir(96, 5, 576, 96, true, true, 1),
                ir(96, 5, 576, 96, true, true, 1),
            ],
            last_channel: 1024,
            stage_starts: vec![1, 3, 6, 8],
            dropout: 0.2,
            bn_eps: BN.eps,
            bn_momentum: BN.momentum,
        }
    }
    /// timm's `mobilenetv3_large_100`: torchvision's network with timm's BatchNorm settings.
    pub fn large_timm() -> Self {
        Self {
            bn_eps: BN_TIMM.eps,
            bn_momentum: BN_TIMM.momentum,
            ..Self::large()
        }
    }
    /// timm's `mobilenetv3_small_100`.
    pub fn small_timm() -> Self {
        Self {
            bn_eps: BN_TIMM.eps,
            bn_momentum: BN_TIMM.momentum,
            ..Self::small()
        }
    }
    fn bn(&self) -> BnCfg {
        BnCfg {
            eps: self.bn_eps,
            momentum: self.bn_momentum,
        }
    }
    /// timm's names for this network's parameters (`conv_stem`, `bn1`, `blocks.{s}.{i}.*` with
    /// timm's stages — runs of blocks with the same output width —, `conv_head`, `classifier`),
    /// mapped onto torchvision's. timm's `conv_head` is a 1×1 conv after pooling: torchvision's
    /// first classifier Linear, reshaped.
    pub(crate) fn timm_remaps(&self) -> Vec<crate::load::Remap> {
        use crate::load::Remap;
        let mut v = vec![
            Remap::prefix("conv_stem", "features.0.0"),
            Remap::prefix("bn1", "features.0.1"),
            Remap::regex(r"^conv_head\.weight$", "classifier.0.weight", true),
            Remap::prefix("conv_head.bias", "classifier.0.bias"),
            Remap::prefix("classifier", "classifier.3"),
        ];
        let (mut stage, mut idx) = (0usize, 0usize);
        for (k, c) in self.blocks.iter().enumerate() {
            if k > 0 {
                if self.blocks[k - 1].out == c.out {
                    idx += 1;
                } else {
                    stage += 1;
                    idx = 0;
                }
            }
            let from = format!("blocks.{stage}.{idx}");
            let to = format!("features.{}.block", k + 1);
            v.extend(crate::layers::timm_block_remaps(
                &from,
                &to,
                c.expanded != c.input,
                c.se,
            ));
        }
        let last = format!("blocks.{}.0", stage + 1);
        let to = format!("features.{}", self.last_conv_index());
        v.push(Remap::prefix(&format!("{last}.conv"), &format!("{to}.0")));
        v.push(Remap::prefix(&format!("{last}.bn1"), &format!("{to}.1")));
        v
    }
    fn last_conv_out(&self) -> usize {
        6 * self.blocks.last().map_or(16, |b| b.out)
    }
    fn last_conv_index(&self) -> usize {
        self.blocks.len() + 1
    }
    /// Block index ranges of the stages between stem and last conv.
    fn block_stages(&self) -> Vec<std::ops::Range<usize>> {
        let mut starts = vec![0];
        starts.extend(self.stage_starts.iter().copied());
        let mut v = Vec::new();
        for (k, &s) in starts.iter().enumerate() {
            let e = starts.get(k + 1).copied().unwrap_or(self.blocks.len());
            v.push(s..e);
        }
        v
    }
    fn block_forward<B: Backend>(
        &self,
        p: &Params<B>,
        path: &str,
        c: &IrBlock,
        x: &B::Tensor,
        ctx: &Ctx<'_>,
    ) -> Result<B::Tensor> {
        let b = p.backend();
        let a = if c.hs { Act::Hardswish } else { Act::Relu };
        let mut j = 0;
        let mut y = x.clone();
        if c.expanded != c.input {
            y = conv_bn_act(p, &join(path, "block.0"), &y, 1, 1, 1, self.bn(), a, ctx)?;
            j += 1;
        }
        y = conv_bn_act(
            p,
            &join(path, &format!("block.{j}")),
            &y,
            c.kernel,
            c.stride,
            c.expanded,
            self.bn(),
            a,
            ctx,
        )?;
        j += 1;
        if c.se {
            y = squeeze_excite(
                p,
                &join(path, &format!("block.{j}")),
                crate::layers::SE_FC,
                &y,
                Act::Relu,
                Gate::Hardsigmoid,
            )?;
            j += 1;
        }
        y = conv_bn_act(
            p,
            &join(path, &format!("block.{j}")),
            &y,
            1,
            1,
            1,
            self.bn(),
            Act::None,
            ctx,
        )?;
        if c.stride == 1 && c.input == c.out {
            b.add_consume(y, x)
        } else {
            Ok(y)
        }
    }
}

impl Family for MobileNetV3 {
    fn batch_norm_eps(&self) -> Option<f64> {
        Some(self.bn_eps)
    }
    fn is_convnet(&self) -> bool {
        true
    }
    fn set_drop_rates(&mut self, _drop_path: Option<f64>, drop: Option<f64>) {
        if let Some(d) = drop {
            self.dropout = d;
        }
    }
    fn init_trunk<B: Backend>(&self, root: &ParamPath<'_, B>, in_chans: usize) -> Result<()> {
        let first = self.blocks.first().map_or(16, |b| b.input);
        init_conv_bn(&root.sub("features.0")?, in_chans, first, 3, 1)?;
        for (i, c) in self.blocks.iter().enumerate() {
            let bp = root.sub(format!("features.{}", i + 1))?;
            let mut j = 0;
            if c.expanded != c.input {
                init_conv_bn(&bp.sub("block.0")?, c.input, c.expanded, 1, 1)?;
                j += 1;
            }
            init_conv_bn(
                &bp.sub(format!("block.{j}"))?,
                c.expanded,
                c.expanded,
                c.kernel,
                c.expanded,
            )?;
            j += 1;
            if c.se {
                let sq = make_divisible((c.expanded / 4) as f64, 8);
                let se = bp.sub(format!("block.{j}"))?;
                init_squeeze_excite(&se, c.expanded, sq)?;
                j += 1;
            }
            init_conv_bn(&bp.sub(format!("block.{j}"))?, c.expanded, c.out, 1, 1)?;
        }
        let last_in = self.blocks.last().map_or(16, |b| b.out);
        init_conv_bn(
            &root.sub(format!("features.{}", self.last_conv_index()))?,
            last_in,
            self.last_conv_out(),
            1,
            1,
        )?;
        let c0 = root.sub("classifier.0")?;
        c0.param(
            "weight",
            &[self.last_channel, self.last_conv_out()],
            Init::Normal {
                mean: 0.0,
                std: 0.01,
            },
        )?;
        c0.param("bias", &[self.last_channel], Init::Zeros)?;
        Ok(())
    }
    fn classifier(&self) -> ClassifierSpec {
        let (dropout, dropout_path) = (self.dropout, "classifier.2");
        ClassifierSpec {
            prefix: "classifier.3",
            init: HeadInit::Normal(0.01),
            dropout,
            dropout_path,
        }
    }
    fn stage_specs(&self) -> Vec<StageSpec> {
        let first = self.blocks.first().map_or(16, |b| b.input);
        let mut v = vec![StageSpec {
            name: "stem".into(),
            prefixes: vec!["features.0".into()],
            channels: first,
            reduction: 2,
        }];
        let mut red = 2;
        for (k, r) in self.block_stages().into_iter().enumerate() {
            for i in r.clone() {
                red *= self.blocks[i].stride;
            }
            let last = r.end.saturating_sub(1);
            v.push(StageSpec {
                name: format!("stage{}", k + 1),
                prefixes: r.map(|i| format!("features.{}", i + 1)).collect(),
                channels: self.blocks[last].out,
                reduction: red,
            });
        }
        v.push(StageSpec {
            name: "conv_last".into(),
            prefixes: vec![format!("features.{}", self.last_conv_index())],
            channels: self.last_conv_out(),
            reduction: red,
        });
        v
    }
    fn head_stage_prefixes(&self) -> Vec<String> {
        vec!["classifier".into()]
    }
    fn num_features(&self) -> usize {
        self.last_channel
    }
    fn forward_stage<B: Backend>(
        &self,
        p: &Params<B>,
        i: usize,
        x: &B::Tensor,
        _side: &Side<B>,
        ctx: &Ctx<'_>,
    ) -> Result<B::Tensor> {
        let stages = self.block_stages();
        if i == 0 {
            return conv_bn_act(p, "features.0", x, 3, 2, 1, self.bn(), Act::Hardswish, ctx);
        }
        if i == stages.len() + 1 {
            return conv_bn_act(
                p,
                &format!("features.{}", self.last_conv_index()),
                x,
                1,
                1,
                1,
                self.bn(),
                Act::Hardswish,
                ctx,
            );
        }
        let r = stages
            .get(i - 1)
            .cloned()
            .ok_or_else(|| Error::invalid("mobilenetv3", format!("no stage {i}")))?;
        let mut y = x.clone();
        for k in r {
            y = self.block_forward(p, &format!("features.{}", k + 1), &self.blocks[k], &y, ctx)?;
        }
        Ok(y)
    }
    fn pool<B: Backend>(
        &self,
        p: &Params<B>,
        x: &B::Tensor,
        _side: &Side<B>,
        _ctx: &Ctx<'_>,
    ) -> Result<B::Tensor> {
        let b = p.backend();
        let y = avg_pool_flat(b, x)?;
        act(b, nn::linear(p, "classifier.0", &y)?, Act::Hardswish)
    }
    fn remaps(&self) -> Vec<crate::load::Remap> {
        self.timm_remaps()
    }
}

/// The built-in MobileNetV3s: torchvision's, and timm's under torchvision's names.
pub(crate) fn builtins() -> Vec<Builtin> {
    let (bil, bic) = (Interpolation::Bilinear, Interpolation::Bicubic);
    let tv = || PretrainedCfg::torchvision(224, 0.875, bil, "features.0.0", "classifier.3");
    let timm =
        || PretrainedCfg::imagenet(224, 0.875, bic, "features.0.0", "classifier.3", "timm");
    let timm_ref = |name: &str| {
        format!("timm {name} (torchvision's names; timm's files load through the remap table)")
    };
    vec![
        Builtin::new(
            "mobilenet_v3_large",
            Arch::MobileNetV3(MobileNetV3::large()),
            tv(),
            "torchvision.models.mobilenet_v3_large",
        ),
        Builtin::new(
            "mobilenet_v3_small",
            Arch::MobileNetV3(MobileNetV3::small()),
            tv(),
            "torchvision.models.mobilenet_v3_small",
        ),
        Builtin::new(
            "mobilenetv3_large_100",
            Arch::MobileNetV3(MobileNetV3::large_timm()),
            timm(),
            &timm_ref("mobilenetv3_large_100"),
        ),
        Builtin::new(
            "mobilenetv3_small_100",
            Arch::MobileNetV3(MobileNetV3::small_timm()),
            timm(),
            &timm_ref("mobilenetv3_small_100"),
        ),
    ]
}

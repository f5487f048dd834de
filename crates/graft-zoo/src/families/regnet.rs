//! RegNet X / Y (Radosavovic et al. 2020, "Designing Network Design Spaces") with timm's names
//! (`regnet.py`): `stem.conv` / `stem.bn`, then stages `s1`–`s4` of blocks `b1`…, each
//! `conv1` (1×1) → `conv2` (3×3, grouped, the stage's stride on the first block) → `se` (RegNetY:
//! squeeze-excitation after conv2, `fc1` / `fc2` with bias, squeezed to a quarter of the block's
//! *input* width) → `conv3` (1×1, no activation), `downsample` (1×1 conv + BN) where the width
//! or stride changes, ReLU after the residual add; `head.fc`.
//!
//! The design space's per-block widths are quantised in timm with float32 arithmetic; graft keeps
//! the resulting per-stage depth / width / group width as data (the built-ins below were read from
//! timm 1.0.31's `RegNet._get_stage_args`), so a stage is exactly what timm builds.

use graft_backend::nn;
use graft_backend::{Backend, Conv2dOpts, Ctx, ParamPath, Params};
use graft_core::name::join;
use graft_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::cfg::{Interpolation, PretrainedCfg};
use crate::layers::{
    Act, Gate, SE_FC, act, init_conv_bn_named, init_squeeze_excite, squeeze_excite,
};
use crate::model::Arch;
use crate::model::{ClassifierSpec, Family, HeadInit, Side, StageSpec};
use crate::registry::Builtin;

const BN_EPS: f64 = 1e-5;
const BN_MOMENTUM: f64 = 0.1;

/// One stage: `depth` blocks of output width `width`, grouped 3×3 convs of `group_width`
/// channels a group (the first block strides by 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegStage {
    pub depth: usize,
    pub width: usize,
    pub group_width: usize,
}

/// A RegNet's hyper-parameters (timm's non-pre-activation `RegNetCfg` with `conv1x1`
/// shortcuts and no final conv: the X and Y design spaces).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegNet {
    pub stem_width: usize,
    pub stages: [RegStage; 4],
    /// Bottleneck width / block width (1 for X and Y).
    pub bottle_ratio: f64,
    /// Squeeze-excitation width / block input width (0: RegNetX, 0.25: RegNetY).
    pub se_ratio: f64,
    /// The activation: ReLU, or SiLU (timm's `regnety_040_sgn`-style cfgs).
    #[serde(default)]
    pub silu: bool,
    /// Stochastic depth over the blocks (timm's `drop_path_rate`, per stage).
    #[serde(default)]
    pub drop_path: f64,
    /// Dropout before the classifier.
    #[serde(default)]
    pub drop: f64,
}

impl RegNet {
    /// X (`se_ratio` 0) or Y (0.25) from per-stage `(depth, width, group width)`.
    pub fn new(stages: [(usize, usize, usize); 4], se_ratio: f64) -> Self {
        Self {
            stem_width: 32,
            stages: stages.map(|(depth, width, group_width)| RegStage {
                depth,
                width,
                group_width,
            }),
            bottle_ratio: 1.0,
            se_ratio,
            silu: false,
            drop_path: 0.0,
            drop: 0.0,
        }
    }
    fn act(&self) -> Act {
        if self.silu { Act::Silu } else { Act::Relu }
    }
    fn in_width(&self, s: usize, i: usize) -> usize {
        match (s, i) {
            (0, 0) => self.stem_width,
            (_, 0) => self.stages[s - 1].width,
            _ => self.stages[s].width,
        }
    }
    /// Bottleneck channels and conv2's group count of stage `s` (rounded as Python's `round`,
    /// half to even, as timm computes them).
    fn bottleneck(&self, s: usize) -> (usize, usize) {
        let st = self.stages[s];
        let bott = (st.width as f64 * self.bottle_ratio).round_ties_even() as usize;
        (bott, bott / st.group_width.max(1))
    }
    /// A shortcut conv where the width or stride changes: every stage strides by 2, so on each
    /// stage's first block and no other.
    fn has_downsample(&self, _s: usize, i: usize) -> bool {
        i == 0
    }
    /// Squeeze-excitation width of block `i` of stage `s`: Python's `round(in_chs * se_ratio)`,
    /// half to even (regnety_2560's 746 input channels squeeze to 186, not 187).
    fn se_width(&self, s: usize, i: usize) -> usize {
        (self.in_width(s, i) as f64 * self.se_ratio).round_ties_even() as usize
    }
    /// timm's drop-path rate of block `i` of stage `s`: linear from 0 to `drop_path` over every
    /// block of the network (`calculate_drop_path_rates`).
    fn drop_path_rate(&self, s: usize, i: usize) -> f64 {
        let total: usize = self.stages.iter().map(|st| st.depth).sum();
        if self.drop_path == 0.0 || total < 2 {
            return 0.0;
        }
        let g: usize = self.stages[..s].iter().map(|st| st.depth).sum::<usize>() + i;
        self.drop_path * g as f64 / (total - 1) as f64
    }
    fn conv_bn<B: Backend>(
        p: &Params<B>,
        path: &str,
        x: &B::Tensor,
        o: Conv2dOpts,
        ctx: &Ctx<'_>,
    ) -> Result<B::Tensor> {
        let y = nn::conv2d(p, &join(path, "conv"), x, o)?;
        nn::batch_norm(p, &join(path, "bn"), &y, ctx, BN_EPS, BN_MOMENTUM)
    }
    fn block<B: Backend>(
        &self,
        p: &Params<B>,
        path: &str,
        (s, i): (usize, usize),
        x: &B::Tensor,
        ctx: &Ctx<'_>,
    ) -> Result<B::Tensor> {
        let stride = if i == 0 { 2 } else { 1 };
        let b = p.backend();
        let a = self.act();
        let (_, groups) = self.bottleneck(s);
        let y = Self::conv_bn(p, &join(path, "conv1"), x, Conv2dOpts::new(), ctx)?;
        let y = act(b, y, a)?;
        let o = Conv2dOpts::new().stride(stride).padding(1).groups(groups);
        let y = act(b, Self::conv_bn(p, &join(path, "conv2"), &y, o, ctx)?, a)?;
        let y = if self.se_ratio > 0.0 {
            squeeze_excite(p, &join(path, "se"), SE_FC, &y, a, Gate::Sigmoid)?
        } else {
            y
        };
        let y = Self::conv_bn(p, &join(path, "conv3"), &y, Conv2dOpts::new(), ctx)?;
        let y = nn::drop_path(b, &y, self.drop_path_rate(s, i), ctx, path)?;
        let identity = if self.has_downsample(s, i) {
            let o = Conv2dOpts::new().stride(stride);
            Self::conv_bn(p, &join(path, "downsample"), x, o, ctx)?
        } else {
            x.clone()
        };
        act(b, b.add_consume(y, &identity)?, a)
    }
}

fn init_conv_bn<B: Backend>(
    p: &ParamPath<'_, B>,
    in_ch: usize,
    out_ch: usize,
    k: usize,
    groups: usize,
) -> Result<()> {
    init_conv_bn_named(p, ["conv", "bn"], in_ch, out_ch, k, groups)
}

impl Family for RegNet {
    fn batch_norm_eps(&self) -> Option<f64> {
        Some(BN_EPS)
    }
    fn is_convnet(&self) -> bool {
        true
    }
    fn set_drop_rates(&mut self, drop_path: Option<f64>, drop: Option<f64>) {
        if let Some(d) = drop_path {
            self.drop_path = d;
        }
        if let Some(d) = drop {
            self.drop = d;
        }
    }
    fn init_trunk<B: Backend>(&self, root: &ParamPath<'_, B>, in_chans: usize) -> Result<()> {
        init_conv_bn(&root.sub("stem")?, in_chans, self.stem_width, 3, 1)?;
        for (s, st) in self.stages.iter().enumerate() {
            let (bott, groups) = self.bottleneck(s);
            for i in 0..st.depth {
                let bp = root.sub(format!("s{}.b{}", s + 1, i + 1))?;
                let inp = self.in_width(s, i);
                init_conv_bn(&bp.sub("conv1")?, inp, bott, 1, 1)?;
                init_conv_bn(&bp.sub("conv2")?, bott, bott, 3, groups)?;
                if self.se_ratio > 0.0 {
                    init_squeeze_excite(&bp.sub("se")?, bott, self.se_width(s, i))?;
                }
                init_conv_bn(&bp.sub("conv3")?, bott, st.width, 1, 1)?;
                if self.has_downsample(s, i) {
                    init_conv_bn(&bp.sub("downsample")?, inp, st.width, 1, 1)?;
                }
            }
        }
        Ok(())
    }
    fn stage_specs(&self) -> Vec<StageSpec> {
        let mut v = vec![StageSpec {
            name: "stem".into(),
            prefixes: vec!["stem".into()],
            channels: self.stem_width,
            reduction: 2,
        }];
        for (s, st) in self.stages.iter().enumerate() {
            v.push(StageSpec {
                name: format!("s{}", s + 1),
                prefixes: vec![format!("s{}", s + 1)],
                channels: st.width,
                reduction: 4 << s,
            });
        }
        v
    }
    fn head_stage_prefixes(&self) -> Vec<String> {
        vec!["head".into()]
    }
    fn classifier(&self) -> ClassifierSpec {
        ClassifierSpec {
            prefix: "head.fc",
            init: HeadInit::Normal(0.01),
            dropout: self.drop,
            dropout_path: "head.drop",
        }
    }
    fn num_features(&self) -> usize {
        self.stages[3].width
    }
    fn forward_stage<B: Backend>(
        &self,
        p: &Params<B>,
        i: usize,
        x: &B::Tensor,
        _side: &Side<B>,
        ctx: &Ctx<'_>,
    ) -> Result<B::Tensor> {
        let b = p.backend();
        if i == 0 {
            let o = Conv2dOpts::new().stride(2).padding(1);
            return act(b, Self::conv_bn(p, "stem", x, o, ctx)?, self.act());
        }
        let s = i - 1;
        let st = self
            .stages
            .get(s)
            .ok_or_else(|| Error::invalid("regnet", format!("no stage {i}")))?;
        let mut y = x.clone();
        for blk in 0..st.depth {
            y = self.block(p, &format!("s{}.b{}", s + 1, blk + 1), (s, blk), &y, ctx)?;
        }
        Ok(y)
    }
}

/// timm's RegNetX and RegNetY built-ins (ImageNet cfgs as timm's `_cfg`: 224², crop 0.875,
/// bicubic). Per stage `(depth, width, group width)` from timm 1.0.31.
pub(crate) fn builtins() -> Vec<Builtin> {
    type Stages = [(usize, usize, usize); 4];
    const X: &[(&str, Stages)] = &[
        ("regnetx_002", [(1, 24, 8), (1, 56, 8), (4, 152, 8), (7, 368, 8)]),
        ("regnetx_004", [(1, 32, 16), (2, 64, 16), (7, 160, 16), (12, 384, 16)]),
        // the torchvision-trained variants (`*_tv`) differ in a stage's width
        ("regnetx_004_tv", [(1, 32, 16), (2, 64, 16), (7, 160, 16), (12, 400, 16)]),
        ("regnetx_006", [(1, 48, 24), (3, 96, 24), (5, 240, 24), (7, 528, 24)]),
        ("regnetx_008", [(1, 64, 16), (3, 128, 16), (7, 288, 16), (5, 672, 16)]),
        ("regnetx_016", [(2, 72, 24), (4, 168, 24), (10, 408, 24), (2, 912, 24)]),
        ("regnetx_032", [(2, 96, 48), (6, 192, 48), (15, 432, 48), (2, 1008, 48)]),
        ("regnetx_040", [(2, 80, 40), (5, 240, 40), (14, 560, 40), (2, 1360, 40)]),
        ("regnetx_064", [(2, 168, 56), (4, 392, 56), (10, 784, 56), (1, 1624, 56)]),
        ("regnetx_080", [(2, 80, 80), (5, 240, 120), (15, 720, 120), (1, 1920, 120)]),
        ("regnetx_120", [(2, 224, 112), (5, 448, 112), (11, 896, 112), (1, 2240, 112)]),
        ("regnetx_160", [(2, 256, 128), (6, 512, 128), (13, 896, 128), (1, 2048, 128)]),
        ("regnetx_320", [(2, 336, 168), (7, 672, 168), (13, 1344, 168), (1, 2520, 168)]),
    ];
    const Y: &[(&str, Stages)] = &[
        ("regnety_002", [(1, 24, 8), (1, 56, 8), (4, 152, 8), (7, 368, 8)]),
        ("regnety_004", [(1, 48, 8), (3, 104, 8), (6, 208, 8), (6, 440, 8)]),
        ("regnety_006", [(1, 48, 16), (3, 112, 16), (7, 256, 16), (4, 608, 16)]),
        ("regnety_008", [(1, 64, 16), (3, 128, 16), (8, 320, 16), (2, 768, 16)]),
        ("regnety_008_tv", [(1, 64, 16), (3, 144, 16), (8, 320, 16), (2, 784, 16)]),
        ("regnety_016", [(2, 48, 24), (6, 120, 24), (17, 336, 24), (2, 888, 24)]),
        ("regnety_032", [(2, 72, 24), (5, 216, 24), (13, 576, 24), (1, 1512, 24)]),
        ("regnety_040", [(2, 128, 64), (6, 192, 64), (12, 512, 64), (2, 1088, 64)]),
        ("regnety_064", [(2, 144, 72), (7, 288, 72), (14, 576, 72), (2, 1296, 72)]),
        ("regnety_080", [(2, 168, 56), (4, 448, 56), (10, 896, 56), (1, 2016, 56)]),
        ("regnety_080_tv", [(2, 224, 56), (4, 448, 56), (10, 896, 56), (1, 2016, 56)]),
        ("regnety_120", [(2, 224, 112), (5, 448, 112), (11, 896, 112), (1, 2240, 112)]),
        ("regnety_160", [(2, 224, 112), (4, 448, 112), (11, 1232, 112), (1, 3024, 112)]),
        ("regnety_320", [(2, 232, 232), (5, 696, 232), (12, 1392, 232), (1, 3712, 232)]),
        ("regnety_640", [(2, 328, 328), (5, 984, 328), (12, 1968, 328), (1, 4920, 328)]),
        ("regnety_1280", [(2, 528, 264), (7, 1056, 264), (17, 2904, 264), (1, 7392, 264)]),
        ("regnety_2560", [(2, 746, 373), (7, 1492, 373), (17, 4103, 373), (1, 10444, 373)]),
    ];
    let cfg = || {
        PretrainedCfg::imagenet(
            224,
            0.875,
            Interpolation::Bicubic,
            "stem.conv",
            "head.fc",
            "timm",
        )
    };
    X.iter()
        .map(|(n, st)| (n, RegNet::new(*st, 0.0)))
        .chain(Y.iter().map(|(n, st)| (n, RegNet::new(*st, 0.25))))
        .map(|(name, arch)| {
            Builtin::new(
                name,
                Arch::RegNet(arch),
                cfg(),
                &format!("timm {name} (regnet.py)"),
            )
        })
        .collect()
}

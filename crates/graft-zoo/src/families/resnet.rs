//! ResNet (He et al. 2015) with torchvision's names, which timm shares: `conv1`, `bn1`,
//! `layer{1..4}.{i}.conv{1,2,3}` / `bn{1,2,3}` / `downsample.{0,1}`, `fc`. Stride sits on the
//! 3×3 conv of a bottleneck (ResNet v1.5, both libraries' default). `small_stem` is the
//! CIFAR-style variant: a 3×3 stride-1 `conv1` and no max-pool, for 8–32 px images.
//!
//! timm's builder options (`resnet.py`, "Bag of Tricks", He et al. 2019; Xie et al. 2017; Hu et
//! al. 2018): a deep stem of three 3×3 convs (`conv1.{0,3,6}`, BatchNorms `conv1.{1,4}`: ResNet-C,
//! -D, -S), average-pool shortcuts (`downsample.{1,2}` after a 2×2 average pool: ResNet-D),
//! grouped bottlenecks of `cardinality` groups and `base_width` (ResNeXt, wide ResNets) and
//! squeeze-excitation after the last BatchNorm of a block (`se.fc1` / `se.fc2`: SE-ResNe(X)t; 1/4
//! wide in ResNet-RS), or efficient channel attention there (`se.conv`: ECA-ResNet, Wang et al.
//! 2020), a tiered deep stem (ResNet-T), a 3×3 stride-2 conv in place of the stem's max-pool
//! (`maxpool.{0,1}`: ResNet-RS, Bello et al. 2021) and anti-aliasing by 2×2 average pools after
//! the strided convs (ResNet-AA, after Zhang 2019). timm's ResNets beyond torchvision's four come
//! from the architecture table (`data/archs.json`, read off timm's models).

use graft_backend::nn;
use graft_backend::{Backend, Conv2dOpts, Ctx, Init, ParamPath, Params, Pool2dOpts};
use graft_core::name::join;
use graft_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::layers::{
    Act, Gate, SE_FC, efficient_channel_attention, init_squeeze_excite, squeeze_excite,
};
use crate::model::{ClassifierSpec, Family, HeadInit, Side, StageSpec};
use crate::cfg::{Interpolation, PretrainedCfg};
use crate::model::Arch;
use crate::registry::Builtin;

pub(crate) const BN_EPS: f64 = 1e-5;
const BN_MOMENTUM: f64 = 0.1;

/// Residual block type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Block {
    Basic,
    Bottleneck,
}

impl Block {
    fn expansion(self) -> usize {
        match self {
            Block::Basic => 1,
            Block::Bottleneck => 4,
        }
    }
}

/// A ResNet's hyper-parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResNet {
    pub block: Block,
    pub layers: [usize; 4],
    /// 3×3 stride-1 conv1 and no max-pool.
    #[serde(default)]
    pub small_stem: bool,
    /// A deep stem of this width: three 3×3 convs of `w`, `w`, `2w` channels (timm's
    /// `stem_type='deep'`).
    #[serde(default)]
    pub deep_stem: Option<usize>,
    /// Shortcuts that downsample by a 2×2 average pool before their 1×1 conv (ResNet-D).
    #[serde(default)]
    pub avg_down: bool,
    /// Groups of the bottleneck's 3×3 conv (ResNeXt).
    #[serde(default = "one")]
    pub cardinality: usize,
    /// Width of each group per 64 planes (64: ResNet; 4 with 32 groups: ResNeXt 32x4d; 128:
    /// wide ResNet-50-2).
    #[serde(default = "sixty_four")]
    pub base_width: usize,
    /// Squeeze-excitation after each block's last BatchNorm (SE-ResNet, SE-ResNeXt).
    #[serde(default)]
    pub se: bool,
    /// The squeeze-excitation's reduction: its width is `channels / se_reduction` (16; ResNet-RS
    /// 4), rounded to a multiple of 8 as timm's `make_divisible`.
    #[serde(default = "sixteen", skip_serializing_if = "is_sixteen")]
    pub se_reduction: usize,
    /// Efficient channel attention after each block's last BatchNorm (timm's `EcaModule`: a
    /// bias-free 1-d conv across the pooled channels, its kernel from the channel count).
    #[serde(default, skip_serializing_if = "is_false")]
    pub eca: bool,
    /// The deep stem's first conv `3/4` as wide (timm's `stem_type='deep_tiered'`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub tiered_stem: bool,
    /// A 3×3 stride-2 conv, BatchNorm and ReLU in place of the stem's max-pool (ResNet-RS's
    /// `replace_stem_pool`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub conv_stem_pool: bool,
    /// Anti-aliased downsampling: strided 3×3 convs run at stride 1 followed by a 2×2 average
    /// pool, and the stem's max-pool is a 2×2 average pool (timm's `aa_layer=nn.AvgPool2d`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub anti_alias: bool,
}

fn sixteen() -> usize {
    16
}

fn is_sixteen(v: &usize) -> bool {
    *v == 16
}

fn is_false(v: &bool) -> bool {
    !*v
}

fn one() -> usize {
    1
}

fn sixty_four() -> usize {
    64
}

impl ResNet {
    pub fn new(block: Block, layers: [usize; 4]) -> Self {
        Self {
            block,
            layers,
            small_stem: false,
            deep_stem: None,
            avg_down: false,
            cardinality: 1,
            base_width: 64,
            se: false,
            se_reduction: 16,
            eca: false,
            tiered_stem: false,
            conv_stem_pool: false,
            anti_alias: false,
        }
    }
    /// ResNet-D: a deep stem of width 32 and average-pool shortcuts.
    pub fn d(mut self) -> Self {
        self.deep_stem = Some(32);
        self.avg_down = true;
        self
    }
    /// Grouped bottlenecks: `cardinality` groups of `base_width` per 64 planes.
    pub fn grouped(mut self, cardinality: usize, base_width: usize) -> Self {
        self.cardinality = cardinality;
        self.base_width = base_width;
        self
    }
    /// Squeeze-excitation in every block.
    pub fn se(mut self) -> Self {
        self.se = true;
        self
    }
    /// Channels the stem gives layer1.
    fn stem_out(&self) -> usize {
        self.deep_stem.map_or(64, |w| 2 * w)
    }
    /// The bottleneck's inner width of stage `s` (timm: `floor(planes · base_width / 64) ·
    /// cardinality`); a basic block's is its planes.
    fn width(&self, s: usize) -> usize {
        match self.block {
            Block::Basic => Self::planes(s),
            Block::Bottleneck => Self::planes(s) * self.base_width / 64 * self.cardinality,
        }
    }
    /// timm's `SEModule` width for `ch` channels: `make_divisible(ch / se_reduction, 8)` with no
    /// round-up.
    fn se_width(&self, ch: usize) -> usize {
        ((ch as f64 / self.se_reduction as f64 + 4.0) as usize / 8 * 8).max(8)
    }
    /// timm's `EcaModule` kernel for `ch` channels (Wang et al. 2020, γ = 2, b = 1):
    /// `t = ⌊|log2(ch) + 1| / 2⌋`, made odd by adding one when even, at least 3.
    fn eca_kernel(ch: usize) -> usize {
        let t = (((ch as f64).ln() / 2f64.ln() + 1.0).abs() / 2.0) as usize;
        (if t % 2 == 1 { t } else { t + 1 }).max(3)
    }
    /// The deep stem's three conv widths.
    fn deep_stem_widths(&self, sw: usize) -> [usize; 3] {
        let first = if self.tiered_stem { 3 * (sw / 4) } else { sw };
        [first, sw, 2 * sw]
    }
    /// A 2×2 average pool of stride 2 (the anti-aliasing pool).
    fn aa_pool<B: Backend>(b: &B, x: &B::Tensor) -> Result<B::Tensor> {
        b.avg_pool2d(x, Pool2dOpts::new(2).stride(2))
    }
    /// The model's option combinations the builder implements.
    fn check(&self) -> Result<()> {
        let bad = |why: &str| Err(Error::invalid("resnet", why.to_string()));
        if self.se && self.eca {
            return bad("se and eca are alternatives: one attention per block");
        }
        if self.tiered_stem && self.deep_stem.is_none() {
            return bad("tiered_stem needs deep_stem");
        }
        if self.small_stem && (self.deep_stem.is_some() || self.conv_stem_pool || self.anti_alias) {
            return bad("small_stem has no stem pool and a 3x3 conv1: no deep, pooled or anti-aliased stem");
        }
        if self.conv_stem_pool && self.anti_alias {
            return bad("an anti-aliased conv stem pool is not implemented");
        }
        if self.se_reduction == 0 || self.cardinality == 0 || self.base_width == 0 {
            return bad("se_reduction, cardinality and base_width must be positive");
        }
        Ok(())
    }
    /// The shortcut conv's and BatchNorm's names (after the average pool under avg-down).
    fn downsample_names(&self) -> (&'static str, &'static str) {
        if self.avg_down {
            ("downsample.1", "downsample.2")
        } else {
            ("downsample.0", "downsample.1")
        }
    }
    fn stage_stride(i: usize) -> usize {
        if i == 0 { 1 } else { 2 }
    }
    fn planes(i: usize) -> usize {
        64 << i
    }
    fn in_planes(&self, stage: usize, block: usize) -> usize {
        if block > 0 {
            Self::planes(stage) * self.block.expansion()
        } else if stage == 0 {
            self.stem_out()
        } else {
            Self::planes(stage - 1) * self.block.expansion()
        }
    }
    fn has_downsample(&self, stage: usize, block: usize) -> bool {
        block == 0
            && (Self::stage_stride(stage) != 1
                || self.in_planes(stage, 0) != Self::planes(stage) * self.block.expansion())
    }

    fn block_forward<B: Backend>(
        &self,
        p: &Params<B>,
        path: &str,
        x: &B::Tensor,
        stride: usize,
        down: bool,
        ctx: &Ctx<'_>,
    ) -> Result<B::Tensor> {
        let b = p.backend();
        let bn = |y: &B::Tensor, name: &str| {
            nn::batch_norm(p, &join(path, name), y, ctx, BN_EPS, BN_MOMENTUM)
        };
        let conv =
            |y: &B::Tensor, name: &str, o: Conv2dOpts| nn::conv2d(p, &join(path, name), y, o);
        let k3 = |s: usize| Conv2dOpts::new().stride(s).padding(1);
        // anti-aliased: the strided conv runs at stride 1, a 2x2 average pool after its ReLU
        let aa = self.anti_alias && stride > 1;
        let conv_stride = if aa { 1 } else { stride };
        let pool = |y: B::Tensor| if aa { Self::aa_pool(b, &y) } else { Ok(y) };
        let y = match self.block {
            Block::Basic => {
                let y = b.relu_consume(bn(&conv(x, "conv1", k3(conv_stride))?, "bn1")?)?;
                bn(&conv(&pool(y)?, "conv2", k3(1))?, "bn2")?
            }
            Block::Bottleneck => {
                let y = b.relu_consume(bn(&conv(x, "conv1", Conv2dOpts::new())?, "bn1")?)?;
                let g = k3(conv_stride).groups(self.cardinality);
                let y = b.relu_consume(bn(&conv(&y, "conv2", g)?, "bn2")?)?;
                bn(&conv(&pool(y)?, "conv3", Conv2dOpts::new())?, "bn3")?
            }
        };
        let y = if self.se {
            squeeze_excite(p, &join(path, "se"), SE_FC, &y, Act::Relu, Gate::Sigmoid)?
        } else if self.eca {
            efficient_channel_attention(p, &join(path, "se.conv"), &y)?
        } else {
            y
        };
        let identity = if down {
            let (dc, dbn) = self.downsample_names();
            let d = if self.avg_down && stride > 1 {
                let mut o = Pool2dOpts::new(2).stride(stride);
                o.ceil_mode = true;
                o.count_include_pad = false;
                let pooled = b.avg_pool2d(x, o)?;
                conv(&pooled, dc, Conv2dOpts::new())?
            } else if self.avg_down {
                conv(x, dc, Conv2dOpts::new())?
            } else {
                conv(x, dc, Conv2dOpts::new().stride(stride))?
            };
            bn(&d, dbn)?
        } else {
            x.clone()
        };
        // y is this block's own fresh output: the residual add and the ReLU reuse its storage
        b.relu_consume(b.add_consume(y, &identity)?)
    }
}

impl Family for ResNet {
    fn batch_norm_eps(&self) -> Option<f64> {
        Some(BN_EPS)
    }
    fn is_convnet(&self) -> bool {
        true
    }
    fn conv_before_norm(&self, bn: &str) -> Option<String> {
        // the deep stem's last conv is `conv1.6`; timm names the BatchNorm after it `bn1`
        (self.deep_stem.is_some() && bn == "bn1").then(|| "conv1.6".to_string())
    }
    fn init_trunk<B: Backend>(&self, root: &ParamPath<'_, B>, in_chans: usize) -> Result<()> {
        let w = |p: &ParamPath<'_, B>, co: usize, ci: usize, k: usize| {
            p.param("weight", &[co, ci, k, k], Init::KaimingNormalFanOut)
        };
        self.check()?;
        match self.deep_stem {
            Some(sw) => {
                let [c0, c1, c2] = self.deep_stem_widths(sw);
                w(&root.sub("conv1.0")?, c0, in_chans, 3)?;
                nn::init_batch_norm(&root.sub("conv1.1")?, c0)?;
                w(&root.sub("conv1.3")?, c1, c0, 3)?;
                nn::init_batch_norm(&root.sub("conv1.4")?, c1)?;
                w(&root.sub("conv1.6")?, c2, c1, 3)?;
            }
            None => {
                let k = if self.small_stem { 3 } else { 7 };
                w(&root.sub("conv1")?, 64, in_chans, k)?;
            }
        }
        nn::init_batch_norm(&root.sub("bn1")?, self.stem_out())?;
        if self.conv_stem_pool {
            let c = self.stem_out();
            w(&root.sub("maxpool.0")?, c, c, 3)?;
            nn::init_batch_norm(&root.sub("maxpool.1")?, c)?;
        }
        let e = self.block.expansion();
        for (s, &n) in self.layers.iter().enumerate() {
            let (planes, width) = (Self::planes(s), self.width(s));
            for i in 0..n {
                let bp = root.sub(format!("layer{}.{i}", s + 1))?;
                let inp = self.in_planes(s, i);
                let convs: Vec<(usize, usize, usize, usize)> = match self.block {
                    Block::Basic => vec![(inp, planes, 3, 1), (planes, planes, 3, 1)],
                    Block::Bottleneck => vec![
                        (inp, width, 1, 1),
                        (width, width, 3, self.cardinality),
                        (width, planes * e, 1, 1),
                    ],
                };
                for (j, (ci, co, k, groups)) in convs.into_iter().enumerate() {
                    w(&bp.sub(format!("conv{}", j + 1))?, co, ci / groups, k)?;
                    nn::init_batch_norm(&bp.sub(format!("bn{}", j + 1))?, co)?;
                }
                if self.se {
                    init_squeeze_excite(&bp.sub("se")?, planes * e, self.se_width(planes * e))?;
                }
                if self.eca {
                    let k = Self::eca_kernel(planes * e);
                    bp.sub("se.conv")?
                        .param("weight", &[1, 1, k], Init::TorchDefaultWeight)?;
                }
                if self.has_downsample(s, i) {
                    let (dc, dbn) = self.downsample_names();
                    w(&bp.sub(dc)?, planes * e, inp, 1)?;
                    nn::init_batch_norm(&bp.sub(dbn)?, planes * e)?;
                }
            }
        }
        Ok(())
    }
    fn classifier(&self) -> ClassifierSpec {
        let (dropout, dropout_path) = (0.0, "");
        ClassifierSpec {
            prefix: "fc",
            init: HeadInit::TorchDefault,
            dropout,
            dropout_path,
        }
    }
    fn stage_specs(&self) -> Vec<StageSpec> {
        let r0 = if self.small_stem { 1 } else { 2 };
        let mut v = vec![StageSpec {
            name: "stem".into(),
            prefixes: vec!["conv1".into(), "bn1".into()],
            channels: self.stem_out(),
            reduction: r0,
        }];
        let mut red = if self.small_stem { 1 } else { 4 };
        for s in 0..4 {
            if s > 0 {
                red *= 2;
            }
            let mut prefixes = vec![format!("layer{}", s + 1)];
            if s == 0 && self.conv_stem_pool {
                // timm's stem feature is the stem's ReLU: the conv pool opens layer1
                prefixes.insert(0, "maxpool".into());
            }
            v.push(StageSpec {
                name: format!("layer{}", s + 1),
                prefixes,
                channels: Self::planes(s) * self.block.expansion(),
                reduction: red,
            });
        }
        v
    }
    fn head_stage_prefixes(&self) -> Vec<String> {
        vec!["fc".into()]
    }
    fn num_features(&self) -> usize {
        512 * self.block.expansion()
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
            let bn = |y: &B::Tensor, name: &str| {
                nn::batch_norm(p, name, y, ctx, BN_EPS, BN_MOMENTUM)
            };
            let y = if self.deep_stem.is_some() {
                let k3 = |stride: usize| Conv2dOpts::new().stride(stride).padding(1);
                let y = nn::conv2d(p, "conv1.0", x, k3(2))?;
                let y = b.relu_consume(bn(&y, "conv1.1")?)?;
                let y = nn::conv2d(p, "conv1.3", &y, k3(1))?;
                let y = b.relu_consume(bn(&y, "conv1.4")?)?;
                nn::conv2d(p, "conv1.6", &y, k3(1))?
            } else {
                let o = if self.small_stem {
                    Conv2dOpts::new().padding(1)
                } else {
                    Conv2dOpts::new().stride(2).padding(3)
                };
                nn::conv2d(p, "conv1", x, o)?
            };
            return b.relu_consume(bn(&y, "bn1")?);
        }
        let s = i - 1;
        let n = *self
            .layers
            .get(s)
            .ok_or_else(|| Error::invalid("resnet", format!("no stage {i}")))?;
        let mut y = if s > 0 || self.small_stem {
            x.clone()
        } else if self.conv_stem_pool {
            let o = Conv2dOpts::new().stride(2).padding(1);
            let y = nn::conv2d(p, "maxpool.0", x, o)?;
            let y = nn::batch_norm(p, "maxpool.1", &y, ctx, BN_EPS, BN_MOMENTUM)?;
            b.relu_consume(y)?
        } else if self.anti_alias {
            Self::aa_pool(b, x)?
        } else {
            b.max_pool2d(x, Pool2dOpts::new(3).stride(2).padding(1))?
        };
        for blk in 0..n {
            let stride = if blk == 0 { Self::stage_stride(s) } else { 1 };
            y = self.block_forward(
                p,
                &format!("layer{}.{blk}", s + 1),
                &y,
                stride,
                self.has_downsample(s, blk),
                ctx,
            )?;
        }
        Ok(y)
    }
}

/// The built-in ResNets (torchvision's, which timm shares) and `resnet18_small`.
pub(crate) fn builtins() -> Vec<Builtin> {
    let cfg = || PretrainedCfg::torchvision(224, 0.875, Interpolation::Bilinear, "conv1", "fc");
    let mut v: Vec<Builtin> = [
        ("resnet18", Block::Basic, [2, 2, 2, 2]),
        ("resnet34", Block::Basic, [3, 4, 6, 3]),
        ("resnet50", Block::Bottleneck, [3, 4, 6, 3]),
        ("resnet101", Block::Bottleneck, [3, 4, 23, 3]),
    ]
    .into_iter()
    .map(|(name, block, layers)| {
        Builtin::new(
            name,
            Arch::ResNet(ResNet::new(block, layers)),
            cfg(),
            &format!("torchvision.models.{name} (== timm {name})"),
        )
    })
    .collect();
    let mut small = cfg();
    small.num_classes = 10;
    small.input_size = [3, 32, 32];
    small.crop_pct = 1.0;
    small.labels = None;
    small.source = "graft".into();
    v.push(Builtin::new(
        "resnet18_small",
        Arch::ResNet(ResNet {
            small_stem: true,
            ..ResNet::new(Block::Basic, [2, 2, 2, 2])
        }),
        small,
        "torchvision resnet18 with a 3x3 stride-1 conv1 and maxpool = Identity",
    ));
    // timm's builder variants (resnet.py), read off timm's models into the architecture table
    for (name, arch) in crate::arch_table::entries::<ResNet>("resnet") {
        let first_conv = if arch.deep_stem.is_some() { "conv1.0" } else { "conv1" };
        let base =
            PretrainedCfg::imagenet(224, 0.875, Interpolation::Bicubic, first_conv, "fc", "timm");
        let cfg = crate::arch_table::with_default_tag(&name, base);
        let reference = format!("timm {name} (resnet.py)");
        v.push(Builtin::new(&name, Arch::ResNet(arch), cfg, &reference));
    }
    v
}

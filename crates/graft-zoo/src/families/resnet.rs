//! ResNet (He et al. 2015) with torchvision's names, which timm shares: `conv1`, `bn1`,
//! `layer{1..4}.{i}.conv{1,2,3}` / `bn{1,2,3}` / `downsample.{0,1}`, `fc`. Stride sits on the
//! 3×3 conv of a bottleneck (ResNet v1.5, both libraries' default). `small_stem` is the
//! CIFAR-style variant: a 3×3 stride-1 `conv1` and no max-pool, for 8–32 px images.

use graft_backend::nn;
use graft_backend::{Backend, Conv2dOpts, Ctx, Init, ParamPath, Params, Pool2dOpts};
use graft_core::name::join;
use graft_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::layers::avg_pool_flat;
use crate::model::{ClassifierSpec, Family, HeadInit, StageSpec};

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
}

impl ResNet {
    pub fn new(block: Block, layers: [usize; 4]) -> Self {
        Self {
            block,
            layers,
            small_stem: false,
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
            64
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
        let y = match self.block {
            Block::Basic => {
                let y = b.relu_consume(bn(&conv(x, "conv1", k3(stride))?, "bn1")?)?;
                bn(&conv(&y, "conv2", k3(1))?, "bn2")?
            }
            Block::Bottleneck => {
                let y = b.relu_consume(bn(&conv(x, "conv1", Conv2dOpts::new())?, "bn1")?)?;
                let y = b.relu_consume(bn(&conv(&y, "conv2", k3(stride))?, "bn2")?)?;
                bn(&conv(&y, "conv3", Conv2dOpts::new())?, "bn3")?
            }
        };
        let identity = if down {
            let d = conv(x, "downsample.0", Conv2dOpts::new().stride(stride))?;
            bn(&d, "downsample.1")?
        } else {
            x.clone()
        };
        // y is this block's own fresh output: the residual add and the ReLU reuse its storage
        b.relu_consume(b.add_consume(y, &identity)?)
    }
}

impl Family for ResNet {
    fn init_trunk<B: Backend>(&self, root: &ParamPath<'_, B>, in_chans: usize) -> Result<()> {
        let k = if self.small_stem { 3 } else { 7 };
        root.sub("conv1")?
            .param("weight", &[64, in_chans, k, k], Init::KaimingNormalFanOut)?;
        nn::init_batch_norm(&root.sub("bn1")?, 64)?;
        let e = self.block.expansion();
        for (s, &n) in self.layers.iter().enumerate() {
            let planes = Self::planes(s);
            for i in 0..n {
                let bp = root.sub(format!("layer{}.{i}", s + 1))?;
                let inp = self.in_planes(s, i);
                let convs: Vec<(usize, usize, usize)> = match self.block {
                    Block::Basic => vec![(inp, planes, 3), (planes, planes, 3)],
                    Block::Bottleneck => vec![
                        (inp, planes, 1),
                        (planes, planes, 3),
                        (planes, planes * e, 1),
                    ],
                };
                for (j, (ci, co, k)) in convs.into_iter().enumerate() {
                    bp.sub(format!("conv{}", j + 1))?.param(
                        "weight",
                        &[co, ci, k, k],
                        Init::KaimingNormalFanOut,
                    )?;
                    nn::init_batch_norm(&bp.sub(format!("bn{}", j + 1))?, co)?;
                }
                if self.has_downsample(s, i) {
                    bp.sub("downsample.0")?.param(
                        "weight",
                        &[planes * e, inp, 1, 1],
                        Init::KaimingNormalFanOut,
                    )?;
                    nn::init_batch_norm(&bp.sub("downsample.1")?, planes * e)?;
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
            channels: 64,
            reduction: r0,
        }];
        let mut red = if self.small_stem { 1 } else { 4 };
        for s in 0..4 {
            if s > 0 {
                red *= 2;
            }
            v.push(StageSpec {
                name: format!("layer{}", s + 1),
                prefixes: vec![format!("layer{}", s + 1)],
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
        ctx: &Ctx<'_>,
    ) -> Result<B::Tensor> {
        let b = p.backend();
        if i == 0 {
            let o = if self.small_stem {
                Conv2dOpts::new().padding(1)
            } else {
                Conv2dOpts::new().stride(2).padding(3)
            };
            let y = nn::conv2d(p, "conv1", x, o)?;
            return b.relu_consume(nn::batch_norm(p, "bn1", &y, ctx, BN_EPS, BN_MOMENTUM)?);
        }
        let s = i - 1;
        let n = *self
            .layers
            .get(s)
            .ok_or_else(|| Error::invalid("resnet", format!("no stage {i}")))?;
        let mut y = if s == 0 && !self.small_stem {
            b.max_pool2d(x, Pool2dOpts::new(3).stride(2).padding(1))?
        } else {
            x.clone()
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
    fn pool<B: Backend>(&self, p: &Params<B>, x: &B::Tensor, _ctx: &Ctx<'_>) -> Result<B::Tensor> {
        avg_pool_flat(p.backend(), x)
    }
}

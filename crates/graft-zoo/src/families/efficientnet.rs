//! EfficientNet (Tan & Le 2019) B0 with torchvision's names: `features.0` stem, `features.1..7`
//! stages of MBConv blocks `features.{s}.{i}.block.{j}` (expand / depthwise / squeeze-excitation
//! `fc1`, `fc2` / project), `features.8` last 1×1 conv, `classifier.1` Linear after dropout.
//! Stochastic depth ("row" mode, rate growing linearly with block index) in train mode. timm's
//! `efficientnet_b0` is the same network; its files (`conv_stem`, `bn1`, `blocks.{s}.{i}.*`,
//! `conv_head`, `bn2`, `classifier`) load through the remap table.

use graft_backend::nn;
use graft_backend::{Backend, Ctx, ParamPath, Params};
use graft_core::name::join;
use graft_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::layers::{
    Act, BnCfg, Gate, conv_bn_act, init_conv_bn, init_squeeze_excite, squeeze_excite,
};
use crate::model::{ClassifierSpec, Family, HeadInit, Side, StageSpec};
use crate::cfg::{Interpolation, PretrainedCfg};
use crate::model::Arch;
use crate::registry::Builtin;

pub(crate) const BN: BnCfg = BnCfg {
    eps: 1e-5,
    momentum: 0.1,
};

/// One stage of MBConv blocks (torchvision's `MBConvConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MbStage {
    pub expand: usize,
    pub kernel: usize,
    pub stride: usize,
    pub input: usize,
    pub out: usize,
    pub layers: usize,
}

/// An EfficientNet's hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EfficientNet {
    pub stages: Vec<MbStage>,
    pub stem: usize,
    pub last_channel: usize,
    pub dropout: f64,
    pub stochastic_depth: f64,
}

const fn st(
    expand: usize,
    kernel: usize,
    stride: usize,
    input: usize,
    out: usize,
    layers: usize,
) -> MbStage {
    MbStage {
        expand,
        kernel,
        stride,
        input,
        out,
        layers,
    }
}

impl EfficientNet {
    /// torchvision's `efficientnet_b0`.
    pub fn b0() -> Self {
        Self {
            stages: vec![
                st(1, 3, 1, 32, 16, 1),
                st(6, 3, 2, 16, 24, 2),
                st(6, 5, 2, 24, 40, 2),
                st(6, 3, 2, 40, 80, 3),
                st(6, 5, 1, 80, 112, 3),
                st(6, 5, 2, 112, 192, 4),
                st(6, 3, 1, 192, 320, 1),
            ],
            stem: 32,
            last_channel: 1280,
            dropout: 0.2,
            stochastic_depth: 0.2,
        }
    }
    fn total_blocks(&self) -> usize {
        self.stages.iter().map(|s| s.layers).sum()
    }
    /// (input, stride) of block `i` of stage `s`.
    fn block_io(&self, s: &MbStage, i: usize) -> (usize, usize) {
        if i == 0 {
            (s.input, s.stride)
        } else {
            (s.out, 1)
        }
    }
}

impl Family for EfficientNet {
    fn batch_norm_eps(&self) -> Option<f64> {
        Some(BN.eps)
    }
    fn is_convnet(&self) -> bool {
        true
    }
    fn set_drop_rates(&mut self, drop_path: Option<f64>, drop: Option<f64>) {
        if let Some(d) = drop {
            self.dropout = d;
        }
        if let Some(d) = drop_path {
            self.stochastic_depth = d;
        }
    }
    fn init_trunk<B: Backend>(&self, root: &ParamPath<'_, B>, in_chans: usize) -> Result<()> {
        init_conv_bn(&root.sub("features.0")?, in_chans, self.stem, 3, 1)?;
        for (si, s) in self.stages.iter().enumerate() {
            for i in 0..s.layers {
                let (inp, _) = self.block_io(s, i);
                let bp = root.sub(format!("features.{}.{i}", si + 1))?;
                let exp = inp * s.expand;
                let mut j = 0;
                if exp != inp {
                    init_conv_bn(&bp.sub("block.0")?, inp, exp, 1, 1)?;
                    j += 1;
                }
                init_conv_bn(&bp.sub(format!("block.{j}"))?, exp, exp, s.kernel, exp)?;
                let se = bp.sub(format!("block.{}", j + 1))?;
                let sq = (inp / 4).max(1);
                init_squeeze_excite(&se, exp, sq)?;
                init_conv_bn(&bp.sub(format!("block.{}", j + 2))?, exp, s.out, 1, 1)?;
            }
        }
        let last_in = self.stages.last().map_or(self.stem, |s| s.out);
        init_conv_bn(
            &root.sub(format!("features.{}", self.stages.len() + 1))?,
            last_in,
            self.last_channel,
            1,
            1,
        )
    }
    fn classifier(&self) -> ClassifierSpec {
        let (dropout, dropout_path) = (self.dropout, "classifier.0");
        ClassifierSpec {
            prefix: "classifier.1",
            init: HeadInit::UniformInvSqrtOut,
            dropout,
            dropout_path,
        }
    }
    fn stage_specs(&self) -> Vec<StageSpec> {
        let mut v = vec![StageSpec {
            name: "stem".into(),
            prefixes: vec!["features.0".into()],
            channels: self.stem,
            reduction: 2,
        }];
        let mut red = 2;
        for (si, s) in self.stages.iter().enumerate() {
            red *= s.stride;
            v.push(StageSpec {
                name: format!("stage{}", si + 1),
                prefixes: vec![format!("features.{}", si + 1)],
                channels: s.out,
                reduction: red,
            });
        }
        v.push(StageSpec {
            name: "conv_last".into(),
            prefixes: vec![format!("features.{}", self.stages.len() + 1)],
            channels: self.last_channel,
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
        let b = p.backend();
        if i == 0 {
            return conv_bn_act(p, "features.0", x, 3, 2, 1, BN, Act::Silu, ctx);
        }
        if i == self.stages.len() + 1 {
            return conv_bn_act(p, &format!("features.{i}"), x, 1, 1, 1, BN, Act::Silu, ctx);
        }
        let s = self
            .stages
            .get(i - 1)
            .ok_or_else(|| Error::invalid("efficientnet", format!("no stage {i}")))?;
        let first: usize = self.stages[..i - 1].iter().map(|s| s.layers).sum();
        let total = self.total_blocks() as f64;
        let mut y = x.clone();
        for k in 0..s.layers {
            let (inp, stride) = self.block_io(s, k);
            let path = format!("features.{i}.{k}");
            let exp = inp * s.expand;
            let mut j = 0;
            let mut z = y.clone();
            if exp != inp {
                z = conv_bn_act(p, &join(&path, "block.0"), &z, 1, 1, 1, BN, Act::Silu, ctx)?;
                j += 1;
            }
            z = conv_bn_act(
                p,
                &join(&path, &format!("block.{j}")),
                &z,
                s.kernel,
                stride,
                exp,
                BN,
                Act::Silu,
                ctx,
            )?;
            z = squeeze_excite(
                p,
                &join(&path, &format!("block.{}", j + 1)),
                crate::layers::SE_FC,
                &z,
                Act::Silu,
                Gate::Sigmoid,
            )?;
            z = conv_bn_act(
                p,
                &join(&path, &format!("block.{}", j + 2)),
                &z,
                1,
                1,
                1,
                BN,
                Act::None,
                ctx,
            )?;
            if stride == 1 && inp == s.out {
                let rate = self.stochastic_depth * (first + k) as f64 / total;
                z = nn::drop_path(b, &z, rate, ctx, &join(&path, "stochastic_depth"))?;
                z = b.add_consume(z, &y)?;
            }
            y = z;
        }
        Ok(y)
    }
    fn remaps(&self) -> Vec<crate::load::Remap> {
        use crate::load::Remap;
        let mut v = vec![
            Remap::prefix("conv_stem", "features.0.0"),
            Remap::prefix("bn1", "features.0.1"),
            Remap::prefix("classifier", "classifier.1"),
        ];
        let last = format!("features.{}", self.stages.len() + 1);
        v.push(Remap::prefix("conv_head", &format!("{last}.0")));
        v.push(Remap::prefix("bn2", &format!("{last}.1")));
        for (si, s) in self.stages.iter().enumerate() {
            for i in 0..s.layers {
                v.extend(crate::layers::timm_block_remaps(
                    &format!("blocks.{si}.{i}"),
                    &format!("features.{}.{i}.block", si + 1),
                    s.expand != 1,
                    true,
                ));
            }
        }
        v
    }
}

/// The built-in EfficientNet (torchvision's B0).
pub(crate) fn builtins() -> Vec<Builtin> {
    vec![Builtin::new(
        "efficientnet_b0",
        Arch::EfficientNet(EfficientNet::b0()),
        PretrainedCfg::torchvision(
            224,
            0.875,
            Interpolation::Bicubic,
            "features.0.0",
            "classifier.1",
        ),
        "torchvision.models.efficientnet_b0 (== timm efficientnet_b0, whose files load through the remap table)",
    )]
}

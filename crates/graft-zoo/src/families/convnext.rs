//! ConvNeXt (Liu et al. 2022) with torchvision's names: `features.0` stem (4×4 conv + LayerNorm2d),
//! `features.{1,3,5,7}.{i}` blocks (`block.0` 7×7 depthwise, `block.2` LayerNorm, `block.3` /
//! `block.5` MLP, `layer_scale` `[C, 1, 1]`), `features.{2,4,6}` downsamples, `classifier.0`
//! LayerNorm2d and `classifier.2` Linear. timm's layout (`stem`, `stages.{s}.blocks.{i}.conv_dw`,
//! `gamma` `[C]`, `head.norm`, `head.fc`) loads through [`ConvNeXt::remaps`], which reshapes
//! `gamma` into `layer_scale`.
//!
//! The switches cover timm's ConvNeXt V1 sizes (atto … xxlarge, the conv-MLP small ones included:
//! a 1×1-conv MLP is this Linear MLP with its weights reshaped on load) and ConvNeXt V2 (Woo et
//! al. 2023: Global Response Normalization in the MLP as `block.grn`, no layer scale). timm's
//! architectures that use them are read off timm's own models (`scripts/gen_archs.py` →
//! `data/archs.json`).

use graft_backend::nn;
use graft_backend::{Backend, Conv2dOpts, Ctx, GeluApprox, Init, ParamPath, Params};
use graft_core::name::join;
use graft_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::layers::{TRUNC_02, init_linear_trunc, layer_norm_2d};
use crate::load::Remap;
use crate::model::{ClassifierSpec, Family, HeadInit, Side, StageSpec};
use crate::cfg::{Interpolation, PretrainedCfg};
use crate::model::Arch;
use crate::registry::Builtin;

fn default_eps() -> f64 {
    1e-6
}

/// A ConvNeXt's hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvNeXt {
    pub depths: [usize; 4],
    pub dims: [usize; 4],
    pub stochastic_depth: f64,
    /// Layer scale's initial value; `None`: no layer scale (ConvNeXt V2).
    pub layer_scale: Option<f64>,
    /// Global Response Normalization after the MLP's activation (ConvNeXt V2).
    #[serde(default)]
    pub grn: bool,
    /// Every LayerNorm's eps (1e-6; timm's convnext_xxlarge: 1e-5).
    #[serde(default = "default_eps")]
    pub norm_eps: f64,
    /// timm's overlapping stem (`*_ols`: `stem_type='overlap'` / `'overlap_tiered'`): two 3×3
    /// stride-2 convs with this many channels between them (no activation), then the LayerNorm,
    /// in place of the 4×4 patchify conv.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap_stem: Option<usize>,
    /// timm's MLP head (`head_hidden_size`, `convnext_large_mlp`): after the pool and norm, a
    /// Linear to this width and GELU (`pre_logits.fc`) before the classifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_hidden: Option<usize>,
}

impl ConvNeXt {
    /// torchvision's `convnext_tiny`.
    pub fn tiny() -> Self {
        Self {
            depths: [3, 3, 9, 3],
            dims: [96, 192, 384, 768],
            stochastic_depth: 0.1,
            layer_scale: Some(1e-6),
            grn: false,
            norm_eps: 1e-6,
            overlap_stem: None,
            head_hidden: None,
        }
    }
    /// GRN (timm's `GlobalResponseNorm`, channels last): `x + bias + weight · x · n` with
    /// `n = ‖x‖₂ over H, W / (its mean over channels + 1e-6)`.
    fn grn<B: Backend>(&self, p: &Params<B>, path: &str, z: &B::Tensor) -> Result<B::Tensor> {
        let b = p.backend();
        let g = b.sqrt(&b.sum(&b.mul(z, z)?, &[1, 2], true)?)?;
        let n = b.div(&g, &b.add_scalar(&b.mean(&g, &[3], true)?, 1e-6)?)?;
        let y = b.mul(&b.mul(z, &n)?, p.get(&join(path, "weight"))?)?;
        b.add(&b.add(z, &y)?, p.get(&join(path, "bias"))?)
    }
    fn check(&self) -> Result<()> {
        if self.dims.contains(&0) || !(self.norm_eps.is_finite() && self.norm_eps > 0.0) {
            return Err(Error::invalid(
                "convnext",
                format!("dims {:?} must be positive and norm_eps {} positive", self.dims, self.norm_eps),
            ));
        }
        Ok(())
    }
}

impl Family for ConvNeXt {
    fn is_convnet(&self) -> bool {
        true
    }
    fn set_drop_rates(&mut self, drop_path: Option<f64>, _drop: Option<f64>) {
        if let Some(d) = drop_path {
            self.stochastic_depth = d;
        }
    }
    fn init_trunk<B: Backend>(&self, root: &ParamPath<'_, B>, in_chans: usize) -> Result<()> {
        self.check()?;
        let conv = |p: &ParamPath<'_, B>, o: usize, i: usize, k: usize| -> Result<()> {
            p.param("weight", &[o, i, k, k], TRUNC_02)?;
            p.param("bias", &[o], Init::Zeros)?;
            Ok(())
        };
        match self.overlap_stem {
            None => {
                conv(&root.sub("features.0.0")?, self.dims[0], in_chans, 4)?;
                nn::init_layer_norm(&root.sub("features.0.1")?, self.dims[0])?;
            }
            Some(mid) => {
                conv(&root.sub("features.0.0")?, mid, in_chans, 3)?;
                conv(&root.sub("features.0.1")?, self.dims[0], mid, 3)?;
                nn::init_layer_norm(&root.sub("features.0.2")?, self.dims[0])?;
            }
        }
        for s in 0..4 {
            let d = self.dims[s];
            if s > 0 {
                let ds = root.sub(format!("features.{}", 2 * s))?;
                nn::init_layer_norm(&ds.sub("0")?, self.dims[s - 1])?;
                conv(&ds.sub("1")?, d, self.dims[s - 1], 2)?;
            }
            for i in 0..self.depths[s] {
                let bp = root.sub(format!("features.{}.{i}", 2 * s + 1))?;
                conv(&bp.sub("block.0")?, d, 1, 7)?;
                nn::init_layer_norm(&bp.sub("block.2")?, d)?;
                init_linear_trunc(&bp.sub("block.3")?, d, 4 * d)?;
                if self.grn {
                    let g = bp.sub("block.grn")?;
                    g.param("weight", &[4 * d], Init::Zeros)?;
                    g.param("bias", &[4 * d], Init::Zeros)?;
                }
                init_linear_trunc(&bp.sub("block.5")?, 4 * d, d)?;
                if let Some(v) = self.layer_scale {
                    bp.param("layer_scale", &[d, 1, 1], Init::Constant(v))?;
                }
            }
        }
        nn::init_layer_norm(&root.sub("classifier.0")?, self.dims[3])?;
        match self.head_hidden {
            Some(h) => {
                let fc = root.sub("pre_logits.fc")?;
                fc.param("weight", &[h, self.dims[3]], TRUNC_02)?;
                fc.param("bias", &[h], Init::Zeros)?;
                Ok(())
            }
            None => Ok(()),
        }
    }
    fn classifier(&self) -> ClassifierSpec {
        let (dropout, dropout_path) = (0.0, "");
        ClassifierSpec {
            prefix: "classifier.2",
            init: HeadInit::TruncNormal02,
            dropout,
            dropout_path,
        }
    }
    fn stage_specs(&self) -> Vec<StageSpec> {
        let mut v = vec![StageSpec {
            name: "stem".into(),
            prefixes: vec!["features.0".into()],
            channels: self.dims[0],
            reduction: 4,
        }];
        for s in 0..4 {
            let mut prefixes = Vec::new();
            if s > 0 {
                prefixes.push(format!("features.{}", 2 * s));
            }
            prefixes.push(format!("features.{}", 2 * s + 1));
            v.push(StageSpec {
                name: format!("stage{}", s + 1),
                prefixes,
                channels: self.dims[s],
                reduction: 4 << s,
            });
        }
        v
    }
    fn head_stage_prefixes(&self) -> Vec<String> {
        vec!["classifier".into(), "pre_logits".into()]
    }
    fn num_features(&self) -> usize {
        self.head_hidden.unwrap_or(self.dims[3])
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
            let Some(_) = self.overlap_stem else {
                let y = nn::conv2d(p, "features.0.0", x, Conv2dOpts::new().stride(4))?;
                return layer_norm_2d(p, "features.0.1", &y, self.norm_eps);
            };
            let o = Conv2dOpts::new().stride(2).padding(1);
            let y = nn::conv2d(p, "features.0.0", x, o)?;
            let y = nn::conv2d(p, "features.0.1", &y, o)?;
            return layer_norm_2d(p, "features.0.2", &y, self.norm_eps);
        }
        let s = i - 1;
        if s >= 4 {
            return Err(Error::invalid("convnext", format!("no stage {i}")));
        }
        let mut y = x.clone();
        if s > 0 {
            let ds = format!("features.{}", 2 * s);
            y = layer_norm_2d(p, &join(&ds, "0"), &y, self.norm_eps)?;
            y = nn::conv2d(p, &join(&ds, "1"), &y, Conv2dOpts::new().stride(2))?;
        }
        let total: usize = self.depths.iter().sum();
        let first: usize = self.depths[..s].iter().sum();
        for k in 0..self.depths[s] {
            let path = format!("features.{}.{k}", 2 * s + 1);
            let z = nn::conv2d(
                p,
                &join(&path, "block.0"),
                &y,
                Conv2dOpts::new().padding(3).groups(self.dims[s]),
            )?;
            let z = b.permute(&z, &[0, 2, 3, 1])?;
            let z = nn::layer_norm(p, &join(&path, "block.2"), &z, self.norm_eps)?;
            let z = nn::linear(p, &join(&path, "block.3"), &z)?;
            let mut z = b.gelu(&z, GeluApprox::Erf)?;
            if self.grn {
                z = self.grn(p, &join(&path, "block.grn"), &z)?;
            }
            let z = nn::linear(p, &join(&path, "block.5"), &z)?;
            let mut z = b.permute(&z, &[0, 3, 1, 2])?;
            if self.layer_scale.is_some() {
                z = b.mul(&z, p.get(&join(&path, "layer_scale"))?)?;
            }
            let rate = if total > 1 {
                self.stochastic_depth * (first + k) as f64 / (total - 1) as f64
            } else {
                0.0
            };
            let z = nn::drop_path(b, &z, rate, ctx, &join(&path, "stochastic_depth"))?;
            y = b.add_consume(z, &y)?;
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
        let y = b.adaptive_avg_pool2d(x, (1, 1))?;
        let y = layer_norm_2d(p, "classifier.0", &y, self.norm_eps)?;
        let y = b.flatten(&y, 1, 3)?;
        match self.head_hidden {
            Some(_) => b.gelu(&nn::linear(p, "pre_logits.fc", &y)?, GeluApprox::Erf),
            None => Ok(y),
        }
    }
    fn remaps(&self) -> Vec<Remap> {
        let mut v = vec![
            Remap::prefix("stem.0", "features.0.0"),
            Remap::prefix("stem.1", "features.0.1"),
            Remap::prefix("stem.2", "features.0.2"),
            Remap::prefix("head.norm", "classifier.0"),
            Remap::prefix("head.pre_logits.fc", "pre_logits.fc"),
            Remap::prefix("head.fc", "classifier.2"),
        ];
        for s in 0..4 {
            if s > 0 {
                v.push(Remap::prefix(
                    &format!("stages.{s}.downsample"),
                    &format!("features.{}", 2 * s),
                ));
            }
            // the conv-MLP ConvNeXts' 1x1 convs `[o, i, 1, 1]` are the Linear weights reshaped
            for (from, to, reshape) in [
                ("conv_dw", "block.0", false),
                ("norm", "block.2", false),
                ("mlp.fc1", "block.3", true),
                ("mlp.grn", "block.grn", false),
                ("mlp.fc2", "block.5", true),
            ] {
                v.push(Remap::regex(
                    &format!(
                        r"^stages\.{s}\.blocks\.(\d+)\.{}\.(weight|bias)$",
                        regex_escape(from)
                    ),
                    &format!("features.{}.$1.{to}.$2", 2 * s + 1),
                    reshape,
                ));
            }
            v.push(Remap::regex(
                &format!(r"^stages\.{s}\.blocks\.(\d+)\.gamma$"),
                &format!("features.{}.$1.layer_scale", 2 * s + 1),
                true,
            ));
        }
        v
    }
}

fn regex_escape(s: &str) -> String {
    s.replace('.', r"\.")
}

/// The built-in ConvNeXts: torchvision's tiny, and every timm ConvNeXt `data/archs.json` lists
/// (read off timm's own models) with its default tag's cfg.
pub(crate) fn builtins() -> Vec<Builtin> {
    let mut v = vec![Builtin::new(
        "convnext_tiny",
        Arch::ConvNeXt(ConvNeXt::tiny()),
        PretrainedCfg::torchvision(
            224,
            224.0 / 236.0,
            Interpolation::Bilinear,
            "features.0.0",
            "classifier.2",
        ),
        "torchvision.models.convnext_tiny (timm convnext_tiny loads through the remap table)",
    )];
    for (name, c) in crate::arch_table::entries::<ConvNeXt>("convnext") {
        let base = PretrainedCfg::imagenet(
            224,
            0.875,
            Interpolation::Bicubic,
            "features.0.0",
            "classifier.2",
            "timm",
        );
        let cfg = crate::arch_table::with_default_tag(&name, base);
        let reference = format!("timm {name} (its layout through the remap table)");
        v.push(Builtin::new(&name, Arch::ConvNeXt(c), cfg, &reference));
    }
    v
}

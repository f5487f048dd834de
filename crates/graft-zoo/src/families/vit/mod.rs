//! Vision Transformer (Dosovitskiy et al. 2020) as timm's configurable `VisionTransformer`
//! builds it (timm `vision_transformer.py`, `deit.py`), with timm's names: `patch_embed.proj`,
//! `cls_token`, `reg_token`, `pos_embed`, `norm_pre`, `blocks.{i}.{norm1, attn.{qkv, q_norm, k_norm,
//! proj}, ls1.gamma, norm2, mlp.{fc1, fc1_g, fc1_x, fc2}, ls2.gamma}`, `norm`, `fc_norm`, `head`.
//!
//! The switches cover the towers transfer starts from: class token or none, DeiT's distillation
//! token (`dist_token`, with its second head `head_dist`: `HeadSpec::Distilled`), register tokens,
//! position embeddings with or without the prefix tokens (DeiT-III, DINOv2 with registers),
//! token or average pooling with `fc_norm`, attention pooling by a learned latent query (`map`:
//! SigLIP's towers, `attn_pool.*`; in `attn_pool.rs`), LayerScale, pre-norm and QuickGELU (CLIP image
//! towers), qk-norm, SwiGLU MLPs packed or split (DINOv2 giant), tanh-GELU and SiLU, any
//! LayerNorm eps. timm's architectures that use them are read off timm's own models
//! (`scripts/gen_archs.py` → `data/archs.json`). A checkpoint whose position embeddings were
//! trained for another grid is resampled on load as timm does (bicubic, antialiased — or bilinear
//! for FlexiViT and RADIO —, prefix tokens kept). timm's `Eva` (`eva.py`: EVA, EVA-02, DINOv3, the RoPE ViTs, Perception
//! Encoder) is the same builder with a few more parts: rotary position embeddings (`rope.rs`),
//! EVA's projections, norms and LayerScale names (`block.rs`).

use graft_backend::nn;
use graft_backend::{Backend, Conv2dOpts, Ctx, DType, Init, ParamPath, Params, TensorData};
use graft_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::layers::TRUNC_02;
use crate::model::{ClassifierSpec, Family, HeadInit, Side, StageSpec};
use crate::cfg::{INCEPTION_MEAN, INCEPTION_STD, Interpolation, PretrainedCfg};
use crate::model::Arch;
use crate::registry::Builtin;
use crate::resample::resample_pos_embed;
pub use crate::resample::PosResample;

mod attn_pool;
mod block;
mod pos_embed;
mod rope;

pub use block::VitQkv;
pub use rope::{RopeGrid, VitRope};

/// How the tokens become one vector (timm's `global_pool`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VitPool {
    /// The class token.
    #[default]
    Token,
    /// The mean of the patch tokens (prefix tokens left out).
    Avg,
    /// Multi-head attention pooling by one learned latent query over every token, then an MLP
    /// (timm's `AttentionPoolLatent`, `global_pool='map'`: SigLIP; Zhai et al. 2023).
    Map,
}

/// The MLP's activation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VitAct {
    /// Exact (erf) GELU.
    #[default]
    Gelu,
    /// tanh-approximated GELU (SigLIP).
    GeluTanh,
    /// `x · sigmoid(1.702 x)` (OpenAI CLIP).
    QuickGelu,
    /// SiLU, the gate of a SwiGLU MLP.
    Silu,
}

/// The MLP's form.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VitMlp {
    /// `fc2(act(fc1(x)))`.
    #[default]
    Mlp,
    /// timm's `SwiGLUPacked`: `fc1` gives both halves, `fc2(act(a) · b)`.
    GluPacked,
    /// timm's `SwiGLU`: `fc2(act(fc1_g(x)) · fc1_x(x))`.
    Swiglu,
}

fn yes() -> bool {
    true
}
fn default_eps() -> f64 {
    1e-6
}

/// A ViT's hyper-parameters. The defaults (serde's too) are the original ViT's: class token,
/// token pooling, final norm, qkv bias, exact GELU, LayerNorm eps 1e-6.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vit {
    pub patch: usize,
    pub dim: usize,
    pub depth: usize,
    pub heads: usize,
    /// The MLP's hidden width (for `glu_packed`, one half of `fc1`'s output).
    #[serde(default)]
    pub mlp_hidden: usize,
    /// Older graft configs gave the width as an integer ratio (with `mlp_hidden` absent); such a
    /// config keeps it when saved again.
    #[serde(default, rename = "mlp_ratio", skip_serializing_if = "Option::is_none")]
    legacy_mlp_ratio: Option<usize>,
    /// Input size `[h, w]` the position embeddings are built for.
    pub img_size: [usize; 2],
    #[serde(default = "yes")]
    pub class_token: bool,
    /// DeiT's distillation token after the class token (Touvron et al. 2021), read by the
    /// distilled head (`head_dist`); the pooled features are the mean of the two tokens.
    #[serde(default, skip_serializing_if = "is_false")]
    pub dist_token: bool,
    /// Register tokens (Darcet et al. 2023) after the class token.
    #[serde(default)]
    pub reg_tokens: usize,
    /// Position embeddings for the patches only; the prefix tokens are concatenated after.
    #[serde(default)]
    pub no_embed_class: bool,
    #[serde(default)]
    pub pool: VitPool,
    /// LayerNorm `norm` over the tokens before pooling.
    #[serde(default = "yes")]
    pub norm: bool,
    /// LayerNorm `fc_norm` over the pooled vector.
    #[serde(default)]
    pub fc_norm: bool,
    /// LayerNorm `norm_pre` before the blocks; the patch embedding then has no bias (CLIP).
    #[serde(default)]
    pub pre_norm: bool,
    #[serde(default = "yes")]
    pub qkv_bias: bool,
    /// LayerNorm over each head's queries and keys.
    #[serde(default)]
    pub qk_norm: bool,
    /// LayerScale (Touvron et al. 2021) with this initial value.
    #[serde(default)]
    pub layer_scale: Option<f64>,
    #[serde(default)]
    pub act: VitAct,
    #[serde(default)]
    pub mlp: VitMlp,
    #[serde(default = "default_eps")]
    pub norm_eps: f64,
    #[serde(default)]
    pub drop_path: f64,
    #[serde(default)]
    pub drop: f64,
    // timm `Eva`'s parts (eva.py), absent from configs that do not use them
    /// A learned position embedding `pos_embed` (RoPE models may have none).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub pos_embed: bool,
    /// Rotary position embeddings on the patch tokens' queries and keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope: Option<VitRope>,
    /// How the queries, keys and values are projected.
    #[serde(default, skip_serializing_if = "is_default")]
    pub qkv: VitQkv,
    /// `split` projections: the key's bias, when it differs from `qkv_bias`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k_bias: Option<bool>,
    /// LayerNorm `attn.norm` over the attention output before `proj`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub attn_norm: bool,
    /// LayerNorm `mlp.norm` over the MLP's hidden activations before `fc2`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub mlp_norm: bool,
    /// LayerScale named `gamma_1` / `gamma_2` (EVA), not `ls1.gamma` / `ls2.gamma`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub ls_gamma: bool,
    /// The attention pool's heads, when not the blocks' (Perception Encoder core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_heads: Option<usize>,
    /// The attention pool's MLP width, when not the blocks'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_mlp_hidden: Option<usize>,
    /// How a checkpoint's position embeddings for another grid are resampled on load.
    #[serde(default, skip_serializing_if = "is_default")]
    pub pos_resample: PosResample,
    /// Any input size (a multiple of the patch): the position embeddings, built for `img_size`,
    /// are resampled to the input's grid at every forward (timm's `dynamic_img_size`; antialiased
    /// bicubic, as timm's `resample_abs_pos_embed`), differentiably.
    #[serde(default, skip_serializing_if = "is_false")]
    pub dynamic_img_size: bool,
}

fn is_true(v: &bool) -> bool {
    *v
}
fn is_false(v: &bool) -> bool {
    !*v
}
fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

impl Vit {
    /// The original ViT at 224² with patch 16 and MLP width 4·dim.
    pub fn new(dim: usize, depth: usize, heads: usize) -> Self {
        Self {
            patch: 16,
            dim,
            depth,
            heads,
            mlp_hidden: 4 * dim,
            legacy_mlp_ratio: None,
            img_size: [224, 224],
            class_token: true,
            dist_token: false,
            reg_tokens: 0,
            no_embed_class: false,
            pool: VitPool::Token,
            norm: true,
            fc_norm: false,
            pre_norm: false,
            qkv_bias: true,
            qk_norm: false,
            layer_scale: None,
            act: VitAct::Gelu,
            mlp: VitMlp::Mlp,
            norm_eps: 1e-6,
            drop_path: 0.0,
            drop: 0.0,
            pos_embed: true,
            rope: None,
            qkv: VitQkv::Fused,
            k_bias: None,
            attn_norm: false,
            mlp_norm: false,
            ls_gamma: false,
            pool_heads: None,
            pool_mlp_hidden: None,
            pos_resample: PosResample::Bicubic,
            dynamic_img_size: false,
        }
    }
    fn hidden(&self) -> usize {
        match (self.mlp_hidden, self.legacy_mlp_ratio) {
            (0, Some(r)) => r * self.dim,
            (0, None) => 4 * self.dim,
            (h, _) => h,
        }
    }
    /// Class, distillation and register tokens before the patches.
    fn prefix_tokens(&self) -> usize {
        usize::from(self.class_token) + usize::from(self.dist_token) + self.reg_tokens
    }
    /// Prefix tokens the position embedding covers.
    fn embedded_prefix(&self) -> usize {
        if self.no_embed_class {
            0
        } else {
            self.prefix_tokens()
        }
    }
    fn grid(&self) -> [usize; 2] {
        [self.img_size[0] / self.patch, self.img_size[1] / self.patch]
    }
    fn pos_len(&self) -> usize {
        let g = self.grid();
        g[0] * g[1] + self.embedded_prefix()
    }
    /// The hyper-parameters make a model (a user's config.json can say anything).
    fn check(&self) -> Result<()> {
        let bad = |why: String| Err(Error::invalid("vit", why));
        if self.patch == 0 || self.dim == 0 || self.depth == 0 || self.heads == 0 {
            return bad("patch, dim, depth and heads must be positive".into());
        }
        if !self.dim.is_multiple_of(self.heads) {
            return bad(format!("dim {} is not a multiple of heads {}", self.dim, self.heads));
        }
        if self.hidden() == 0 {
            return bad("mlp_hidden must be positive".into());
        }
        if self.pool == VitPool::Token && !self.class_token {
            return bad("token pooling needs the class token (class_token = true)".into());
        }
        if self.dist_token && !(self.class_token && self.pool == VitPool::Token) {
            return bad("the distillation token goes with the class token and token pooling".into());
        }
        if !(self.norm_eps.is_finite() && self.norm_eps > 0.0) {
            return bad(format!("norm_eps {} must be positive", self.norm_eps));
        }
        if let Some(v) = self.layer_scale
            && !v.is_finite()
        {
            return bad(format!("layer_scale {v} must be finite"));
        }
        if let Some(r) = &self.rope {
            r.check(self.dim / self.heads)?;
        }
        if self.pool_heads.is_some_and(|h| h == 0 || !self.dim.is_multiple_of(h)) {
            return bad(format!(
                "pool_heads {:?} must divide dim {}",
                self.pool_heads, self.dim
            ));
        }
        if self.pool_mlp_hidden == Some(0) {
            return bad("pool_mlp_hidden must be positive".into());
        }
        if self.k_bias.is_some() && self.qkv != VitQkv::Split {
            return bad("k_bias applies to split q / k / v projections only".into());
        }
        Self::check_size(self.img_size, self.patch)
    }
    /// timm's `PatchEmbed`: the grid is `floor(size / patch)` (a remainder is cut off).
    fn check_size(size: [usize; 2], patch: usize) -> Result<()> {
        if size[0] < patch || size[1] < patch {
            return Err(Error::invalid(
                "vit",
                format!("img_size {size:?} must be at least the patch size {patch}"),
            ));
        }
        Ok(())
    }
    fn resize_grid(&mut self, size: [usize; 2]) -> Result<()> {
        Self::check_size(size, self.patch)?;
        self.img_size = size;
        Ok(())
    }
    fn ln<B: Backend>(&self, p: &Params<B>, path: &str, x: &B::Tensor) -> Result<B::Tensor> {
        nn::layer_norm(p, path, x, self.norm_eps)
    }
    /// Patches to tokens: embedding, prefix tokens, position embedding, dropout, pre-norm.
    fn embed<B: Backend>(&self, p: &Params<B>, x: &B::Tensor) -> Result<B::Tensor> {
        let b = p.backend();
        let s = b.shape(x);
        let grid = self.input_grid(&s)?;
        let y = nn::conv2d(p, "patch_embed.proj", x, Conv2dOpts::new().stride(self.patch))?;
        let n = s[0];
        let mut y = b.transpose(&b.flatten(&y, 2, 3)?, 1, 2)?;
        let mut prefix = Vec::new();
        let dtype = b.dtype(&y);
        for (name, len) in [
            ("cls_token", usize::from(self.class_token)),
            ("dist_token", usize::from(self.dist_token)),
            ("reg_token", self.reg_tokens),
        ] {
            if len > 0 {
                prefix.push(b.add(&b.zeros(&[n, len, self.dim], dtype)?, p.get(name)?)?);
            }
        }
        let cat = |y: B::Tensor| -> Result<B::Tensor> {
            if prefix.is_empty() {
                return Ok(y);
            }
            let mut parts: Vec<&B::Tensor> = prefix.iter().collect();
            parts.push(&y);
            b.cat(&parts, 1)
        };
        let pos = |y: B::Tensor| match self.pos_embed {
            true => b.add(&y, &self.pos_embed_for(p, grid)?),
            false => Ok(y),
        };
        if self.no_embed_class {
            y = cat(pos(y)?)?;
        } else {
            y = pos(cat(y)?)?;
        }
        // timm's pos_drop has its own rate (0 in every timm config), not the head's dropout
        if self.pre_norm {
            self.ln(p, "norm_pre", &y)
        } else {
            Ok(y)
        }
    }
}

impl Family for Vit {
    fn side<B: Backend>(&self, p: &Params<B>, x: &B::Tensor, dtype: DType) -> Result<Side<B>> {
        let b = p.backend();
        let s = b.shape(x);
        let grid = [s[2] / self.patch, s[3] / self.patch];
        let dynamic = self.dynamic_img_size.then_some(grid);
        let Some(r) = &self.rope else {
            return Ok(Side {
                grid: dynamic,
                ..Side::default()
            });
        };
        let [sin, cos] = r.tables(grid, self.dim / self.heads)?;
        let up = |t: &TensorData| b.cast(&b.from_data(t)?, dtype);
        Ok(Side {
            rope: Some([up(&sin)?, up(&cos)?]),
            grid: dynamic,
            ..Side::default()
        })
    }
    fn img_size(&self) -> Option<[usize; 2]> {
        Some(self.img_size)
    }
    fn set_img_size(&mut self, size: [usize; 2]) -> Result<()> {
        self.resize_grid(size)
    }
    fn set_dynamic_img_size(&mut self) -> Result<()> {
        self.dynamic_img_size = true;
        Ok(())
    }
    fn set_drop_rates(&mut self, drop_path: Option<f64>, drop: Option<f64>) {
        if let Some(d) = drop_path {
            self.drop_path = d;
        }
        if let Some(d) = drop {
            self.drop = d;
        }
    }
    fn no_weight_decay(&self) -> Vec<String> {
        ["pos_embed", "cls_token", "dist_token", "reg_token"]
            .map(String::from)
            .to_vec()
    }
    fn init_trunk<B: Backend>(&self, root: &ParamPath<'_, B>, in_chans: usize) -> Result<()> {
        self.check()?;
        let d = self.dim;
        let pe = root.sub("patch_embed.proj")?;
        nn::init_conv2d(&pe, in_chans, d, (self.patch, self.patch), 1, !self.pre_norm)?;
        let tiny = Init::Normal {
            mean: 0.0,
            std: 1e-6,
        };
        if self.class_token {
            root.param("cls_token", &[1, 1, d], tiny)?;
        }
        if self.dist_token {
            // timm's DeiT draws it from trunc_normal(0.02)
            root.param("dist_token", &[1, 1, d], TRUNC_02)?;
        }
        if self.reg_tokens > 0 {
            root.param("reg_token", &[1, self.reg_tokens, d], tiny)?;
        }
        if self.pos_embed {
            root.param("pos_embed", &[1, self.pos_len(), d], TRUNC_02)?;
        }
        if self.pre_norm {
            nn::init_layer_norm(&root.sub("norm_pre")?, d)?;
        }
        for i in 0..self.depth {
            self.init_block(&root.sub(format!("blocks.{i}"))?)?;
        }
        if self.norm {
            nn::init_layer_norm(&root.sub("norm")?, d)?;
        }
        if self.fc_norm {
            nn::init_layer_norm(&root.sub("fc_norm")?, d)?;
        }
        if self.pool == VitPool::Map {
            self.init_attn_pool(&root.sub("attn_pool")?)?;
        }
        Ok(())
    }
    fn classifier(&self) -> ClassifierSpec {
        ClassifierSpec {
            prefix: "head",
            init: HeadInit::TruncNormal02,
            dropout: self.drop,
            dropout_path: "head_drop",
        }
    }
    fn stage_specs(&self) -> Vec<StageSpec> {
        let embed = [
            "patch_embed",
            "cls_token",
            "dist_token",
            "reg_token",
            "pos_embed",
            "norm_pre",
        ];
        let mut v = vec![StageSpec {
            name: "embed".into(),
            prefixes: embed.iter().map(|s| s.to_string()).collect(),
            channels: self.dim,
            reduction: self.patch,
        }];
        for i in 0..self.depth {
            v.push(StageSpec {
                name: format!("blocks.{i}"),
                prefixes: vec![format!("blocks.{i}")],
                channels: self.dim,
                reduction: self.patch,
            });
        }
        v
    }
    fn head_stage_prefixes(&self) -> Vec<String> {
        vec![
            "norm".into(),
            "attn_pool".into(),
            "fc_norm".into(),
            "head".into(),
            "head_dist".into(),
        ]
    }
    fn num_features(&self) -> usize {
        self.dim
    }
    fn forward_stage<B: Backend>(
        &self,
        p: &Params<B>,
        i: usize,
        x: &B::Tensor,
        side: &Side<B>,
        ctx: &Ctx<'_>,
    ) -> Result<B::Tensor> {
        if i == 0 {
            return self.embed(p, x);
        }
        if i > self.depth {
            return Err(Error::invalid("vit", format!("no stage {i}")));
        }
        let rate = if self.depth > 1 {
            self.drop_path * (i - 1) as f64 / (self.depth - 1) as f64
        } else {
            0.0
        };
        let rope = side.rope.as_ref();
        self.block(p, &format!("blocks.{}", i - 1), x, rope, rate, ctx)
    }
    fn finish_features<B: Backend>(&self, p: &Params<B>, x: &B::Tensor) -> Result<B::Tensor> {
        if self.norm {
            self.ln(p, "norm", x)
        } else {
            Ok(x.clone())
        }
    }
    fn stage_output<B: Backend>(
        &self,
        b: &B,
        _i: usize,
        x: &B::Tensor,
        side: &Side<B>,
    ) -> Result<B::Tensor> {
        let s = b.shape(x);
        let (g, k) = (side.grid.unwrap_or(self.grid()), self.prefix_tokens());
        let y = b.narrow(x, 1, k, s[1] - k)?;
        let y = b.reshape(&y, &[s[0], g[0], g[1], s[2]])?;
        b.permute(&y, &[0, 3, 1, 2])
    }
    fn pool<B: Backend>(
        &self,
        p: &Params<B>,
        x: &B::Tensor,
        _side: &Side<B>,
        _ctx: &Ctx<'_>,
    ) -> Result<B::Tensor> {
        let b = p.backend();
        let s = b.shape(x);
        let y = match self.pool {
            VitPool::Token if self.dist_token => {
                // timm's DeiT pre-logits: the mean of the class and distillation tokens
                let [cls, dist] = self.distilled_tokens(b, x)?;
                b.mul_scalar(&b.add(&cls, &dist)?, 0.5)?
            }
            VitPool::Token => b.reshape(&b.narrow(x, 1, 0, 1)?, &[s[0], s[2]])?,
            VitPool::Avg => {
                let k = self.prefix_tokens();
                b.mean(&b.narrow(x, 1, k, s[1] - k)?, &[1], false)?
            }
            VitPool::Map => self.attn_pool(p, "attn_pool", x)?,
        };
        if self.fc_norm {
            self.ln(p, "fc_norm", &y)
        } else {
            Ok(y)
        }
    }
    fn global_pool_name(&self) -> &'static str {
        match self.pool {
            VitPool::Token => "token",
            VitPool::Avg => "avg",
            VitPool::Map => "map",
        }
    }
    fn dist_head_prefix(&self) -> Option<&'static str> {
        self.dist_token.then_some("head_dist")
    }
    fn distilled_tokens<B: Backend>(&self, b: &B, x: &B::Tensor) -> Result<[B::Tensor; 2]> {
        if !self.dist_token {
            return Err(Error::invalid("vit", "no distillation token"));
        }
        let s = b.shape(x);
        let token = |i: usize| b.reshape(&b.narrow(x, 1, i, 1)?, &[s[0], s[2]]);
        Ok([token(0)?, token(1)?])
    }
    fn adapt_tensor(
        &self,
        name: &str,
        data: &TensorData,
        want: &[usize],
    ) -> Option<Result<TensorData>> {
        if name != "pos_embed" {
            return None;
        }
        let have = data.shape().to_vec();
        let prefix = self.embedded_prefix();
        if have.len() != 3 || want.len() != 3 || have[0] != 1 || have[2] != want[2] || have[1] <= prefix
        {
            return None;
        }
        let old = have[1] - prefix;
        let side = (old as f64).sqrt().round() as usize;
        if side * side != old {
            return Some(Err(Error::shape(
                "pos_embed",
                format!("{old} patch positions are not a square grid"),
            )));
        }
        Some(resample_pos_embed(
            self.pos_resample,
            data,
            prefix,
            side,
            self.grid(),
            want[2],
        ))
    }
}

/// The built-in ViTs: every timm architecture `data/archs.json` lists (read off timm's own
/// models), each with its default tag's input size, crop, normalisation and classes.
pub(crate) fn builtins() -> Vec<Builtin> {
    crate::arch_table::entries::<Vit>("vit")
        .into_iter()
        .map(|(name, vit)| {
            let base = PretrainedCfg {
                mean: INCEPTION_MEAN,
                std: INCEPTION_STD,
                ..PretrainedCfg::imagenet(
                    vit.img_size[0],
                    0.9,
                    Interpolation::Bicubic,
                    "patch_embed.proj",
                    "head",
                    "timm",
                )
            };
            let cfg = crate::arch_table::with_default_tag(&name, base);
            Builtin::new(&name, Arch::Vit(vit), cfg, &format!("timm {name}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config written before `mlp_hidden` existed builds the same MLP, and saved again it
    /// still does.
    #[test]
    fn an_older_configs_mlp_ratio_survives_a_save() {
        let old = r#"{"patch": 16, "dim": 64, "depth": 1, "heads": 4, "mlp_ratio": 2,
            "img_size": [32, 32], "drop_path": 0.0, "drop": 0.0}"#;
        let v: Vit = serde_json::from_str(old).expect("old config");
        assert_eq!(v.hidden(), 128);
        let again: Vit =
            serde_json::from_str(&serde_json::to_string(&v).expect("save")).expect("read back");
        assert_eq!(again.hidden(), 128);
        assert_eq!(again, v);
        let new: Vit = serde_json::from_str(&serde_json::to_string(&Vit::new(64, 1, 4)).expect("save"))
            .expect("read back");
        assert_eq!(new.hidden(), 256);
    }
}

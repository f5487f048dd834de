//! Vision Transformer (Dosovitskiy et al. 2020) with timm's names: `patch_embed.proj`,
//! `cls_token`, `pos_embed`, `blocks.{i}.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}`,
//! `norm`, `head`. Token pooling, pre-norm blocks, LayerNorm eps 1e-6, exact GELU. A checkpoint
//! whose position embeddings were trained for another grid is resampled on load as timm does
//! (bicubic, antialiased, prefix tokens kept).

use graft_backend::nn;
use graft_backend::{Backend, Conv2dOpts, Ctx, GeluApprox, Init, ParamPath, Params, TensorData};
use graft_core::name::join;
use graft_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::layers::{TRUNC_02, init_linear_trunc};
use crate::model::{ClassifierSpec, Family, HeadInit, StageSpec};
use crate::resample::resample_bicubic_aa;

const LN_EPS: f64 = 1e-6;

/// A ViT's hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vit {
    pub patch: usize,
    pub dim: usize,
    pub depth: usize,
    pub heads: usize,
    pub mlp_ratio: usize,
    /// Input size `[h, w]` the position embeddings are built for.
    pub img_size: [usize; 2],
    pub drop_path: f64,
    pub drop: f64,
}

impl Vit {
    pub fn new(dim: usize, depth: usize, heads: usize) -> Self {
        Self {
            patch: 16,
            dim,
            depth,
            heads,
            mlp_ratio: 4,
            img_size: [224, 224],
            drop_path: 0.0,
            drop: 0.0,
        }
    }
    fn grid(&self) -> [usize; 2] {
        [self.img_size[0] / self.patch, self.img_size[1] / self.patch]
    }
    fn num_tokens(&self) -> usize {
        let g = self.grid();
        g[0] * g[1] + 1
    }
    pub(crate) fn set_img_size(&mut self, size: [usize; 2]) -> Result<()> {
        if !size[0].is_multiple_of(self.patch)
            || !size[1].is_multiple_of(self.patch)
            || size[0] == 0
            || size[1] == 0
        {
            return Err(Error::invalid(
                "vit",
                format!(
                    "img_size {size:?} must be a positive multiple of the patch size {}",
                    self.patch
                ),
            ));
        }
        self.img_size = size;
        Ok(())
    }
    fn block<B: Backend>(
        &self,
        p: &Params<B>,
        path: &str,
        x: &B::Tensor,
        rate: f64,
        ctx: &Ctx<'_>,
    ) -> Result<B::Tensor> {
        let b = p.backend();
        let s = b.shape(x);
        let (n, t, d) = (s[0], s[1], s[2]);
        let h = self.heads;
        let hd = d / h;
        let y = nn::layer_norm(p, &join(path, "norm1"), x, LN_EPS)?;
        let qkv = nn::linear(p, &join(path, "attn.qkv"), &y)?;
        let qkv = b.permute(&b.reshape(&qkv, &[n, t, 3, h, hd])?, &[2, 0, 3, 1, 4])?;
        let q = b.reshape(&b.narrow(&qkv, 0, 0, 1)?, &[n, h, t, hd])?;
        let k = b.reshape(&b.narrow(&qkv, 0, 1, 1)?, &[n, h, t, hd])?;
        let v = b.reshape(&b.narrow(&qkv, 0, 2, 1)?, &[n, h, t, hd])?;
        let a = b.scaled_dot_product_attention(&q, &k, &v, None, None)?;
        let a = b.reshape(&b.transpose(&a, 1, 2)?, &[n, t, d])?;
        let a = nn::linear(p, &join(path, "attn.proj"), &a)?;
        let a = nn::drop_path(b, &a, rate, ctx, &join(path, "drop_path1"))?;
        let x = b.add(x, &a)?;
        let y = nn::layer_norm(p, &join(path, "norm2"), &x, LN_EPS)?;
        let y = b.gelu(&nn::linear(p, &join(path, "mlp.fc1"), &y)?, GeluApprox::Erf)?;
        let y = nn::linear(p, &join(path, "mlp.fc2"), &y)?;
        let y = nn::drop_path(b, &y, rate, ctx, &join(path, "drop_path2"))?;
        b.add(&x, &y)
    }
}

impl Family for Vit {
    fn init_trunk<B: Backend>(&self, root: &ParamPath<'_, B>, in_chans: usize) -> Result<()> {
        let d = self.dim;
        let pe = root.sub("patch_embed.proj")?;
        nn::init_conv2d(&pe, in_chans, d, (self.patch, self.patch), 1, true)?;
        root.param(
            "cls_token",
            &[1, 1, d],
            Init::Normal {
                mean: 0.0,
                std: 1e-6,
            },
        )?;
        root.param("pos_embed", &[1, self.num_tokens(), d], TRUNC_02)?;
        for i in 0..self.depth {
            let bp = root.sub(format!("blocks.{i}"))?;
            nn::init_layer_norm(&bp.sub("norm1")?, d)?;
            init_linear_trunc(&bp.sub("attn.qkv")?, d, 3 * d)?;
            init_linear_trunc(&bp.sub("attn.proj")?, d, d)?;
            nn::init_layer_norm(&bp.sub("norm2")?, d)?;
            init_linear_trunc(&bp.sub("mlp.fc1")?, d, self.mlp_ratio * d)?;
            init_linear_trunc(&bp.sub("mlp.fc2")?, self.mlp_ratio * d, d)?;
        }
        nn::init_layer_norm(&root.sub("norm")?, d)
    }
    fn classifier(&self) -> ClassifierSpec {
        let (dropout, dropout_path) = (self.drop, "head_drop");
        ClassifierSpec {
            prefix: "head",
            init: HeadInit::TruncNormal02,
            dropout,
            dropout_path,
        }
    }
    fn stage_specs(&self) -> Vec<StageSpec> {
        let mut v = vec![StageSpec {
            name: "embed".into(),
            prefixes: vec!["patch_embed".into(), "cls_token".into(), "pos_embed".into()],
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
        vec!["norm".into(), "head".into()]
    }
    fn num_features(&self) -> usize {
        self.dim
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
            let s = b.shape(x);
            if s[2] != self.img_size[0] || s[3] != self.img_size[1] {
                return Err(Error::shape(
                    "vit",
                    format!(
                        "input {}x{} but the model is built for {}x{} (create it with img_size to resample the position embeddings)",
                        s[2], s[3], self.img_size[0], self.img_size[1]
                    ),
                ));
            }
            let y = nn::conv2d(
                p,
                "patch_embed.proj",
                x,
                Conv2dOpts::new().stride(self.patch),
            )?;
            let n = s[0];
            let y = b.transpose(&b.flatten(&y, 2, 3)?, 1, 2)?;
            let cls = p.get("cls_token")?;
            let cls = b.add(&b.zeros(&[n, 1, self.dim], b.dtype(&y))?, cls)?;
            let y = b.cat(&[&cls, &y], 1)?;
            let y = b.add(&y, p.get("pos_embed")?)?;
            return nn::dropout(b, &y, self.drop, ctx, "pos_drop");
        }
        if i > self.depth {
            return Err(Error::invalid("vit", format!("no stage {i}")));
        }
        let rate = if self.depth > 1 {
            self.drop_path * (i - 1) as f64 / (self.depth - 1) as f64
        } else {
            0.0
        };
        self.block(p, &format!("blocks.{}", i - 1), x, rate, ctx)
    }
    fn finish_features<B: Backend>(&self, p: &Params<B>, x: &B::Tensor) -> Result<B::Tensor> {
        nn::layer_norm(p, "norm", x, LN_EPS)
    }
    fn stage_output<B: Backend>(&self, b: &B, _i: usize, x: &B::Tensor) -> Result<B::Tensor> {
        let s = b.shape(x);
        let g = self.grid();
        let y = b.narrow(x, 1, 1, s[1] - 1)?;
        let y = b.reshape(&y, &[s[0], g[0], g[1], s[2]])?;
        b.permute(&y, &[0, 3, 1, 2])
    }
    fn pool<B: Backend>(&self, p: &Params<B>, x: &B::Tensor, _ctx: &Ctx<'_>) -> Result<B::Tensor> {
        let b = p.backend();
        let s = b.shape(x);
        b.reshape(&b.narrow(x, 1, 0, 1)?, &[s[0], s[2]])
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
        if have.len() != 3 || want.len() != 3 || have[0] != 1 || have[2] != want[2] || have[1] < 2 {
            return None;
        }
        let old = have[1] - 1;
        let side = (old as f64).sqrt().round() as usize;
        if side * side != old {
            return Some(Err(Error::shape(
                "pos_embed",
                format!("{old} patch positions are not a square grid"),
            )));
        }
        let g = self.grid();
        Some(resample_pos_embed(data, side, g, want[2]))
    }
}

/// timm's `resample_abs_pos_embed`: keeps the class token, resamples the `side × side` grid to
/// `grid` with antialiased bicubic interpolation.
fn resample_pos_embed(
    data: &TensorData,
    side: usize,
    grid: [usize; 2],
    dim: usize,
) -> Result<TensorData> {
    let v = data.to_f32();
    let flat: Vec<f32> = v.iter().copied().collect();
    let (prefix, rest) = flat.split_at(dim);
    // rest is [side*side, dim] (HWC); resample each channel.
    let mut chw = vec![0f32; dim * side * side];
    for pos in 0..side * side {
        for c in 0..dim {
            chw[c * side * side + pos] = rest[pos * dim + c];
        }
    }
    let out = resample_bicubic_aa(&chw, dim, [side, side], grid);
    let n = grid[0] * grid[1];
    let mut res = Vec::with_capacity((n + 1) * dim);
    res.extend_from_slice(prefix);
    for pos in 0..n {
        for c in 0..dim {
            res.push(out[c * n + pos]);
        }
    }
    TensorData::f32(&[1, n + 1, dim], res).map(|t| t.cast(data.dtype()))
}

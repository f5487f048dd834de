//! Swin Transformer (Liu et al. 2021, "Swin Transformer: Hierarchical Vision Transformer using
//! Shifted Windows") and its V2 (Liu et al. 2022) as timm builds them (`swin_transformer.py`,
//! `swin_transformer_v2.py`), with timm's names:
//! `patch_embed.{proj, norm}`, stages `layers.{i}` of `downsample.{norm, reduction}` (patch
//! merging: 2×2 neighbours concatenated, LayerNorm, a bias-less Linear to twice the width;
//! stages after the first) and `blocks.{j}.{norm1, attn.{qkv, relative_position_bias_table,
//! proj}, norm2, mlp.{fc1, fc2}}`, then `norm` and `head.fc`.
//!
//! Activations stay channels-last (`[N, H, W, C]`) as timm's do. A block attends within windows
//! of the stage's size — every other block with the windows shifted by half a window (a cyclic
//! roll, the wrapped-around regions masked apart with −100) — with a learned bias per relative
//! position and head; a map not a multiple of the window is zero-padded at the bottom / right.
//! As in timm, a stage whose map is no larger than its window uses one window the map's size and
//! no shift, so the parameters' shapes follow the input size the model is built for
//! (`img_size`), and the input must have that size.

use graft_backend::nn;
use graft_backend::{Backend, Conv2dOpts, Ctx, Init, ParamPath, Params, TensorData};
use graft_core::name::join;
use graft_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::cfg::{Interpolation, PretrainedCfg};
use crate::layers::{TRUNC_02, init_linear_trunc, init_linear_trunc_with};
use crate::model::Arch;
use crate::model::{ClassifierSpec, Family, HeadInit, Side, StageSpec};
use crate::registry::Builtin;

fn default_eps() -> f64 {
    1e-5
}

/// A Swin Transformer's hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Swin {
    pub patch: usize,
    /// The first stage's width; each later stage doubles it.
    pub embed_dim: usize,
    pub depths: Vec<usize>,
    pub heads: Vec<usize>,
    /// Each stage's window (square), before it is cut to a smaller map.
    pub windows: Vec<usize>,
    /// MLP width / block width.
    pub mlp_ratio: f64,
    /// Input size `[h, w]` the windows and relative-position tables are built for.
    pub img_size: [usize; 2],
    #[serde(default = "yes")]
    pub qkv_bias: bool,
    #[serde(default = "default_eps")]
    pub norm_eps: f64,
    #[serde(default)]
    pub drop_path: f64,
    #[serde(default)]
    pub drop: f64,
    /// Swin V2 (Liu et al. 2022, "Swin Transformer V2"): cosine attention with a learned
    /// per-head temperature (`logit_scale`), the relative-position bias from a small MLP over
    /// log-spaced offsets (`cpb_mlp`), `q_bias` / `v_bias`, the norms after the attention and
    /// the MLP (res-post-norm), patch merging's norm after its reduction.
    #[serde(default, skip_serializing_if = "is_false")]
    pub v2: bool,
    /// V2: each stage's pretraining window the offsets are normalised by (0: its own window).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pretrained_windows: Vec<usize>,
}

fn is_false(v: &bool) -> bool {
    !*v
}

fn yes() -> bool {
    true
}

/// Where one stage's blocks attend: the map's size, the window and the shift of odd blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StageGeom {
    res: [usize; 2],
    window: [usize; 2],
    shift: [usize; 2],
}

impl Swin {
    fn width(&self, stage: usize) -> usize {
        self.embed_dim << stage
    }
    fn hidden(&self, stage: usize) -> usize {
        (self.width(stage) as f64 * self.mlp_ratio) as usize
    }
    fn check(&self) -> Result<()> {
        let bad = |why: String| Err(Error::invalid("swin", why));
        let n = self.depths.len();
        if n == 0 || self.heads.len() != n || self.windows.len() != n {
            return bad(format!(
                "depths, heads and windows need one entry per stage (got {}, {}, {})",
                n,
                self.heads.len(),
                self.windows.len()
            ));
        }
        if self.patch == 0 || self.embed_dim == 0 || self.windows.contains(&0) {
            return bad("patch, embed_dim and windows must be positive".into());
        }
        for (i, &h) in self.heads.iter().enumerate() {
            if h == 0 || !self.width(i).is_multiple_of(h) {
                return bad(format!("stage {i}: width {} not divisible by {h} heads", self.width(i)));
            }
        }
        if !self.pretrained_windows.is_empty() && (!self.v2 || self.pretrained_windows.len() != n) {
            return bad("pretrained_windows: one per stage, for a V2 model".into());
        }
        if !(self.mlp_ratio > 0.0 && self.norm_eps > 0.0) {
            return bad("mlp_ratio and norm_eps must be positive".into());
        }
        if self.img_size[0] < self.patch || self.img_size[1] < self.patch {
            return bad(format!(
                "img_size {:?} must be at least the patch {}",
                self.img_size, self.patch
            ));
        }
        Ok(())
    }
    /// timm's `_calc_window_shift` for each stage at `img_size`.
    fn geometry(&self) -> Vec<StageGeom> {
        let mut res = [self.img_size[0] / self.patch, self.img_size[1] / self.patch];
        (0..self.depths.len())
            .map(|i| {
                if i > 0 {
                    res = [res[0].div_ceil(2), res[1].div_ceil(2)];
                }
                let w = self.windows[i];
                let window = [res[0].min(w), res[1].min(w)];
                let shift = [0, 1].map(|d| if res[d] <= window[d] { 0 } else { w / 2 });
                StageGeom { res, window, shift }
            })
            .collect()
    }
    fn ln<B: Backend>(&self, p: &Params<B>, path: &str, x: &B::Tensor) -> Result<B::Tensor> {
        nn::layer_norm(p, path, x, self.norm_eps)
    }
    /// timm's `get_relative_position_index`: for each pair of a window's tokens, the row of the
    /// bias table for their offset.
    fn relative_index(window: [usize; 2]) -> Vec<i64> {
        let [h, w] = window.map(|v| v as i64);
        let coords: Vec<(i64, i64)> = (0..h).flat_map(|y| (0..w).map(move |x| (y, x))).collect();
        let mut idx = Vec::with_capacity(coords.len() * coords.len());
        for &(y1, x1) in &coords {
            for &(y2, x2) in &coords {
                idx.push((y1 - y2 + h - 1) * (2 * w - 1) + (x1 - x2 + w - 1));
            }
        }
        idx
    }
    /// timm's shifted-window mask, `[windows, N, N]`: 0 within a region, −100 across.
    fn shift_mask(g: &StageGeom) -> Result<TensorData> {
        let [wh, ww] = g.window;
        let [hp, wp] = [g.res[0].div_ceil(wh) * wh, g.res[1].div_ceil(ww) * ww];
        let region = |i: usize, size: usize, win: usize, shift: usize| -> usize {
            if i < size - win {
                0
            } else if i < size - shift {
                1
            } else {
                2
            }
        };
        let label = |y: usize, x: usize| {
            region(y, hp, wh, g.shift[0]) * 3 + region(x, wp, ww, g.shift[1])
        };
        let (nh, nw, n) = (hp / wh, wp / ww, wh * ww);
        let mut data = Vec::with_capacity(nh * nw * n * n);
        for a in 0..nh {
            for c in 0..nw {
                let labels: Vec<usize> = (0..n)
                    .map(|t| label(a * wh + t / ww, c * ww + t % ww))
                    .collect();
                for &i in &labels {
                    for &j in &labels {
                        data.push(if i == j { 0.0 } else { -100.0 });
                    }
                }
            }
        }
        TensorData::f32(&[nh * nw, n, n], data)
    }
    /// `[N, H, W, C]` → windows `[N · windows, wh · ww, C]`.
    fn partition<B: Backend>(b: &B, x: &B::Tensor, w: [usize; 2]) -> Result<B::Tensor> {
        let s = b.shape(x);
        let (n, h, wd, c) = (s[0], s[1], s[2], s[3]);
        let y = b.reshape(x, &[n, h / w[0], w[0], wd / w[1], w[1], c])?;
        let y = b.permute(&y, &[0, 1, 3, 2, 4, 5])?;
        b.reshape(&y, &[n * (h / w[0]) * (wd / w[1]), w[0] * w[1], c])
    }
    /// The inverse of [`Self::partition`] for an `[n, h, wd, c]` map.
    fn unpartition<B: Backend>(
        b: &B,
        x: &B::Tensor,
        w: [usize; 2],
        [n, h, wd, c]: [usize; 4],
    ) -> Result<B::Tensor> {
        let y = b.reshape(x, &[n, h / w[0], wd / w[1], w[0], w[1], c])?;
        let y = b.permute(&y, &[0, 1, 3, 2, 4, 5])?;
        b.reshape(&y, &[n, h, wd, c])
    }
    /// `torch.roll` of `x` by `-by` along `dim` (`by` < the size).
    fn roll_back<B: Backend>(b: &B, x: &B::Tensor, dim: usize, by: usize) -> Result<B::Tensor> {
        let size = b.shape(x)[dim];
        if by == 0 {
            return Ok(x.clone());
        }
        b.cat(&[&b.narrow(x, dim, by, size - by)?, &b.narrow(x, dim, 0, by)?], dim)
    }
    /// Zero rows / columns appended to reach `[h, w]`.
    fn pad<B: Backend>(b: &B, x: &B::Tensor, h: usize, w: usize) -> Result<B::Tensor> {
        let s = b.shape(x);
        let mut y = x.clone();
        if h > s[1] {
            let z = b.zeros(&[s[0], h - s[1], s[2], s[3]], b.dtype(x))?;
            y = b.cat(&[&y, &z], 1)?;
        }
        if w > s[2] {
            let z = b.zeros(&[s[0], h, w - s[2], s[3]], b.dtype(x))?;
            y = b.cat(&[&y, &z], 2)?;
        }
        Ok(y)
    }
    /// Window attention of a block on its normed input `[N, H, W, C]`.
    #[allow(clippy::too_many_arguments)]
    fn window_attention<B: Backend>(
        &self,
        p: &Params<B>,
        path: &str,
        x: &B::Tensor,
        g: &StageGeom,
        stage: usize,
        shifted: bool,
        heads: usize,
    ) -> Result<B::Tensor> {
        let b = p.backend();
        let s = b.shape(x);
        let (n, h, w, c) = (s[0], s[1], s[2], s[3]);
        let shift = if shifted { g.shift } else { [0, 0] };
        let mut y = Self::roll_back(b, x, 1, shift[0])?;
        y = Self::roll_back(b, &y, 2, shift[1])?;
        let [wh, ww] = g.window;
        let (hp, wp) = (h.div_ceil(wh) * wh, w.div_ceil(ww) * ww);
        let y = Self::pad(b, &y, hp, wp)?;
        let win = Self::partition(b, &y, g.window)?;
        let (bw, t) = (b.shape(&win)[0], wh * ww);
        let hd = c / heads;
        let qkv = if self.v2 && self.qkv_bias {
            let q = p.get(&join(path, "q_bias"))?;
            let k = b.zeros(&[c], b.dtype(q))?;
            let bias = b.cat(&[q, &k, p.get(&join(path, "v_bias"))?], 0)?;
            b.linear(&win, p.get(&join(path, "qkv.weight"))?, Some(&bias))?
        } else {
            nn::linear(p, &join(path, "qkv"), &win)?
        };
        let qkv = b.permute(&b.reshape(&qkv, &[bw, t, 3, heads, hd])?, &[2, 0, 3, 1, 4])?;
        let part = |i: usize| b.reshape(&b.narrow(&qkv, 0, i, 1)?, &[bw, heads, t, hd]);
        // the relative-position bias [1, heads, t, t], plus the shift mask per window
        let index = b.from_data(&TensorData::i64(&[t * t], Self::relative_index(g.window))?)?;
        let table = if self.v2 {
            self.v2_bias_table(p, path, g, stage, heads)?
        } else {
            p.get(&join(path, "relative_position_bias_table"))?.clone()
        };
        let bias = b.index_select(&table, 0, &index)?;
        let bias = b.reshape(&b.permute(&b.reshape(&bias, &[t, t, heads])?, &[2, 0, 1])?, &[1, heads, t, t])?;
        let bias = if self.v2 {
            b.mul_scalar(&b.sigmoid(&bias)?, 16.0)?
        } else {
            bias
        };
        let mask = if shift != [0, 0] {
            let m = b.cast(&b.from_data(&Self::shift_mask(g)?)?, b.dtype(&bias))?;
            let nwin = b.shape(&m)[0];
            let m = b.add(&bias, &b.reshape(&m, &[nwin, 1, t, t])?)?;
            b.cat(&vec![&m; n], 0)?
        } else {
            bias
        };
        let a = if self.v2 {
            // cosine similarity times the per-head temperature, clamped at 100 as timm does
            let unit = |x: B::Tensor| -> Result<B::Tensor> {
                let norm = b.sqrt(&b.sum(&b.mul(&x, &x)?, &[3], true)?)?;
                b.div(&x, &b.clamp(&norm, Some(1e-12), None)?)
            };
            let (q, k) = (unit(part(0)?)?, unit(part(1)?)?);
            let scale = p.get(&join(path, "logit_scale"))?;
            let scale = b.exp(&b.clamp(scale, None, Some(100f64.ln()))?)?;
            let logits = b.mul(&b.matmul(&q, &b.transpose(&k, 2, 3)?)?, &scale)?;
            let w = b.softmax(&b.add(&logits, &mask)?, 3)?;
            b.matmul(&w, &part(2)?)?
        } else {
            b.scaled_dot_product_attention(&part(0)?, &part(1)?, &part(2)?, Some(&mask), None)?
        };
        let a = b.reshape(&b.transpose(&a, 1, 2)?, &[bw, t, c])?;
        let a = nn::linear(p, &join(path, "proj"), &a)?;
        let y = Self::unpartition(b, &a, g.window, [n, hp, wp, c])?;
        let y = b.narrow(&b.narrow(&y, 1, 0, h)?, 2, 0, w)?;
        let y = Self::roll_back(b, &y, 1, (h - shift[0]) % h)?;
        Self::roll_back(b, &y, 2, (w - shift[1]) % w)
    }
    /// V2's bias table `[(2·wh − 1)·(2·ww − 1), heads]`: `cpb_mlp` over the offsets, each
    /// divided by the (pretraining) window − 1, times 8, then `sign · log2(|x| + 1) / log2(8)`.
    fn v2_bias_table<B: Backend>(
        &self,
        p: &Params<B>,
        path: &str,
        g: &StageGeom,
        stage: usize,
        heads: usize,
    ) -> Result<B::Tensor> {
        let b = p.backend();
        let [wh, ww] = g.window;
        let pre = self.pretrained_windows.get(stage).copied().unwrap_or(0);
        let norm = |w: usize| (if pre > 0 { pre } else { w }).saturating_sub(1).max(1) as f32;
        let f = |d: i64, w: usize| {
            let v = d as f32 / norm(w) * 8.0;
            v.signum() * (v.abs() + 1.0).log2() / 8f32.log2()
        };
        let (rh, rw) = (2 * wh - 1, 2 * ww - 1);
        let mut coords = Vec::with_capacity(rh * rw * 2);
        for dy in -(wh as i64 - 1)..wh as i64 {
            for dx in -(ww as i64 - 1)..ww as i64 {
                coords.push(f(dy, wh));
                coords.push(f(dx, ww));
            }
        }
        let x = b.cast(&b.from_data(&TensorData::f32(&[rh * rw, 2], coords)?)?, b.dtype(p.get(&join(path, "proj.weight"))?))?;
        let y = b.relu(&nn::linear(p, &join(path, "cpb_mlp.0"), &x)?)?;
        let y = nn::linear(p, &join(path, "cpb_mlp.2"), &y)?;
        b.reshape(&y, &[rh * rw, heads])
    }
    #[allow(clippy::too_many_arguments)]
    fn block<B: Backend>(
        &self,
        p: &Params<B>,
        path: &str,
        x: &B::Tensor,
        stage: usize,
        shifted: bool,
        rate: f64,
        ctx: &Ctx<'_>,
    ) -> Result<B::Tensor> {
        let b = p.backend();
        let g = self.geometry()[stage];
        let heads = self.heads[stage];
        let attn = |y: &B::Tensor| {
            self.window_attention(p, &join(path, "attn"), y, &g, stage, shifted, heads)
        };
        let mlp = |y: &B::Tensor| -> Result<B::Tensor> {
            let y = nn::linear(p, &join(path, "mlp.fc1"), y)?;
            let y = b.gelu(&y, graft_backend::GeluApprox::Erf)?;
            nn::linear(p, &join(path, "mlp.fc2"), &y)
        };
        // V1 normalises each branch's input, V2 its output
        let y = if self.v2 {
            self.ln(p, &join(path, "norm1"), &attn(x)?)?
        } else {
            attn(&self.ln(p, &join(path, "norm1"), x)?)?
        };
        let y = nn::drop_path(b, &y, rate, ctx, &join(path, "drop_path1"))?;
        let x = b.add(x, &y)?;
        let y = if self.v2 {
            self.ln(p, &join(path, "norm2"), &mlp(&x)?)?
        } else {
            mlp(&self.ln(p, &join(path, "norm2"), &x)?)?
        };
        let y = nn::drop_path(b, &y, rate, ctx, &join(path, "drop_path2"))?;
        b.add(&x, &y)
    }
    /// timm's `PatchMerging`: each 2×2 neighbourhood's channels concatenated (an odd row /
    /// column zero-padded), LayerNorm, a bias-less Linear.
    fn merge<B: Backend>(&self, p: &Params<B>, path: &str, x: &B::Tensor) -> Result<B::Tensor> {
        let b = p.backend();
        let s = b.shape(x);
        let (n, c) = (s[0], s[3]);
        let (h, w) = (s[1].div_ceil(2) * 2, s[2].div_ceil(2) * 2);
        let y = Self::pad(b, x, h, w)?;
        let y = b.reshape(&y, &[n, h / 2, 2, w / 2, 2, c])?;
        let y = b.permute(&y, &[0, 1, 3, 4, 2, 5])?;
        let y = b.reshape(&y, &[n, h / 2, w / 2, 4 * c])?;
        if self.v2 {
            let y = nn::linear(p, &join(path, "reduction"), &y)?;
            return self.ln(p, &join(path, "norm"), &y);
        }
        let y = self.ln(p, &join(path, "norm"), &y)?;
        nn::linear(p, &join(path, "reduction"), &y)
    }
}

impl Family for Swin {
    fn img_size(&self) -> Option<[usize; 2]> {
        Some(self.img_size)
    }
    fn set_img_size(&mut self, size: [usize; 2]) -> Result<()> {
        let mut next = self.clone();
        next.img_size = size;
        next.check()?;
        *self = next;
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
        // the position-bias parameters (the papers' and timm's `no_weight_decay` list), by
        // their full names
        let names: &[&str] = if self.v2 {
            &["logit_scale", "cpb_mlp.0.weight", "cpb_mlp.2.weight"]
        } else {
            &["relative_position_bias_table"]
        };
        let mut v = Vec::new();
        for (i, &depth) in self.depths.iter().enumerate() {
            for j in 0..depth {
                v.extend(names.iter().map(|n| format!("layers.{i}.blocks.{j}.attn.{n}")));
            }
        }
        v
    }
    fn init_trunk<B: Backend>(&self, root: &ParamPath<'_, B>, in_chans: usize) -> Result<()> {
        self.check()?;
        let pe = root.sub("patch_embed")?;
        let d0 = self.embed_dim;
        nn::init_conv2d(&pe.sub("proj")?, in_chans, d0, (self.patch, self.patch), 1, true)?;
        nn::init_layer_norm(&pe.sub("norm")?, d0)?;
        for (i, g) in self.geometry().iter().enumerate() {
            let sp = root.sub(format!("layers.{i}"))?;
            let d = self.width(i);
            if i > 0 {
                let norm_width = if self.v2 { d } else { 2 * d };
                nn::init_layer_norm(&sp.sub("downsample.norm")?, norm_width)?;
                init_linear_trunc_with(&sp.sub("downsample.reduction")?, 2 * d, d, false)?;
            }
            let rows = (2 * g.window[0] - 1) * (2 * g.window[1] - 1);
            for j in 0..self.depths[i] {
                let bp = sp.sub(format!("blocks.{j}"))?;
                nn::init_layer_norm(&bp.sub("norm1")?, d)?;
                let attn = bp.sub("attn")?;
                if self.v2 {
                    init_linear_trunc_with(&attn.sub("qkv")?, d, 3 * d, false)?;
                    if self.qkv_bias {
                        attn.param("q_bias", &[d], Init::Zeros)?;
                        attn.param("v_bias", &[d], Init::Zeros)?;
                    }
                    let ln10 = Init::Constant(10f64.ln());
                    attn.param("logit_scale", &[self.heads[i], 1, 1], ln10)?;
                    init_linear_trunc(&attn.sub("cpb_mlp.0")?, 2, 512)?;
                    init_linear_trunc_with(&attn.sub("cpb_mlp.2")?, 512, self.heads[i], false)?;
                } else {
                    init_linear_trunc_with(&attn.sub("qkv")?, d, 3 * d, self.qkv_bias)?;
                    attn.param("relative_position_bias_table", &[rows, self.heads[i]], TRUNC_02)?;
                }
                init_linear_trunc(&bp.sub("attn.proj")?, d, d)?;
                nn::init_layer_norm(&bp.sub("norm2")?, d)?;
                init_linear_trunc(&bp.sub("mlp.fc1")?, d, self.hidden(i))?;
                init_linear_trunc(&bp.sub("mlp.fc2")?, self.hidden(i), d)?;
            }
        }
        nn::init_layer_norm(&root.sub("norm")?, self.num_features())
    }
    fn classifier(&self) -> ClassifierSpec {
        ClassifierSpec {
            prefix: "head.fc",
            init: HeadInit::TruncNormal02,
            dropout: self.drop,
            dropout_path: "head.drop",
        }
    }
    fn stage_specs(&self) -> Vec<StageSpec> {
        let mut v = vec![StageSpec {
            name: "embed".into(),
            prefixes: vec!["patch_embed".into()],
            channels: self.embed_dim,
            reduction: self.patch,
        }];
        for i in 0..self.depths.len() {
            v.push(StageSpec {
                name: format!("layers.{i}"),
                prefixes: vec![format!("layers.{i}")],
                channels: self.width(i),
                reduction: self.patch << i,
            });
        }
        v
    }
    fn head_stage_prefixes(&self) -> Vec<String> {
        vec!["norm".into(), "head".into()]
    }
    fn num_features(&self) -> usize {
        self.width(self.depths.len().saturating_sub(1))
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
            crate::layers::check_built_size("swin", &b.shape(x), self.img_size)?;
            let y = nn::conv2d(p, "patch_embed.proj", x, Conv2dOpts::new().stride(self.patch))?;
            let y = b.permute(&y, &[0, 2, 3, 1])?;
            return self.ln(p, "patch_embed.norm", &y);
        }
        let stage = i - 1;
        let path = format!("layers.{stage}");
        let mut y = if stage > 0 {
            self.merge(p, &join(&path, "downsample"), x)?
        } else {
            x.clone()
        };
        let total: usize = self.depths.iter().sum();
        let first: usize = self.depths[..stage].iter().sum();
        for j in 0..self.depths[stage] {
            let k = first + j;
            let rate = if total > 1 {
                self.drop_path * k as f64 / (total - 1) as f64
            } else {
                0.0
            };
            let bp = join(&path, &format!("blocks.{j}"));
            y = self.block(p, &bp, &y, stage, j % 2 == 1, rate, ctx)?;
        }
        Ok(y)
    }
    fn finish_features<B: Backend>(&self, p: &Params<B>, x: &B::Tensor) -> Result<B::Tensor> {
        self.ln(p, "norm", x)
    }
    fn stage_output<B: Backend>(
        &self,
        b: &B,
        _i: usize,
        x: &B::Tensor,
        _side: &Side<B>,
    ) -> Result<B::Tensor> {
        b.permute(x, &[0, 3, 1, 2])
    }
    fn pool<B: Backend>(
        &self,
        p: &Params<B>,
        x: &B::Tensor,
        _side: &Side<B>,
        _ctx: &Ctx<'_>,
    ) -> Result<B::Tensor> {
        p.backend().mean(x, &[1, 2], false)
    }
}

/// The table's Swin Transformers (`data/archs.json`, family `swin`), each with its default tag's
/// cfg.
pub(crate) fn builtins() -> Vec<Builtin> {
    crate::arch_table::entries::<Swin>("swin")
        .into_iter()
        .map(|(name, c)| {
            let base = PretrainedCfg::imagenet(
                c.img_size[0],
                0.9,
                Interpolation::Bicubic,
                "patch_embed.proj",
                "head.fc",
                "timm",
            );
            let cfg = crate::arch_table::with_default_tag(&name, base);
            Builtin::new(&name, Arch::Swin(c), cfg, &format!("timm {name}"))
        })
        .collect()
}

//! CLIP's text tower (Radford et al. 2021) as open_clip lays it out in a full CLIP checkpoint:
//! `token_embedding`, `positional_embedding`, `transformer.resblocks.{i}.{ln_1, attn.in_proj_weight,
//! attn.in_proj_bias, attn.out_proj, ls_1.gamma, ln_2, mlp.c_fc, mlp.c_proj, ls_2.gamma}`,
//! `ln_final`, `text_projection` (open_clip's `TextTransformer` with `pool_type = "argmax"`).
//!
//! Pre-norm blocks under a causal mask; the text's vector is the final-normed state at its
//! end-of-text token — the first position holding the text's largest id, as open_clip's
//! `text.argmax(dim=-1)` finds it (CLIP's end-of-text id is its vocabulary's last) — projected by
//! `text_projection` (`x @ P`, or a Linear with bias when `proj_bias`). The causal mask makes
//! padding after the end-of-text token invisible to it, so a batch padded to its longest text
//! gives what open_clip's fixed 77-token context gives.

use graft_backend::nn;
use graft_backend::{Backend, Ctx, DType, GeluApprox, Init, ParamPath, Params, TensorData};
use graft_core::name::join;
use graft_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::model::{ClassifierSpec, Family, HeadInit, Side, StageSpec};
use crate::registry::Builtin;

/// The MLP's activation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClipAct {
    /// Exact (erf) GELU (open_clip's default).
    #[default]
    Gelu,
    /// `x · sigmoid(1.702 x)` (OpenAI's CLIP weights: open_clip's `quick_gelu`).
    QuickGelu,
}

fn default_eps() -> f64 {
    1e-5
}

/// The text tower's hyper-parameters (open_clip's `CLIPTextCfg`, plus the CLIP's `embed_dim`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipText {
    /// Position embeddings: the longest text, special tokens included (77 for CLIP).
    pub context_length: usize,
    pub vocab_size: usize,
    pub width: usize,
    pub heads: usize,
    pub layers: usize,
    /// The MLP's hidden width (`width · mlp_ratio`).
    pub mlp_hidden: usize,
    /// Width of `text_projection`'s output (the shared image-text space); 0: no projection.
    pub embed_dim: usize,
    /// `text_projection` is a Linear with bias (`proj_bias`), not a bare matrix.
    #[serde(default)]
    pub proj_bias: bool,
    #[serde(default)]
    pub act: ClipAct,
    #[serde(default = "default_eps")]
    pub norm_eps: f64,
    /// LayerScale with this initial value (`ls_init_value`).
    #[serde(default)]
    pub layer_scale: Option<f64>,
    /// The id a batch is padded with (open_clip pads with 0; the causal mask hides padding).
    #[serde(default)]
    pub pad_id: i64,
}

impl ClipText {
    /// OpenAI CLIP's text tower: 12 layers, 512 wide, 8 heads, 77 tokens, 49,408 ids.
    pub fn openai(embed_dim: usize) -> Self {
        Self {
            context_length: 77,
            vocab_size: 49408,
            width: 512,
            heads: 8,
            layers: 12,
            mlp_hidden: 2048,
            embed_dim,
            proj_bias: false,
            act: ClipAct::QuickGelu,
            norm_eps: 1e-5,
            layer_scale: None,
            pad_id: 0,
        }
    }
    fn check(&self) -> Result<()> {
        if self.heads == 0 || !self.width.is_multiple_of(self.heads) {
            return Err(Error::invalid(
                "clip_text",
                format!(
                    "width {} is not a multiple of heads {}",
                    self.width, self.heads
                ),
            ));
        }
        if self.context_length == 0 || self.vocab_size == 0 || self.mlp_hidden == 0 {
            return Err(Error::invalid(
                "clip_text",
                "context_length, vocab_size and mlp_hidden must be >= 1",
            ));
        }
        Ok(())
    }
    fn act<B: Backend>(&self, b: &B, x: &B::Tensor) -> Result<B::Tensor> {
        match self.act {
            ClipAct::Gelu => b.gelu(x, GeluApprox::Erf),
            ClipAct::QuickGelu => b.mul(x, &b.sigmoid(&b.mul_scalar(x, 1.702)?)?),
        }
    }
    fn scaled<B: Backend>(&self, p: &Params<B>, path: &str, y: B::Tensor) -> Result<B::Tensor> {
        match self.layer_scale {
            Some(_) => p.backend().mul(&y, p.get(&join(path, "gamma"))?),
            None => Ok(y),
        }
    }
    fn attention<B: Backend>(
        &self,
        p: &Params<B>,
        path: &str,
        x: &B::Tensor,
        mask: &B::Tensor,
    ) -> Result<B::Tensor> {
        let b = p.backend();
        let s = b.shape(x);
        let (n, t, d) = (s[0], s[1], s[2]);
        let (h, hd) = (self.heads, d / self.heads);
        let qkv = b.linear(
            x,
            p.get(&join(path, "in_proj_weight"))?,
            Some(p.get(&join(path, "in_proj_bias"))?),
        )?;
        let qkv = b.permute(&b.reshape(&qkv, &[n, t, 3, h, hd])?, &[2, 0, 3, 1, 4])?;
        let part = |i: usize| -> Result<B::Tensor> {
            b.reshape(&b.narrow(&qkv, 0, i, 1)?, &[n, h, t, hd])
        };
        let a = b.scaled_dot_product_attention(&part(0)?, &part(1)?, &part(2)?, Some(mask), None)?;
        let a = b.reshape(&b.transpose(&a, 1, 2)?, &[n, t, d])?;
        nn::linear(p, &join(path, "out_proj"), &a)
    }
    fn block<B: Backend>(
        &self,
        p: &Params<B>,
        path: &str,
        x: &B::Tensor,
        mask: &B::Tensor,
    ) -> Result<B::Tensor> {
        let b = p.backend();
        let h = nn::layer_norm(p, &join(path, "ln_1"), x, self.norm_eps)?;
        let h = self.attention(p, &join(path, "attn"), &h, mask)?;
        let x = b.add(x, &self.scaled(p, &join(path, "ls_1"), h)?)?;
        let h = nn::layer_norm(p, &join(path, "ln_2"), &x, self.norm_eps)?;
        let h = nn::linear(p, &join(path, "mlp.c_fc"), &h)?;
        let h = nn::linear(p, &join(path, "mlp.c_proj"), &self.act(b, &h)?)?;
        b.add_consume(x, &self.scaled(p, &join(path, "ls_2"), h)?)
    }
    /// `[N, T, D]` → the end-of-text token's state, `[N, D]` (`side.keep`: its one-hot).
    fn eot_state<B: Backend>(b: &B, x: &B::Tensor, side: &Side<B>) -> Result<B::Tensor> {
        let s = b.shape(x);
        let onehot = side.keep.as_ref().ok_or_else(|| {
            Error::invalid(
                "clip_text",
                "the end-of-text positions come from the ids: use forward / forward_pooled",
            )
        })?;
        let onehot = b.reshape(onehot, &[s[0], s[1], 1])?;
        b.sum(&b.mul(x, &onehot)?, &[1], false)
    }
    /// Checks a batch of ids: `[N, T]` int64, `1 <= T <= context_length`.
    fn check_ids(&self, shape: &[usize], dtype: DType, model: &str) -> Result<()> {
        crate::model::check_token_ids(shape, dtype, self.context_length, model)
    }
}

/// The first position of each row's largest id (`torch.argmax`'s tie rule), row-major `[n, t]`.
fn end_of_text(ids: &[i64], n: usize, t: usize) -> Vec<usize> {
    (0..n)
        .map(|r| {
            let row = &ids[r * t..(r + 1) * t];
            row.iter()
                .enumerate()
                .fold((0, i64::MIN), |best, (i, &v)| if v > best.1 { (i, v) } else { best })
                .0
        })
        .collect()
}

impl Family for ClipText {
    fn pad_token_id(&self) -> Option<i64> {
        Some(self.pad_id)
    }
    fn check_input(&self, shape: &[usize], dtype: DType, _in_chans: usize, model: &str) -> Result<()> {
        self.check_ids(shape, dtype, model)
    }
    fn init_trunk<B: Backend>(&self, root: &ParamPath<'_, B>, _in_chans: usize) -> Result<()> {
        self.check()?;
        // open_clip's `TextTransformer.init_parameters`.
        let w = self.width;
        let normal = |std: f64| Init::Normal { mean: 0.0, std };
        let proj_std = (w as f64).powf(-0.5) * ((2 * self.layers) as f64).powf(-0.5);
        let attn_std = (w as f64).powf(-0.5);
        let fc_std = ((2 * w) as f64).powf(-0.5);
        root.param("token_embedding.weight", &[self.vocab_size, w], normal(0.02))?;
        root.param("positional_embedding", &[self.context_length, w], normal(0.01))?;
        for i in 0..self.layers {
            let l = root.sub(format!("transformer.resblocks.{i}"))?;
            nn::init_layer_norm(&l.sub("ln_1")?, w)?;
            l.param("attn.in_proj_weight", &[3 * w, w], normal(attn_std))?;
            l.param("attn.in_proj_bias", &[3 * w], Init::Zeros)?;
            l.param("attn.out_proj.weight", &[w, w], normal(proj_std))?;
            l.param("attn.out_proj.bias", &[w], Init::Zeros)?;
            nn::init_layer_norm(&l.sub("ln_2")?, w)?;
            l.param("mlp.c_fc.weight", &[self.mlp_hidden, w], normal(fc_std))?;
            l.param("mlp.c_fc.bias", &[self.mlp_hidden], Init::Zeros)?;
            l.param("mlp.c_proj.weight", &[w, self.mlp_hidden], normal(proj_std))?;
            l.param("mlp.c_proj.bias", &[w], Init::Zeros)?;
            if let Some(v) = self.layer_scale {
                l.param("ls_1.gamma", &[w], Init::Constant(v))?;
                l.param("ls_2.gamma", &[w], Init::Constant(v))?;
            }
        }
        nn::init_layer_norm(&root.sub("ln_final")?, w)?;
        if self.embed_dim > 0 {
            if self.proj_bias {
                root.param("text_projection.weight", &[self.embed_dim, w], normal(attn_std))?;
                root.param("text_projection.bias", &[self.embed_dim], Init::Zeros)?;
            } else {
                root.param("text_projection", &[w, self.embed_dim], normal(attn_std))?;
            }
        }
        Ok(())
    }
    fn stage_specs(&self) -> Vec<StageSpec> {
        let mut v = vec![StageSpec {
            name: "embeddings".into(),
            prefixes: vec!["token_embedding".into(), "positional_embedding".into()],
            channels: self.width,
            reduction: 1,
        }];
        for i in 0..self.layers {
            v.push(StageSpec {
                name: format!("resblocks.{i}"),
                prefixes: vec![format!("transformer.resblocks.{i}")],
                channels: self.width,
                reduction: 1,
            });
        }
        v
    }
    fn head_stage_prefixes(&self) -> Vec<String> {
        vec!["ln_final".into(), "text_projection".into(), "head".into()]
    }
    fn classifier(&self) -> ClassifierSpec {
        ClassifierSpec {
            prefix: "head",
            init: HeadInit::TruncNormal02,
            dropout: 0.0,
            dropout_path: "head_drop",
        }
    }
    fn num_features(&self) -> usize {
        if self.embed_dim > 0 {
            self.embed_dim
        } else {
            self.width
        }
    }
    fn no_weight_decay(&self) -> Vec<String> {
        vec!["positional_embedding".into()]
    }
    fn side<B: Backend>(&self, p: &Params<B>, x: &B::Tensor, dtype: DType) -> Result<Side<B>> {
        let b = p.backend();
        let s = b.shape(x);
        let (n, t) = (s[0], s[1]);
        let ids = b.to_data(x)?;
        let TensorData::I64(ids) = ids else {
            return Err(Error::dtype("clip_text", "float", "token ids must be int64"));
        };
        let ids: Vec<i64> = ids.iter().copied().collect();
        let mut onehot = vec![0f32; n * t];
        for (r, pos) in end_of_text(&ids, n, t).into_iter().enumerate() {
            onehot[r * t + pos] = 1.0;
        }
        // open_clip's causal mask: -inf above the diagonal (a large finite value here, which
        // softmax turns into the same 0 without risking inf - inf).
        let mut causal = vec![0f32; t * t];
        for i in 0..t {
            for j in i + 1..t {
                causal[i * t + j] = f32::MIN;
            }
        }
        let keep = b.cast(&b.from_data(&TensorData::f32(&[n, t], onehot)?)?, dtype)?;
        let bias = b.cast(&b.from_data(&TensorData::f32(&[1, 1, t, t], causal)?)?, dtype)?;
        Ok(Side {
            keep: Some(keep),
            bias: Some(bias),
            rope: None,
            grid: None,
        })
    }
    fn forward_stage<B: Backend>(
        &self,
        p: &Params<B>,
        i: usize,
        x: &B::Tensor,
        side: &Side<B>,
        _ctx: &Ctx<'_>,
    ) -> Result<B::Tensor> {
        let b = p.backend();
        if i == 0 {
            let t = b.shape(x)[1];
            let tokens = b.embedding(p.get("token_embedding.weight")?, x)?;
            let pos = b.narrow(p.get("positional_embedding")?, 0, 0, t)?;
            return b.add_consume(tokens, &pos);
        }
        if i > self.layers {
            return Err(Error::invalid("clip_text", format!("no stage {i}")));
        }
        let mask = side
            .bias
            .as_ref()
            .ok_or_else(|| Error::invalid("clip_text", "no causal mask"))?;
        self.block(p, &format!("transformer.resblocks.{}", i - 1), x, mask)
    }
    fn finish_features<B: Backend>(&self, p: &Params<B>, x: &B::Tensor) -> Result<B::Tensor> {
        nn::layer_norm(p, "ln_final", x, self.norm_eps)
    }
    fn stage_output<B: Backend>(
        &self,
        b: &B,
        _i: usize,
        x: &B::Tensor,
        side: &Side<B>,
    ) -> Result<B::Tensor> {
        let s = b.shape(x);
        let y = Self::eot_state(b, x, side)?;
        b.reshape(&y, &[s[0], s[2], 1, 1])
    }
    fn pool<B: Backend>(
        &self,
        p: &Params<B>,
        x: &B::Tensor,
        side: &Side<B>,
        _ctx: &Ctx<'_>,
    ) -> Result<B::Tensor> {
        let b = p.backend();
        let y = Self::eot_state(b, x, side)?;
        match (self.embed_dim, self.proj_bias) {
            (0, _) => Ok(y),
            (_, true) => nn::linear(p, "text_projection", &y),
            (_, false) => b.matmul(&y, p.get("text_projection")?),
        }
    }
    fn global_pool_name(&self) -> &'static str {
        "argmax"
    }
    fn ignored_keys(&self) -> Vec<&'static str> {
        // open_clip's causal mask: a non-persistent buffer older files carry.
        vec!["attn_mask"]
    }
}

/// The text tower has no built-in of its own: a CLIP checkpoint's configuration
/// (`crate::clip::ClipConfig`) gives it.
pub(crate) fn builtins() -> Vec<Builtin> {
    Vec::new()
}

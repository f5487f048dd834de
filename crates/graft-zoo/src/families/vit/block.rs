//! One transformer block of the ViT builder: `norm1` → attention → LayerScale → residual,
//! `norm2` → MLP → LayerScale → residual. Besides timm's `VisionTransformer` block, the parts of
//! timm's `Eva` block (`eva.py`): rotary position embeddings on queries and keys, the query /
//! value biases beside a bias-less `qkv` (`q_bias`, `v_bias`) or separate `q_proj` / `k_proj` /
//! `v_proj`, a LayerNorm over the attention output (`attn.norm`) and inside the MLP
//! (`mlp.norm`, NormFormer's), LayerScale as `gamma_1` / `gamma_2`.

use graft_backend::nn;
use graft_backend::{Backend, Ctx, GeluApprox, Init, ParamPath, Params};
use graft_core::Result;
use graft_core::name::join;
use serde::{Deserialize, Serialize};

use super::{Vit, VitAct, VitMlp};
use crate::layers::{init_linear_trunc, init_linear_trunc_with};

/// How the queries, keys and values are projected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VitQkv {
    /// One `qkv` Linear (with bias when `qkv_bias`).
    #[default]
    Fused,
    /// One bias-less `qkv` Linear and the biases `q_bias`, `v_bias` (the key's is zero: EVA).
    FusedQvBias,
    /// `q_proj`, `k_proj`, `v_proj` (biases per `qkv_bias` and `k_bias`).
    Split,
}

impl Vit {
    pub(super) fn act<B: Backend>(&self, b: &B, x: &B::Tensor) -> Result<B::Tensor> {
        match self.act {
            VitAct::Gelu => b.gelu(x, GeluApprox::Erf),
            VitAct::GeluTanh => b.gelu(x, GeluApprox::Tanh),
            VitAct::QuickGelu => b.mul(x, &b.sigmoid(&b.mul_scalar(x, 1.702)?)?),
            VitAct::Silu => b.silu(x),
        }
    }
    fn k_bias(&self) -> bool {
        self.k_bias.unwrap_or(self.qkv_bias)
    }
    /// Queries, keys and values, each `[N, heads, T, head_dim]`.
    fn qkv<B: Backend>(
        &self,
        p: &Params<B>,
        path: &str,
        y: &B::Tensor,
    ) -> Result<[B::Tensor; 3]> {
        let b = p.backend();
        let s = b.shape(y);
        let (n, t, d) = (s[0], s[1], s[2]);
        let (h, hd) = (self.heads, d / self.heads);
        let heads = |x: B::Tensor| b.transpose(&b.reshape(&x, &[n, t, h, hd])?, 1, 2);
        let fused = |qkv: B::Tensor| -> Result<[B::Tensor; 3]> {
            let qkv = b.permute(&b.reshape(&qkv, &[n, t, 3, h, hd])?, &[2, 0, 3, 1, 4])?;
            let part = |i: usize| b.reshape(&b.narrow(&qkv, 0, i, 1)?, &[n, h, t, hd]);
            Ok([part(0)?, part(1)?, part(2)?])
        };
        match self.qkv {
            VitQkv::Fused => fused(nn::linear(p, &join(path, "qkv"), y)?),
            VitQkv::FusedQvBias => {
                let q = p.get(&join(path, "q_bias"))?;
                let k = b.zeros(&[d], b.dtype(q))?;
                let bias = b.cat(&[q, &k, p.get(&join(path, "v_bias"))?], 0)?;
                let w = p.get(&join(path, "qkv.weight"))?;
                fused(b.linear(y, w, Some(&bias))?)
            }
            VitQkv::Split => Ok([
                heads(nn::linear(p, &join(path, "q_proj"), y)?)?,
                heads(nn::linear(p, &join(path, "k_proj"), y)?)?,
                heads(nn::linear(p, &join(path, "v_proj"), y)?)?,
            ]),
        }
    }
    fn attention<B: Backend>(
        &self,
        p: &Params<B>,
        path: &str,
        y: &B::Tensor,
        rope: Option<&[B::Tensor; 2]>,
    ) -> Result<B::Tensor> {
        let b = p.backend();
        let s = b.shape(y);
        let (n, t, d) = (s[0], s[1], s[2]);
        let [mut q, mut k, v] = self.qkv(p, path, y)?;
        if self.qk_norm {
            q = self.ln(p, &join(path, "q_norm"), &q)?;
            k = self.ln(p, &join(path, "k_norm"), &k)?;
        }
        if let (Some(r), Some(tables)) = (&self.rope, rope) {
            let prefix = self.prefix_tokens();
            q = r.apply(b, &q, tables, prefix)?;
            k = r.apply(b, &k, tables, prefix)?;
        }
        let a = b.scaled_dot_product_attention(&q, &k, &v, None, None)?;
        let mut a = b.reshape(&b.transpose(&a, 1, 2)?, &[n, t, d])?;
        if self.attn_norm {
            a = self.ln(p, &join(path, "norm"), &a)?;
        }
        nn::linear(p, &join(path, "proj"), &a)
    }
    pub(super) fn mlp<B: Backend>(
        &self,
        p: &Params<B>,
        path: &str,
        y: &B::Tensor,
    ) -> Result<B::Tensor> {
        let b = p.backend();
        let mut z = match self.mlp {
            VitMlp::Mlp => self.act(b, &nn::linear(p, &join(path, "fc1"), y)?)?,
            VitMlp::GluPacked => {
                let u = nn::linear(p, &join(path, "fc1"), y)?;
                let r = b.rank(&u) - 1;
                let half = self.hidden();
                let gate = self.act(b, &b.narrow(&u, r, 0, half)?)?;
                b.mul(&gate, &b.narrow(&u, r, half, half)?)?
            }
            VitMlp::Swiglu => {
                let g = self.act(b, &nn::linear(p, &join(path, "fc1_g"), y)?)?;
                b.mul(&g, &nn::linear(p, &join(path, "fc1_x"), y)?)?
            }
        };
        if self.mlp_norm {
            z = self.ln(p, &join(path, "norm"), &z)?;
        }
        nn::linear(p, &join(path, "fc2"), &z)
    }
    /// Where branch `i`'s (1: attention, 2: MLP) LayerScale lives in the block at `path`.
    fn gamma(&self, path: &str, i: usize) -> String {
        if self.ls_gamma {
            join(path, &format!("gamma_{i}"))
        } else {
            join(path, &format!("ls{i}.gamma"))
        }
    }
    /// `x · gamma` where the block has LayerScale.
    fn scale<B: Backend>(
        &self,
        p: &Params<B>,
        path: &str,
        i: usize,
        x: B::Tensor,
    ) -> Result<B::Tensor> {
        match self.layer_scale {
            Some(_) => p.backend().mul(&x, p.get(&self.gamma(path, i))?),
            None => Ok(x),
        }
    }
    pub(super) fn block<B: Backend>(
        &self,
        p: &Params<B>,
        path: &str,
        x: &B::Tensor,
        rope: Option<&[B::Tensor; 2]>,
        rate: f64,
        ctx: &Ctx<'_>,
    ) -> Result<B::Tensor> {
        let b = p.backend();
        let y = self.ln(p, &join(path, "norm1"), x)?;
        let a = self.attention(p, &join(path, "attn"), &y, rope)?;
        let a = self.scale(p, path, 1, a)?;
        let a = nn::drop_path(b, &a, rate, ctx, &join(path, "drop_path1"))?;
        let x = b.add(x, &a)?;
        let y = self.ln(p, &join(path, "norm2"), &x)?;
        let y = self.mlp(p, &join(path, "mlp"), &y)?;
        let y = self.scale(p, path, 2, y)?;
        let y = nn::drop_path(b, &y, rate, ctx, &join(path, "drop_path2"))?;
        b.add(&x, &y)
    }
    pub(super) fn init_block<B: Backend>(&self, bp: &ParamPath<'_, B>) -> Result<()> {
        let (d, hidden) = (self.dim, self.hidden());
        nn::init_layer_norm(&bp.sub("norm1")?, d)?;
        match self.qkv {
            VitQkv::Fused => init_linear_trunc_with(&bp.sub("attn.qkv")?, d, 3 * d, self.qkv_bias)?,
            VitQkv::FusedQvBias => {
                init_linear_trunc_with(&bp.sub("attn.qkv")?, d, 3 * d, false)?;
                bp.sub("attn")?.param("q_bias", &[d], Init::Zeros)?;
                bp.sub("attn")?.param("v_bias", &[d], Init::Zeros)?;
            }
            VitQkv::Split => {
                init_linear_trunc_with(&bp.sub("attn.q_proj")?, d, d, self.qkv_bias)?;
                init_linear_trunc_with(&bp.sub("attn.k_proj")?, d, d, self.k_bias())?;
                init_linear_trunc_with(&bp.sub("attn.v_proj")?, d, d, self.qkv_bias)?;
            }
        }
        if self.qk_norm {
            nn::init_layer_norm(&bp.sub("attn.q_norm")?, d / self.heads)?;
            nn::init_layer_norm(&bp.sub("attn.k_norm")?, d / self.heads)?;
        }
        if self.attn_norm {
            nn::init_layer_norm(&bp.sub("attn.norm")?, d)?;
        }
        init_linear_trunc(&bp.sub("attn.proj")?, d, d)?;
        nn::init_layer_norm(&bp.sub("norm2")?, d)?;
        match self.mlp {
            VitMlp::Mlp => init_linear_trunc(&bp.sub("mlp.fc1")?, d, hidden)?,
            VitMlp::GluPacked => init_linear_trunc(&bp.sub("mlp.fc1")?, d, 2 * hidden)?,
            VitMlp::Swiglu => {
                init_linear_trunc(&bp.sub("mlp.fc1_g")?, d, hidden)?;
                init_linear_trunc(&bp.sub("mlp.fc1_x")?, d, hidden)?;
            }
        }
        if self.mlp_norm {
            nn::init_layer_norm(&bp.sub("mlp.norm")?, hidden)?;
        }
        init_linear_trunc(&bp.sub("mlp.fc2")?, hidden, d)?;
        if let Some(v) = self.layer_scale {
            for i in [1, 2] {
                if self.ls_gamma {
                    bp.param(&format!("gamma_{i}"), &[d], Init::Constant(v))?;
                } else {
                    bp.sub(format!("ls{i}"))?.param("gamma", &[d], Init::Constant(v))?;
                }
            }
        }
        Ok(())
    }
}

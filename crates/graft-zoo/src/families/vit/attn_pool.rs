//! Attention pooling by a learned latent query (timm's `AttentionPoolLatent`, the `map` pool
//! of SigLIP's towers; Zhai et al. 2023, after Lee et al. 2019's "PMA"), with timm's names under
//! `attn_pool`: `latent` `[1, 1, dim]`, `q` and `kv` (biased Linears), `proj`, `norm` (the
//! ViT's LayerNorm) and `mlp.{fc1, fc2}` (the ViT's activation; heads and MLP width the blocks'
//! unless `pool_heads` / `pool_mlp_hidden` say otherwise).
//!
//! `pooled = y + mlp(norm(y))` where `y = proj(attention(q(latent), kv(tokens)))`: one query
//! attends over every token (prefix tokens included); no residual around the attention.

use graft_backend::nn;
use graft_backend::{Backend, Init, ParamPath, Params};
use graft_core::Result;
use graft_core::name::join;

use super::Vit;
use crate::layers::init_linear_trunc;

impl Vit {
    pub(super) fn init_attn_pool<B: Backend>(&self, root: &ParamPath<'_, B>) -> Result<()> {
        let d = self.dim;
        let std = (d as f64).powf(-0.5);
        let latent = Init::TruncNormal {
            mean: 0.0,
            std,
            lo: -2.0 * std,
            hi: 2.0 * std,
        };
        root.param("latent", &[1, 1, d], latent)?;
        init_linear_trunc(&root.sub("q")?, d, d)?;
        init_linear_trunc(&root.sub("kv")?, d, 2 * d)?;
        init_linear_trunc(&root.sub("proj")?, d, d)?;
        nn::init_layer_norm(&root.sub("norm")?, d)?;
        init_linear_trunc(&root.sub("mlp.fc1")?, d, self.pool_hidden())?;
        init_linear_trunc(&root.sub("mlp.fc2")?, self.pool_hidden(), d)
    }
    fn pool_hidden(&self) -> usize {
        self.pool_mlp_hidden.unwrap_or_else(|| self.hidden())
    }

    /// Tokens `[N, T, dim]` → pooled `[N, dim]`.
    pub(super) fn attn_pool<B: Backend>(
        &self,
        p: &Params<B>,
        path: &str,
        x: &B::Tensor,
    ) -> Result<B::Tensor> {
        let b = p.backend();
        let s = b.shape(x);
        let (n, t, d) = (s[0], s[1], s[2]);
        let h = self.pool_heads.unwrap_or(self.heads);
        let hd = d / h;
        // the one query, projected once and repeated over the batch
        let q = nn::linear(p, &join(path, "q"), p.get(&join(path, "latent"))?)?;
        let q = b.reshape(&q, &[1, 1, h, hd])?;
        let q = b.transpose(&q, 1, 2)?;
        let q = if n > 1 {
            b.cat(&vec![&q; n], 0)?
        } else {
            q
        };
        let kv = nn::linear(p, &join(path, "kv"), x)?;
        let kv = b.permute(&b.reshape(&kv, &[n, t, 2, h, hd])?, &[2, 0, 3, 1, 4])?;
        let part = |i: usize| b.reshape(&b.narrow(&kv, 0, i, 1)?, &[n, h, t, hd]);
        let a = b.scaled_dot_product_attention(&q, &part(0)?, &part(1)?, None, None)?;
        let a = b.reshape(&b.transpose(&a, 1, 2)?, &[n, d])?;
        let y = nn::linear(p, &join(path, "proj"), &a)?;
        let z = self.ln(p, &join(path, "norm"), &y)?;
        let z = self.act(b, &nn::linear(p, &join(path, "mlp.fc1"), &z)?)?;
        let z = nn::linear(p, &join(path, "mlp.fc2"), &z)?;
        b.add(&y, &z)
    }
}

//! A ViT's position embeddings over an input's patch grid: which grid an input has (the built
//! one, or any multiple of the patch with `dynamic_img_size`) and the embedding for it, resampled
//! at forward time as timm's `resample_abs_pos_embed` does (the load-time resampling of a
//! checkpoint is `crate::resample`, through `Family::adapt_tensor`).

use graft_backend::{Backend, Params, TensorData};
use graft_core::{Error, Result};

use super::Vit;
use crate::resample::{PosResample, weight_matrix};

impl Vit {
    /// The patch grid of an input of `shape`: the built one, or with `dynamic_img_size` the
    /// input's own (its sides must be multiples of the patch, as timm's `PatchEmbed` asserts).
    pub(super) fn input_grid(&self, shape: &[usize]) -> Result<[usize; 2]> {
        if !self.dynamic_img_size {
            crate::layers::check_built_size("vit", shape, self.img_size)?;
            return Ok(self.grid());
        }
        let p = self.patch;
        match shape {
            [_, _, h, w] if *h >= p && *w >= p && h % p == 0 && w % p == 0 => Ok([h / p, w / p]),
            _ => Err(Error::shape(
                "vit",
                format!("input {shape:?}: height and width must be multiples of the patch size {p}"),
            )),
        }
    }
    /// The position embedding for `grid`: the parameter itself on the built grid, else its grid
    /// part resampled (antialiased bicubic, separable: two matrix products, so gradients reach
    /// the parameter) with the prefix rows kept.
    pub(super) fn pos_embed_for<B: Backend>(&self, p: &Params<B>, grid: [usize; 2]) -> Result<B::Tensor> {
        let b = p.backend();
        let pos = p.get("pos_embed")?;
        let from = self.grid();
        if grid == from {
            return Ok(pos.clone());
        }
        let (k, d) = (self.embedded_prefix(), self.dim);
        let dtype = b.dtype(pos);
        let matrix = |input: usize, output: usize| -> Result<B::Tensor> {
            let m = weight_matrix(PosResample::Bicubic, input, output);
            b.cast(&b.from_data(&TensorData::f32(&[output, input], m)?)?, dtype)
        };
        let ([g0, g1], [n0, n1]) = (from, grid);
        let x = b.narrow(pos, 1, k, g0 * g1)?;
        // [g0·g1, d] → [d·g0, g1] · Wxᵀ → [d·g0, n1]
        let x = b.reshape(&b.permute(&b.reshape(&x, &[g0, g1, d])?, &[2, 0, 1])?, &[d * g0, g1])?;
        let x = b.matmul(&x, &b.transpose(&matrix(g1, n1)?, 0, 1)?)?;
        // → [g0, d·n1], Wy · → [n0, d·n1] → [1, n0·n1, d]
        let x = b.reshape(&b.permute(&b.reshape(&x, &[d, g0, n1])?, &[1, 0, 2])?, &[g0, d * n1])?;
        let x = b.matmul(&matrix(g0, n0)?, &x)?;
        let x = b.permute(&b.reshape(&x, &[n0, d, n1])?, &[0, 2, 1])?;
        let x = b.reshape(&x, &[1, n0 * n1, d])?;
        if k == 0 {
            return Ok(x);
        }
        b.cat(&[&b.narrow(pos, 1, 0, k)?, &x], 1)
    }
}

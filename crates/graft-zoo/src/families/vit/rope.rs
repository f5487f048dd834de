//! Rotary position embeddings over the patch grid (2-d axial RoPE; Su et al. 2021, "RoFormer";
//! Heo et al. 2024, "Rotary Position Embedding for Vision Transformer"), as timm's `Eva` applies
//! them to each head's queries and keys (the prefix tokens left as they are): EVA-02's and the
//! RoPE ViTs' `RotaryEmbeddingCat` over token indices, DINOv3's `RotaryEmbeddingDinoV3` over
//! centred coordinates.
//!
//! Each axis of the grid gets `head_dim / 4` frequencies; a token's angles are its coordinate on
//! each axis times those frequencies, laid out interleaved (`[a0, a0, a1, a1, …]`, rotated pairwise)
//! or in halves (`[a0, a1, …, a0, a1, …]`, rotated half against half). The tables are computed in
//! f32 with timm's order of operations.

use graft_backend::{Backend, TensorData};
use graft_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// Where a token's coordinates come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RopeGrid {
    /// The token's row / column index plus `offset`, rescaled to `ref_grid` when given (EVA-02:
    /// the pretraining grid), angle = coordinate / temperature^(i / n).
    Index,
    /// `(index + 0.5 + offset) / size` mapped to [-1, 1] (DINOv3), angle = 2π · coordinate /
    /// temperature^(i / n).
    Centered,
}

/// A ViT's rotary position embedding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VitRope {
    pub kind: RopeGrid,
    pub temperature: f64,
    #[serde(default)]
    pub offset: f64,
    /// The grid the coordinates are rescaled to (`Index` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ref_grid: Option<[usize; 2]>,
    /// The first coordinate is the column (timm's `grid_indexing='xy'`), else the row.
    #[serde(default)]
    pub xy: bool,
    /// The halves layout (timm's `rotate_half`), else interleaved.
    #[serde(default)]
    pub half: bool,
}

impl VitRope {
    pub(crate) fn check(&self, head_dim: usize) -> Result<()> {
        if !head_dim.is_multiple_of(4) {
            return Err(Error::invalid(
                "vit",
                format!("rope needs a head width divisible by 4, got {head_dim}"),
            ));
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(Error::invalid(
                "vit",
                format!("rope temperature {} must be positive", self.temperature),
            ));
        }
        if self.kind == RopeGrid::Centered && self.ref_grid.is_some() {
            return Err(Error::invalid(
                "vit",
                "rope: ref_grid applies to the index grid only",
            ));
        }
        Ok(())
    }

    /// One axis's coordinates: `n` positions, rescaled to `reference` positions when given.
    fn axis(&self, n: usize, reference: Option<usize>) -> Vec<f32> {
        let off = self.offset as f32;
        (0..n)
            .map(|i| match self.kind {
                RopeGrid::Index => {
                    let t = i as f32 + off;
                    match reference {
                        Some(r) => t / n as f32 * r as f32,
                        None => t,
                    }
                }
                RopeGrid::Centered => 2.0 * ((i as f32 + 0.5 + off) / n as f32) - 1.0,
            })
            .collect()
    }

    /// The angle of coordinate `c` at frequency `i` of `bands`.
    fn angles(&self, bands: usize) -> impl Fn(f32, usize) -> f32 + '_ {
        let t = self.temperature as f32;
        move |c, i| {
            let e = i as f32 / bands as f32;
            match self.kind {
                RopeGrid::Index => c * (1.0 / t.powf(e)),
                RopeGrid::Centered => (2.0 * std::f64::consts::PI) as f32 * c / t.powf(e),
            }
        }
    }

    /// The sin and cos tables, `[rows · cols, head_dim]` each, for tokens in row-major order.
    pub(crate) fn tables(&self, grid: [usize; 2], head_dim: usize) -> Result<[TensorData; 2]> {
        self.check(head_dim)?;
        let bands = head_dim / 4;
        let [rows, cols] = grid;
        let reference = |axis: usize| self.ref_grid.map(|g| g[axis]);
        let (r, c) = (self.axis(rows, reference(0)), self.axis(cols, reference(1)));
        let angle = self.angles(bands);
        let (mut sin, mut cos) = (Vec::new(), Vec::new());
        for &ry in &r {
            for &cx in &c {
                let coords = if self.xy { [cx, ry] } else { [ry, cx] };
                let a: Vec<f32> = coords
                    .iter()
                    .flat_map(|&v| (0..bands).map(move |i| (v, i)))
                    .map(|(v, i)| angle(v, i))
                    .collect();
                let layout: Vec<f32> = if self.half {
                    a.iter().chain(a.iter()).copied().collect()
                } else {
                    a.iter().flat_map(|&v| [v, v]).collect()
                };
                sin.extend(layout.iter().map(|v| v.sin()));
                cos.extend(layout.iter().map(|v| v.cos()));
            }
        }
        let shape = [rows * cols, head_dim];
        Ok([TensorData::f32(&shape, sin)?, TensorData::f32(&shape, cos)?])
    }

    /// `x · cos + rotate(x) · sin` on the patch tokens of `x` (`[N, heads, T, head_dim]`), the
    /// first `prefix` tokens unchanged; `tables` as [`Self::tables`] made them, on the backend.
    pub(crate) fn apply<B: Backend>(
        &self,
        b: &B,
        x: &B::Tensor,
        [sin, cos]: &[B::Tensor; 2],
        prefix: usize,
    ) -> Result<B::Tensor> {
        let s = b.shape(x);
        let (n, h, t, d) = (s[0], s[1], s[2], s[3]);
        let patches = b.narrow(x, 2, prefix, t - prefix)?;
        let rotated = if self.half {
            let lo = b.narrow(&patches, 3, 0, d / 2)?;
            let hi = b.narrow(&patches, 3, d / 2, d / 2)?;
            b.cat(&[&b.neg(&hi)?, &lo], 3)?
        } else {
            let pairs = b.reshape(&patches, &[n, h, t - prefix, d / 2, 2])?;
            let even = b.narrow(&pairs, 4, 0, 1)?;
            let odd = b.narrow(&pairs, 4, 1, 1)?;
            b.reshape(&b.cat(&[&b.neg(&odd)?, &even], 4)?, &[n, h, t - prefix, d])?
        };
        let y = b.add(&b.mul(&patches, cos)?, &b.mul(&rotated, sin)?)?;
        if prefix == 0 {
            return Ok(y);
        }
        b.cat(&[&b.narrow(x, 2, 0, prefix)?, &y], 2)
    }
}

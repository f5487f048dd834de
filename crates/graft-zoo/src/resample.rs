//! Resampling of channel-major maps as PyTorch's `F.interpolate` computes it, for ViT position
//! embeddings on load (timm's `resample_abs_pos_embed`: prefix tokens kept). Antialiased
//! bicubic (`mode="bicubic", antialias=True, align_corners=False`: PIL's separable filter,
//! support 2 × scale when shrinking, Keys cubic with a = -0.5, weights normalised per output
//! pixel; graft-backend's [`aa_weights`], shared with graft-data's image resizing) is timm's
//! default; FlexiViT's and RADIO's checkpoints are resampled bilinearly without antialiasing
//! (`mode="bilinear", antialias=False`, corners aligned or not).

use graft_backend::TensorData;
use graft_backend::resample::{Filter, aa_weights};
use graft_core::Result;
use serde::{Deserialize, Serialize};

/// How a ViT's position embeddings are resampled to another grid (timm's
/// `checkpoint_filter_fn` arguments for the architecture).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PosResample {
    /// Antialiased bicubic (timm's default).
    #[default]
    Bicubic,
    /// Bilinear, no antialiasing, `align_corners=False` (FlexiViT).
    Bilinear,
    /// Bilinear, no antialiasing, `align_corners=True` (some RADIO models).
    BilinearAlignCorners,
}

/// PyTorch's `upsample_bilinear2d` taps along one axis: for each output index, the two source
/// indices' start and their weights (`align_corners=False`: source `(o + ½)·in/out − ½` clamped
/// at 0; `True`: `o·(in−1)/(out−1)`).
fn bilinear_weights(input: usize, output: usize, align_corners: bool) -> Vec<(usize, Vec<f64>)> {
    (0..output)
        .map(|o| {
            let src = if align_corners {
                if output > 1 {
                    o as f64 * (input - 1) as f64 / (output - 1) as f64
                } else {
                    0.0
                }
            } else {
                ((o as f64 + 0.5) * input as f64 / output as f64 - 0.5).max(0.0)
            };
            let i0 = (src.floor() as usize).min(input - 1);
            let t = src - i0 as f64;
            if i0 + 1 < input {
                (i0, vec![1.0 - t, t])
            } else {
                (i0, vec![1.0])
            }
        })
        .collect()
}

fn weights(how: PosResample, input: usize, output: usize) -> Vec<(usize, Vec<f64>)> {
    match how {
        PosResample::Bicubic => aa_weights(Filter::Cubic, input, output),
        PosResample::Bilinear => bilinear_weights(input, output, false),
        PosResample::BilinearAlignCorners => bilinear_weights(input, output, true),
    }
}

/// The resampling from `input` to `output` points along one axis as a dense `[output, input]`
/// matrix (row-major): the same taps as [`resample_maps`], for resampling on a backend by matrix
/// products (differentiable).
pub(crate) fn weight_matrix(how: PosResample, input: usize, output: usize) -> Vec<f32> {
    let mut m = vec![0f32; output * input];
    for (o, (lo, ws)) in weights(how, input, output).iter().enumerate() {
        for (j, w) in ws.iter().enumerate() {
            m[o * input + lo + j] = *w as f32;
        }
    }
    m
}

/// Resamples `c` maps of `from = [h, w]` (channel-major, row-major) to `to`.
pub(crate) fn resample_maps(
    how: PosResample,
    x: &[f32],
    c: usize,
    from: [usize; 2],
    to: [usize; 2],
) -> Vec<f32> {
    let [h, w] = from;
    let [oh, ow] = to;
    let wx = weights(how, w, ow);
    let wy = weights(how, h, oh);
    // Horizontal pass then vertical, in f64.
    let mut tmp = vec![0f64; c * h * ow];
    for ch in 0..c {
        for y in 0..h {
            let row = &x[(ch * h + y) * w..(ch * h + y + 1) * w];
            for (ox, (lo, ws)) in wx.iter().enumerate() {
                tmp[(ch * h + y) * ow + ox] = ws
                    .iter()
                    .enumerate()
                    .map(|(k, wt)| wt * row[lo + k] as f64)
                    .sum();
            }
        }
    }
    let mut out = vec![0f32; c * oh * ow];
    for ch in 0..c {
        for (oy, (lo, ws)) in wy.iter().enumerate() {
            for ox in 0..ow {
                let v: f64 = ws
                    .iter()
                    .enumerate()
                    .map(|(k, wt)| wt * tmp[(ch * h + lo + k) * ow + ox])
                    .sum();
                out[(ch * oh + oy) * ow + ox] = v as f32;
            }
        }
    }
    out
}

/// timm's `resample_abs_pos_embed`: keeps the `prefix` tokens' rows, resamples the `side × side`
/// grid to `grid` as `how` says.
pub(crate) fn resample_pos_embed(
    how: PosResample,
    data: &TensorData,
    prefix: usize,
    side: usize,
    grid: [usize; 2],
    dim: usize,
) -> Result<TensorData> {
    let v = data.to_f32();
    let flat: Vec<f32> = v.iter().copied().collect();
    let (head, rest) = flat.split_at(prefix * dim);
    // rest is [side*side, dim] (HWC); resample each channel.
    let mut chw = vec![0f32; dim * side * side];
    for pos in 0..side * side {
        for c in 0..dim {
            chw[c * side * side + pos] = rest[pos * dim + c];
        }
    }
    let out = resample_maps(how, &chw, dim, [side, side], grid);
    let n = grid[0] * grid[1];
    let mut res = Vec::with_capacity((n + prefix) * dim);
    res.extend_from_slice(head);
    for pos in 0..n {
        for c in 0..dim {
            res.push(out[c * n + pos]);
        }
    }
    TensorData::f32(&[1, n + prefix, dim], res).map(|t| t.cast(data.dtype()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_when_sizes_agree_and_constant_preserved() {
        let x: Vec<f32> = (0..2 * 4 * 4).map(|v| v as f32 * 0.5 - 3.0).collect();
        let hows = [
            PosResample::Bicubic,
            PosResample::Bilinear,
            PosResample::BilinearAlignCorners,
        ];
        for how in hows {
            let y = resample_maps(how, &x, 2, [4, 4], [4, 4]);
            for (a, b) in x.iter().zip(&y) {
                assert!((a - b).abs() < 1e-5, "{how:?}: {a} vs {b}");
            }
            let c = vec![1.5f32; 3 * 7 * 5];
            for to in [[3, 2], [11, 13], [1, 1]] {
                let y = resample_maps(how, &c, 3, [7, 5], to);
                assert_eq!(y.len(), 3 * to[0] * to[1]);
                assert!(y.iter().all(|v| (v - 1.5).abs() < 1e-5), "{how:?}");
            }
        }
    }
}

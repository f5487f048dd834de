//! Antialiased resampling weights, as PIL's `ImagingResample` computes them and PyTorch's
//! `F.interpolate(..., antialias=True, align_corners=False)` reproduces: for each output index,
//! the filter (triangle, or Keys cubic with a = -0.5) centred at `(i + 0.5) · scale`, its support
//! widened by the scale when shrinking, weights normalised to sum to 1. graft-zoo resamples ViT
//! position embeddings with them, graft-data resizes images.

/// The separable filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Bilinear (support 1).
    Triangle,
    /// Bicubic, Keys a = -0.5 (support 2), PIL's and PyTorch-antialias's cubic.
    Cubic,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Triangle => 1.0,
            Filter::Cubic => 2.0,
        }
    }
    fn eval(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Filter::Triangle => (1.0 - x).max(0.0),
            Filter::Cubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

/// For each of `output` indices resampled from `input`: the first input index and the
/// normalised weights of the inputs from there on.
pub fn aa_weights(filter: Filter, input: usize, output: usize) -> Vec<(usize, Vec<f64>)> {
    let scale = input as f64 / output as f64;
    let fscale = scale.max(1.0);
    let support = filter.support() * fscale;
    (0..output)
        .map(|i| {
            let center = (i as f64 + 0.5) * scale;
            let lo = (center - support + 0.5).floor().max(0.0) as usize;
            let hi = (center + support + 0.5).floor().min(input as f64).max(0.0) as usize;
            let mut w: Vec<f64> = (lo..hi)
                .map(|j| filter.eval((j as f64 - center + 0.5) / fscale))
                .collect();
            let total: f64 = w.iter().sum();
            if total != 0.0 {
                w.iter_mut().for_each(|v| *v /= total);
            }
            (lo, w)
        })
        .collect()
}

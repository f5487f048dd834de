//! timm's Mixup / CutMix (batch mode): with probability `prob`, mix each batch with itself
//! reversed — blend the images (mixup, λ ~ Beta(α, α)) or paste a box of the reversed batch
//! (cutmix, box area 1 - λ, λ corrected to the box actually pasted) — and mix the one-hot targets
//! with the same λ. The loss's label smoothing then applies to the mixed targets, which equals
//! timm's smoothing of each one-hot target before mixing.

use graft_backend::{InputBatch, TensorData};
use graft_core::{Error, Result};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution};

/// Mixup / CutMix settings (timm's defaults: `mixup_alpha` 0.8, `cutmix_alpha` 1.0, `prob` 1,
/// `switch_prob` 0.5).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Mixup {
    pub mixup_alpha: f64,
    pub cutmix_alpha: f64,
    pub prob: f64,
    /// Probability of CutMix instead of Mixup when both are on.
    pub switch_prob: f64,
}

impl Default for Mixup {
    fn default() -> Self {
        Self {
            mixup_alpha: 0.8,
            cutmix_alpha: 1.0,
            prob: 1.0,
            switch_prob: 0.5,
        }
    }
}

fn beta(alpha: f64, rng: &mut ChaCha8Rng) -> Result<f64> {
    let d = Beta::new(alpha, alpha)
        .map_err(|e| Error::invalid("Mixup", format!("alpha {alpha}: {e}")))?;
    Ok(d.sample(rng))
}

impl Mixup {
    /// Mixes `images` `[N, C, H, W]` with labels into (images, soft targets `[N, classes]`, λ).
    pub fn apply(
        &self,
        images: &TensorData,
        labels: &[usize],
        classes: usize,
        rng: &mut ChaCha8Rng,
    ) -> Result<(TensorData, TensorData, f64)> {
        let s = images.shape().to_vec();
        // pooled features [N, D] blend as [N, D, 1, 1] images (CutMix's box is then all or none)
        let [n, c, h, w] = match s[..] {
            [n, c, h, w] => [n, c, h, w],
            [n, d] => [n, d, 1, 1],
            _ => {
                return Err(Error::shape(
                    "Mixup",
                    format!("inputs must be images [N, C, H, W] or features [N, D], got {s:?}"),
                ));
            }
        };
        if labels.len() != n || labels.iter().any(|&l| l >= classes) {
            return Err(Error::invalid(
                "Mixup",
                format!("{} labels for {n} images / {classes} classes", labels.len()),
            ));
        }
        let x = images.to_f32();
        let flat: Vec<f32> = x.iter().copied().collect();
        let per = c * h * w;
        let mut out = flat.clone();
        let mut lam = 1.0;
        let apply =
            rng.random::<f64>() < self.prob && (self.mixup_alpha > 0.0 || self.cutmix_alpha > 0.0);
        if apply {
            let cutmix = if self.mixup_alpha > 0.0 && self.cutmix_alpha > 0.0 {
                rng.random::<f64>() < self.switch_prob
            } else {
                self.cutmix_alpha > 0.0
            };
            if cutmix {
                let l = beta(self.cutmix_alpha, rng)?;
                let cut = (1.0 - l).sqrt();
                let (ch, cw) = ((h as f64 * cut) as usize, (w as f64 * cut) as usize);
                let cy = rng.random_range(0..h);
                let cx = rng.random_range(0..w);
                let (y0, y1) = (cy.saturating_sub(ch / 2), (cy + ch / 2).min(h));
                let (x0, x1) = (cx.saturating_sub(cw / 2), (cx + cw / 2).min(w));
                for i in 0..n {
                    let j = n - 1 - i;
                    for k in 0..c {
                        for y in y0..y1 {
                            let o = k * h * w + y * w;
                            out[i * per + o + x0..i * per + o + x1]
                                .copy_from_slice(&flat[j * per + o + x0..j * per + o + x1]);
                        }
                    }
                }
                lam = 1.0 - ((y1 - y0) * (x1 - x0)) as f64 / (h * w) as f64;
            } else {
                lam = beta(self.mixup_alpha, rng)?;
                let (a, b) = (lam as f32, (1.0 - lam) as f32);
                for i in 0..n {
                    let j = n - 1 - i;
                    for t in 0..per {
                        out[i * per + t] = a * flat[i * per + t] + b * flat[j * per + t];
                    }
                }
            }
        }
        let mut q = vec![0f32; n * classes];
        for (i, &l) in labels.iter().enumerate() {
            q[i * classes + l] += lam as f32;
            q[i * classes + labels[n - 1 - i]] += (1.0 - lam) as f32;
        }
        Ok((
            TensorData::f32(&s, out)?,
            TensorData::f32(&[n, classes], q)?,
            lam,
        ))
    }
    /// [`Mixup::apply`] on a loader batch: images and pooled features blend; token ids cannot
    /// (an error saying so).
    pub fn apply_batch(
        &self,
        batch: &InputBatch,
        labels: &[usize],
        classes: usize,
        rng: &mut ChaCha8Rng,
    ) -> Result<(InputBatch, TensorData, f64)> {
        let (x, t, lam) = match batch {
            InputBatch::TokenIds { .. } => {
                return Err(Error::invalid(
                    "Mixup",
                    "mixup blends inputs: token ids cannot be blended (turn mixup off for text)",
                ));
            }
            InputBatch::Images(d) | InputBatch::Features(d) => {
                self.apply(d, labels, classes, rng)?
            }
        };
        let x = match batch {
            InputBatch::Images(_) => InputBatch::images(x)?,
            _ => InputBatch::features(x)?,
        };
        Ok((x, t, lam))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn targets_sum_to_one_and_follow_lambda() {
        let imgs = TensorData::f32(&[4, 1, 6, 6], (0..144).map(|v| v as f32).collect()).expect("x");
        let labels = [0, 1, 2, 3];
        for m in [
            Mixup {
                cutmix_alpha: 0.0,
                ..Mixup::default()
            },
            Mixup {
                mixup_alpha: 0.0,
                ..Mixup::default()
            },
        ] {
            let mut rng = ChaCha8Rng::seed_from_u64(5);
            let (x, t, lam) = m.apply(&imgs, &labels, 4, &mut rng).expect("mix");
            assert_eq!(x.shape(), imgs.shape());
            let t = t.to_f32();
            for i in 0..4 {
                let row: f32 = (0..4).map(|j| t[[i, j]]).sum();
                assert!((row - 1.0).abs() < 1e-6);
                assert!((t[[i, labels[i]]] - lam as f32).abs() < 1e-6);
            }
            let again = m
                .apply(&imgs, &labels, 4, &mut ChaCha8Rng::seed_from_u64(5))
                .expect("mix");
            assert_eq!(again.0, x, "seeded");
        }
        let off = Mixup {
            prob: 0.0,
            ..Mixup::default()
        };
        let (x, _, lam) = off
            .apply(&imgs, &labels, 4, &mut ChaCha8Rng::seed_from_u64(1))
            .expect("mix");
        assert_eq!((x, lam), (imgs, 1.0));
    }
}

//! TrivialAugment (Müller & Hutter 2021) as torchvision's `TrivialAugmentWide`: one op drawn
//! uniformly per image, its magnitude drawn uniformly from 31 bins of the "wide" ranges, signed
//! ops negated with probability ½. Works on CHW images in [0, 1]; geometric ops use nearest
//! sampling with fill 0 as torchvision's defaults; colour ops follow torchvision's tensor
//! implementations (PIL's ImageEnhance blends).

use graft_core::Result;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use crate::dataset::Image;
use crate::loader::Transform;

const BINS: usize = 31;

/// One TrivialAugment op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AugOp {
    Identity,
    ShearX,
    ShearY,
    TranslateX,
    TranslateY,
    Rotate,
    Brightness,
    Color,
    Contrast,
    Sharpness,
    Posterize,
    Solarize,
    AutoContrast,
    Equalize,
}

const OPS: [AugOp; 14] = [
    AugOp::Identity,
    AugOp::ShearX,
    AugOp::ShearY,
    AugOp::TranslateX,
    AugOp::TranslateY,
    AugOp::Rotate,
    AugOp::Brightness,
    AugOp::Color,
    AugOp::Contrast,
    AugOp::Sharpness,
    AugOp::Posterize,
    AugOp::Solarize,
    AugOp::AutoContrast,
    AugOp::Equalize,
];

fn lin(lo: f64, hi: f64, bin: usize) -> f64 {
    lo + (hi - lo) * bin as f64 / (BINS - 1) as f64
}

/// torchvision's `TrivialAugmentWide()`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrivialAugment;

impl Transform for TrivialAugment {
    fn apply(&self, s: Image, rng: &mut ChaCha8Rng) -> Result<Image> {
        let op = OPS[rng.random_range(0..OPS.len())];
        let bin = rng.random_range(0..BINS);
        let sign = if rng.random::<bool>() { -1.0 } else { 1.0 };
        Ok(apply_op(s, op, bin, sign))
    }
}

/// Applies `op` at magnitude bin `bin` (0–30) with `sign` (±1, for signed ops).
pub fn apply_op(s: Image, op: AugOp, bin: usize, sign: f64) -> Image {
    let bin = bin.min(BINS - 1);
    match op {
        AugOp::Identity => s,
        AugOp::ShearX => affine(
            &s,
            [1.0, sign * lin(0.0, 0.99, bin), 0.0, 0.0, 1.0, 0.0],
            false,
        ),
        AugOp::ShearY => affine(
            &s,
            [1.0, 0.0, 0.0, sign * lin(0.0, 0.99, bin), 1.0, 0.0],
            false,
        ),
        AugOp::TranslateX => affine(
            &s,
            [
                1.0,
                0.0,
                -(sign * lin(0.0, 32.0, bin)).trunc(),
                0.0,
                1.0,
                0.0,
            ],
            false,
        ),
        AugOp::TranslateY => affine(
            &s,
            [
                1.0,
                0.0,
                0.0,
                0.0,
                1.0,
                -(sign * lin(0.0, 32.0, bin)).trunc(),
            ],
            false,
        ),
        AugOp::Rotate => {
            let a = (sign * lin(0.0, 135.0, bin)).to_radians();
            // inverse map (output → input) of a counter-clockwise rotation about the centre
            affine(&s, [a.cos(), -a.sin(), 0.0, a.sin(), a.cos(), 0.0], true)
        }
        AugOp::Brightness => blend_with(&s, 1.0 + sign * lin(0.0, 0.99, bin), |_, _| 0.0),
        AugOp::Color => {
            let g = gray(&s);
            let hw = s.shape[1] * s.shape[2];
            blend_with(&s, 1.0 + sign * lin(0.0, 0.99, bin), |_, i| g[i % hw])
        }
        AugOp::Contrast => {
            let g = gray(&s);
            let m = g.iter().map(|&v| f64::from(v)).sum::<f64>() / g.len().max(1) as f64;
            blend_with(&s, 1.0 + sign * lin(0.0, 0.99, bin), |_, _| m as f32)
        }
        AugOp::Sharpness => {
            let blurred = smooth(&s);
            blend_with(&s, 1.0 + sign * lin(0.0, 0.99, bin), |_, i| blurred[i])
        }
        AugOp::Posterize => {
            let bits = 8 - (bin as f64 / ((BINS - 1) as f64 / 6.0)).round() as u32;
            let mask = !((1u32 << (8 - bits)) - 1) & 0xff;
            map(s, |v| ((to_u8(v) & mask) as f32) / 255.0)
        }
        AugOp::Solarize => {
            let t = lin(255.0, 0.0, bin) / 255.0;
            map(s, |v| if f64::from(v) >= t { 1.0 - v } else { v })
        }
        AugOp::AutoContrast => per_channel(s, |plane| {
            let (lo, hi) = plane
                .iter()
                .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
            if hi > lo {
                plane
                    .iter_mut()
                    .for_each(|v| *v = ((*v - lo) / (hi - lo)).clamp(0.0, 1.0));
            }
        }),
        AugOp::Equalize => per_channel(s, equalize_plane),
    }
}

fn to_u8(v: f32) -> u32 {
    (v * 255.0).round().clamp(0.0, 255.0) as u32
}

fn map(mut s: Image, f: impl Fn(f32) -> f32) -> Image {
    s.data.iter_mut().for_each(|v| *v = f(*v));
    s
}

fn per_channel(mut s: Image, f: impl Fn(&mut [f32])) -> Image {
    let hw = s.shape[1] * s.shape[2];
    for plane in s.data.chunks_exact_mut(hw.max(1)) {
        f(plane);
    }
    s
}

/// ITU-R 601-2 luma of an RGB image (the image itself when it has one channel).
fn gray(s: &Image) -> Vec<f32> {
    let hw = s.shape[1] * s.shape[2];
    if s.shape[0] < 3 {
        return s.data[..hw].to_vec();
    }
    (0..hw)
        .map(|i| 0.2989 * s.data[i] + 0.587 * s.data[hw + i] + 0.114 * s.data[2 * hw + i])
        .collect()
}

/// `clamp(factor·x + (1 - factor)·other)`, with `other(channel, flat index)`.
fn blend_with(s: &Image, factor: f64, other: impl Fn(usize, usize) -> f32) -> Image {
    let f = factor as f32;
    let hw = s.shape[1] * s.shape[2];
    let data = s
        .data
        .iter()
        .enumerate()
        .map(|(i, &v)| (f * v + (1.0 - f) * other(i / hw.max(1), i)).clamp(0.0, 1.0))
        .collect();
    Image {
        shape: s.shape,
        data,
        label: s.label,
    }
}

/// torchvision's sharpness blur: 3×3 kernel [[1,1,1],[1,5,1],[1,1,1]] / 13 inside, border kept.
fn smooth(s: &Image) -> Vec<f32> {
    let [c, h, w] = s.shape;
    let mut out = s.data.clone();
    if h < 3 || w < 3 {
        return out;
    }
    for ch in 0..c {
        let p = &s.data[ch * h * w..(ch + 1) * h * w];
        for y in 1..h - 1 {
            for x in 1..w - 1 {
                let mut acc = 0.0;
                for dy in 0..3 {
                    for dx in 0..3 {
                        let k = if dy == 1 && dx == 1 { 5.0 } else { 1.0 };
                        acc += k * p[(y + dy - 1) * w + x + dx - 1];
                    }
                }
                out[ch * h * w + y * w + x] = acc / 13.0;
            }
        }
    }
    out
}

/// Nearest-neighbour affine warp. `m` maps output pixel (x, y) to input coordinates:
/// `x' = m0·x + m1·y + m2`, `y' = m3·x + m4·y + m5`, about the centre when `centered`
/// (torchvision's rotate), about the top-left corner otherwise (its shear / translate ops).
fn affine(s: &Image, m: [f64; 6], centered: bool) -> Image {
    let [c, h, w] = s.shape;
    let (cx, cy) = if centered {
        ((w as f64 - 1.0) * 0.5, (h as f64 - 1.0) * 0.5)
    } else {
        (0.0, 0.0)
    };
    let mut out = vec![0f32; s.data.len()];
    for y in 0..h {
        for x in 0..w {
            let (xo, yo) = (x as f64 - cx, y as f64 - cy);
            let sx = (m[0] * xo + m[1] * yo + m[2] + cx).round();
            let sy = (m[3] * xo + m[4] * yo + m[5] + cy).round();
            if sx >= 0.0 && sy >= 0.0 && (sx as usize) < w && (sy as usize) < h {
                for ch in 0..c {
                    out[ch * h * w + y * w + x] =
                        s.data[ch * h * w + sy as usize * w + sx as usize];
                }
            }
        }
    }
    Image {
        shape: s.shape,
        data: out,
        label: s.label,
    }
}

/// torchvision's `equalize` on one 8-bit channel.
fn equalize_plane(plane: &mut [f32]) {
    let mut hist = [0usize; 256];
    for &v in plane.iter() {
        hist[to_u8(v) as usize] += 1;
    }
    let last_nonzero = hist.iter().rposition(|&n| n > 0).map_or(0, |i| hist[i]);
    let step = (plane.len() - last_nonzero) / 255;
    if step == 0 {
        return;
    }
    let mut lut = [0u32; 256];
    let mut cum = step / 2;
    for (i, l) in lut.iter_mut().enumerate() {
        *l = (cum / step).min(255) as u32;
        cum += hist[i];
    }
    for v in plane.iter_mut() {
        *v = lut[to_u8(*v) as usize] as f32 / 255.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn img() -> Image {
        Image {
            shape: [3, 12, 10],
            data: (0..360).map(|i| ((i * 37) % 256) as f32 / 255.0).collect(),
            label: 4,
        }
    }

    #[test]
    fn ops_keep_shape_and_range_and_magnitude_zero_is_identity() {
        for op in OPS {
            for bin in [0, 7, 30] {
                let out = apply_op(img(), op, bin, -1.0);
                assert_eq!(out.shape, [3, 12, 10], "{op:?}");
                assert_eq!(out.label, 4);
                assert!(
                    out.data.iter().all(|v| (0.0..=1.0).contains(v)),
                    "{op:?} bin {bin}"
                );
            }
        }
        for op in [
            AugOp::ShearX,
            AugOp::ShearY,
            AugOp::TranslateX,
            AugOp::TranslateY,
            AugOp::Rotate,
            AugOp::Brightness,
            AugOp::Color,
            AugOp::Contrast,
            AugOp::Sharpness,
            AugOp::Posterize,
        ] {
            let out = apply_op(img(), op, 0, 1.0);
            for (a, b) in out.data.iter().zip(&img().data) {
                assert!(
                    (a - b).abs() < 1e-6,
                    "{op:?} at magnitude 0 changed the image"
                );
            }
        }
    }

    #[test]
    fn translate_moves_pixels_and_autocontrast_stretches() {
        let s = img();
        // bin 1 of 0..32 px = 1.066 px → 1 px
        let t = apply_op(s.clone(), AugOp::TranslateX, 1, 1.0);
        for y in 0..12 {
            assert_eq!(t.data[y * 10], 0.0, "filled");
            for x in 1..10 {
                assert_eq!(t.data[y * 10 + x], s.data[y * 10 + x - 1]);
            }
        }
        let dim = Image {
            shape: [1, 2, 2],
            data: vec![0.2, 0.3, 0.4, 0.5],
            label: 0,
        };
        let a = apply_op(dim, AugOp::AutoContrast, 0, 1.0);
        assert!((a.data[0]).abs() < 1e-6 && (a.data[3] - 1.0).abs() < 1e-6);
        let sol = apply_op(s.clone(), AugOp::Solarize, 30, 1.0);
        for (a, b) in sol.data.iter().zip(&s.data) {
            assert!(
                (a - (1.0 - b)).abs() < 1e-6,
                "threshold 0 inverts everything"
            );
        }
        let mut r1 = ChaCha8Rng::seed_from_u64(9);
        let mut r2 = ChaCha8Rng::seed_from_u64(9);
        assert_eq!(
            TrivialAugment.apply(s.clone(), &mut r1).expect("a"),
            TrivialAugment.apply(s, &mut r2).expect("b")
        );
    }
}

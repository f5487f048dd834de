//! Image transforms on CHW float samples, and timm's eval transform.
//!
//! Resizing is PIL's separable convolution resampling (what torchvision's `Resize` does on PIL
//! images; weights from graft-backend's `aa_weights`): bilinear = triangle filter, bicubic = Keys
//! cubic with a = -0.5, the filter's support widened by the scale when shrinking (antialiasing),
//! weights normalised per output pixel, and —
//! as PIL works on 8-bit images — the result of each pass rounded to 1/255 steps.

use graft_backend::resample::{Filter, aa_weights};
use graft_core::{Error, Result};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use crate::dataset::{Image, RawImage};
use crate::loader::Transform;

/// Resampling filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interp {
    Bilinear,
    Bicubic,
}

impl Interp {
    fn filter(self) -> Filter {
        match self {
            Interp::Bilinear => Filter::Triangle,
            Interp::Bicubic => Filter::Cubic,
        }
    }
}

/// Flattened filter taps: for output `i`, weights `w[off[i]..off[i + 1]]` start at input
/// `lo[i]`.
struct Taps {
    lo: Vec<usize>,
    off: Vec<usize>,
    w: Vec<f32>,
}

fn taps(interp: Interp, input: usize, output: usize) -> Taps {
    let c = aa_weights(interp.filter(), input, output);
    let mut t = Taps {
        lo: Vec::with_capacity(output),
        off: vec![0],
        w: Vec::new(),
    };
    for (lo, ws) in c {
        t.lo.push(lo);
        t.w.extend(ws.iter().map(|&v| v as f32));
        t.off.push(t.w.len());
    }
    t
}

#[inline]
fn round8(v: f32, quantize: bool) -> f32 {
    if quantize {
        (v * 255.0).round().clamp(0.0, 255.0) * (1.0 / 255.0)
    } else {
        v
    }
}

/// Resamples a CHW image to `[oh, ow]` (PIL-style, 8-bit rounding per pass when `quantize`).
pub fn resize(s: &Image, oh: usize, ow: usize, interp: Interp, quantize: bool) -> Result<Image> {
    let [c, h, w] = s.shape;
    resize_rows(
        [c, h, w],
        oh,
        ow,
        interp,
        quantize,
        s.label,
        |ch, y, out| {
            out.copy_from_slice(&s.data[(ch * h + y) * w..(ch * h + y + 1) * w]);
        },
    )
}

/// [`resize`] straight from 8-bit pixels: the same values as converting the image to floats
/// first and resizing (each pixel becomes `v / 255` before it is weighted), without the
/// full-size float copy.
pub fn resize_raw(img: &RawImage, oh: usize, ow: usize, interp: Interp) -> Result<Image> {
    resize_rows(
        [3, img.height, img.width],
        oh,
        ow,
        interp,
        true,
        img.label,
        |ch, y, out| img.row_into(ch, y, out),
    )
}

/// The separable resampling over rows that `row(ch, y, out)` writes (`out` is `w` long).
fn resize_rows(
    [c, h, w]: [usize; 3],
    oh: usize,
    ow: usize,
    interp: Interp,
    quantize: bool,
    label: usize,
    row: impl Fn(usize, usize, &mut [f32]),
) -> Result<Image> {
    if oh == 0 || ow == 0 || h == 0 || w == 0 {
        return Err(Error::invalid("resize", format!("{h}x{w} to {oh}x{ow}")));
    }
    let tx = taps(interp, w, ow);
    let ty = taps(interp, h, oh);
    // Horizontal pass: every row, every output column.
    let mut tmp = vec![0f32; c * h * ow];
    let mut buf = vec![0f32; w];
    for (r, out) in tmp.chunks_exact_mut(ow).enumerate() {
        row(r / h, r % h, &mut buf);
        for (x, o) in out.iter_mut().enumerate() {
            let ws = &tx.w[tx.off[x]..tx.off[x + 1]];
            let src = &buf[tx.lo[x]..tx.lo[x] + ws.len()];
            let v: f32 = ws.iter().zip(src).map(|(a, b)| a * b).sum();
            *o = round8(v, quantize);
        }
    }
    // Vertical pass: accumulate whole rows (contiguous, vectorisable).
    let mut out = vec![0f32; c * oh * ow];
    for ch in 0..c {
        let plane = &tmp[ch * h * ow..(ch + 1) * h * ow];
        for y in 0..oh {
            let dst = &mut out[(ch * oh + y) * ow..(ch * oh + y + 1) * ow];
            let ws = &ty.w[ty.off[y]..ty.off[y + 1]];
            for (k, &wt) in ws.iter().enumerate() {
                let src = &plane[(ty.lo[y] + k) * ow..(ty.lo[y] + k + 1) * ow];
                for (d, v) in dst.iter_mut().zip(src) {
                    *d += wt * v;
                }
            }
            for d in dst.iter_mut() {
                *d = round8(*d, quantize);
            }
        }
    }
    Ok(Image {
        shape: [c, oh, ow],
        data: out,
        label,
    })
}

fn crop(s: &Image, top: usize, left: usize, th: usize, tw: usize) -> Result<Image> {
    let [c, h, w] = s.shape;
    if top + th > h || left + tw > w {
        return Err(Error::invalid(
            "crop",
            format!("{th}x{tw} at ({top}, {left}) of {h}x{w}"),
        ));
    }
    let mut out = Vec::with_capacity(c * th * tw);
    for ch in 0..c {
        for y in top..top + th {
            let o = (ch * h + y) * w + left;
            out.extend_from_slice(&s.data[o..o + tw]);
        }
    }
    Ok(Image {
        shape: [c, th, tw],
        data: out,
        label: s.label,
    })
}

/// Resize the shorter side to `size` (torchvision's `Resize(int)`: the longer side becomes
/// `int(size × long / short)`).
#[derive(Debug, Clone)]
pub struct ResizeShorter {
    pub size: usize,
    pub interp: Interp,
}

impl ResizeShorter {
    fn target(&self, h: usize, w: usize) -> (usize, usize) {
        if h <= w {
            (self.size, (self.size as f64 * w as f64 / h as f64) as usize)
        } else {
            ((self.size as f64 * h as f64 / w as f64) as usize, self.size)
        }
    }
}

impl Transform for ResizeShorter {
    fn apply(&self, s: Image, _rng: &mut ChaCha8Rng) -> Result<Image> {
        let [_, h, w] = s.shape;
        let (oh, ow) = self.target(h, w);
        if (oh, ow) == (h, w) {
            return Ok(s);
        }
        resize(&s, oh, ow, self.interp, true)
    }
    fn apply_raw(&self, img: RawImage, _rng: &mut ChaCha8Rng) -> Result<Image> {
        let (oh, ow) = self.target(img.height, img.width);
        if (oh, ow) == (img.height, img.width) {
            return Ok(img.to_image());
        }
        resize_raw(&img, oh, ow, self.interp)
    }
}

/// Center crop (torchvision's rounding: offsets `round((h - th) / 2)` with Python's `round`,
/// which rounds halves to even: 12.5 → 12, 13.5 → 14).
#[derive(Debug, Clone)]
pub struct CenterCrop {
    pub h: usize,
    pub w: usize,
}

impl Transform for CenterCrop {
    fn apply(&self, s: Image, _rng: &mut ChaCha8Rng) -> Result<Image> {
        let [_, h, w] = s.shape;
        if self.h > h || self.w > w {
            return Err(Error::invalid(
                "CenterCrop",
                format!("{}x{} from a {h}x{w} image", self.h, self.w),
            ));
        }
        let (top, left) = self.offsets(h, w);
        crop(&s, top, left, self.h, self.w)
    }
    fn apply_raw(&self, img: RawImage, _rng: &mut ChaCha8Rng) -> Result<Image> {
        let (h, w) = (img.height, img.width);
        if self.h > h || self.w > w {
            return Err(Error::invalid(
                "CenterCrop",
                format!("{}x{} from a {h}x{w} image", self.h, self.w),
            ));
        }
        let (top, left) = self.offsets(h, w);
        Ok(img.crop(top, left, self.h, self.w)?.to_image())
    }
}

impl CenterCrop {
    fn offsets(&self, h: usize, w: usize) -> (usize, usize) {
        (
            ((h - self.h) as f64 / 2.0).round_ties_even() as usize,
            ((w - self.w) as f64 / 2.0).round_ties_even() as usize,
        )
    }
}

/// torchvision's `RandomResizedCrop`: area fraction in `scale`, aspect ratio log-uniform in
/// `ratio`, 10 tries then a center crop; resized to `size`.
#[derive(Debug, Clone)]
pub struct RandomResizedCrop {
    pub size: [usize; 2],
    pub scale: (f64, f64),
    pub ratio: (f64, f64),
    pub interp: Interp,
}

impl RandomResizedCrop {
    pub fn new(size: usize, interp: Interp) -> Self {
        Self {
            size: [size, size],
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            interp,
        }
    }
}

impl RandomResizedCrop {
    /// The crop window `(top, left, height, width)` for an `h × w` image (torchvision's draws).
    fn window(&self, h: usize, w: usize, rng: &mut ChaCha8Rng) -> (usize, usize, usize, usize) {
        let area = (h * w) as f64;
        let (lr0, lr1) = (self.ratio.0.ln(), self.ratio.1.ln());
        for _ in 0..10 {
            let target =
                area * (self.scale.0 + rng.random::<f64>() * (self.scale.1 - self.scale.0));
            let ar = (lr0 + rng.random::<f64>() * (lr1 - lr0)).exp();
            let cw = (target * ar).sqrt().round_ties_even() as usize;
            let ch = (target / ar).sqrt().round_ties_even() as usize;
            if cw > 0 && ch > 0 && cw <= w && ch <= h {
                let top = rng.random_range(0..=h - ch);
                let left = rng.random_range(0..=w - cw);
                return (top, left, ch, cw);
            }
        }
        let side = h.min(w);
        let c = CenterCrop { h: side, w: side };
        let (top, left) = c.offsets(h, w);
        (top, left, side, side)
    }
}

impl Transform for RandomResizedCrop {
    fn apply(&self, s: Image, rng: &mut ChaCha8Rng) -> Result<Image> {
        let [_, h, w] = s.shape;
        let (top, left, ch, cw) = self.window(h, w, rng);
        let c = crop(&s, top, left, ch, cw)?;
        resize(&c, self.size[0], self.size[1], self.interp, true)
    }
    fn apply_raw(&self, img: RawImage, rng: &mut ChaCha8Rng) -> Result<Image> {
        let (top, left, ch, cw) = self.window(img.height, img.width, rng);
        let c = img.crop(top, left, ch, cw)?;
        resize_raw(&c, self.size[0], self.size[1], self.interp)
    }
}

/// Horizontal flip with probability `p`.
#[derive(Debug, Clone)]
pub struct HorizontalFlip {
    pub p: f64,
}

impl Transform for HorizontalFlip {
    fn apply(&self, mut s: Image, rng: &mut ChaCha8Rng) -> Result<Image> {
        if rng.random::<f64>() < self.p {
            let w = s.shape[2];
            for row in s.data.chunks_exact_mut(w) {
                row.reverse();
            }
        }
        Ok(s)
    }
}

/// Repeats a single channel three times (grayscale → RGB); leaves 3-channel samples alone.
#[derive(Debug, Clone)]
pub struct GrayToRgb;

impl Transform for GrayToRgb {
    fn apply(&self, mut s: Image, _rng: &mut ChaCha8Rng) -> Result<Image> {
        if s.shape[0] == 1 {
            let plane = s.data.clone();
            s.data.extend_from_slice(&plane);
            s.data.extend_from_slice(&plane);
            s.shape[0] = 3;
        }
        Ok(s)
    }
}

/// `(x - mean) / std` per channel.
#[derive(Debug, Clone)]
pub struct Normalize {
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

impl Transform for Normalize {
    fn apply(&self, mut s: Image, _rng: &mut ChaCha8Rng) -> Result<Image> {
        let [c, h, w] = s.shape;
        if self.mean.len() != c || self.std.len() != c {
            return Err(Error::shape(
                "Normalize",
                format!(
                    "{} means / {} stds for {c} channels",
                    self.mean.len(),
                    self.std.len()
                ),
            ));
        }
        if let Some(bad) = self
            .std
            .iter()
            .zip(&self.mean)
            .find(|(sd, m)| !(sd.is_finite() && **sd > 0.0 && m.is_finite()))
        {
            return Err(Error::invalid(
                "Normalize",
                format!(
                    "mean {:?} / std {:?}: each std must be finite and > 0 (std {} divides by zero or gives NaN), each mean finite",
                    self.mean, self.std, bad.0
                ),
            ));
        }
        for ch in 0..c {
            let (m, sd) = (self.mean[ch] as f32, self.std[ch] as f32);
            for v in &mut s.data[ch * h * w..(ch + 1) * h * w] {
                *v = (*v - m) / sd;
            }
        }
        Ok(s)
    }
}

/// Transforms in sequence.
#[derive(Debug)]
pub struct Compose(pub Vec<Box<dyn Transform>>);

impl Transform for Compose {
    fn apply(&self, mut s: Image, rng: &mut ChaCha8Rng) -> Result<Image> {
        for t in &self.0 {
            s = t.apply(s, rng)?;
        }
        Ok(s)
    }
    fn apply_raw(&self, img: RawImage, rng: &mut ChaCha8Rng) -> Result<Image> {
        let Some((first, rest)) = self.0.split_first() else {
            return Ok(img.to_image());
        };
        let mut s = first.apply_raw(img, rng)?;
        for t in rest {
            s = t.apply(s, rng)?;
        }
        Ok(s)
    }
}

/// How the eval transform fits an image to the input size (timm's `crop_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CropMode {
    /// Resize the shorter side to `size / crop_pct`, center-crop.
    #[default]
    Center,
    /// Resize both sides to `size / crop_pct`, center-crop.
    Squash,
    /// Resize the longer side, center-crop or pad (not implemented: an error when applied).
    Border,
}

/// Resizes to exactly `h` × `w` (timm's `Resize((h, w))`, aspect not kept).
#[derive(Debug, Clone)]
pub struct ResizeExact {
    pub h: usize,
    pub w: usize,
    pub interp: Interp,
}

impl Transform for ResizeExact {
    fn apply(&self, s: Image, _rng: &mut ChaCha8Rng) -> Result<Image> {
        if [self.h, self.w] == [s.shape[1], s.shape[2]] {
            return Ok(s);
        }
        resize(&s, self.h, self.w, self.interp, true)
    }
    fn apply_raw(&self, img: RawImage, _rng: &mut ChaCha8Rng) -> Result<Image> {
        if [self.h, self.w] == [img.height, img.width] {
            return Ok(img.to_image());
        }
        resize_raw(&img, self.h, self.w, self.interp)
    }
}

#[derive(Debug, Clone)]
struct Unsupported(&'static str);

impl Transform for Unsupported {
    fn apply(&self, _s: Image, _rng: &mut ChaCha8Rng) -> Result<Image> {
        Err(Error::invalid("eval transform", self.0))
    }
}

/// What the eval / train transforms need from a model's pretrained cfg.
#[derive(Debug, Clone, PartialEq)]
pub struct TransformCfg {
    /// `[channels, height, width]`.
    pub input_size: [usize; 3],
    pub crop_pct: f64,
    pub interp: Interp,
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    pub crop_mode: CropMode,
}

/// timm's `resolve_data_config` + `create_transform(is_training=False)` with center crop:
/// resize the shorter side to `floor(size / crop_pct)`, center-crop to the input size,
/// normalise.
pub fn eval_transform(cfg: &TransformCfg, normalize: bool) -> Compose {
    let [_, h, w] = cfg.input_size;
    let scale = (h.max(w) as f64 / cfg.crop_pct).floor() as usize;
    let fit: Box<dyn Transform> = match cfg.crop_mode {
        CropMode::Center => Box::new(ResizeShorter {
            size: scale,
            interp: cfg.interp,
        }),
        CropMode::Squash => Box::new(ResizeExact {
            h: (h as f64 / cfg.crop_pct).floor() as usize,
            w: (w as f64 / cfg.crop_pct).floor() as usize,
            interp: cfg.interp,
        }),
        CropMode::Border => Box::new(Unsupported(
            "crop_mode = border (resize the longer side and pad) is not implemented in graft",
        )),
    };
    let mut v: Vec<Box<dyn Transform>> = vec![fit, Box::new(CenterCrop { h, w })];
    if normalize {
        v.push(Box::new(Normalize {
            mean: cfg.mean.clone(),
            std: cfg.std.clone(),
        }));
    }
    Compose(v)
}

/// timm's default training transform without auto-augment: random resized crop, horizontal
/// flip 0.5, normalise.
pub fn train_transform(cfg: &TransformCfg) -> Compose {
    let [_, h, w] = cfg.input_size;
    Compose(vec![
        Box::new(RandomResizedCrop {
            size: [h, w],
            ..RandomResizedCrop::new(h, cfg.interp)
        }),
        Box::new(HorizontalFlip { p: 0.5 }),
        Box::new(Normalize {
            mean: cfg.mean.clone(),
            std: cfg.std.clone(),
        }),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn ramp(c: usize, h: usize, w: usize) -> Image {
        Image {
            shape: [c, h, w],
            data: (0..c * h * w).map(|i| (i % 251) as f32 / 255.0).collect(),
            label: 0,
        }
    }

    /// Regression: the offset of a center crop rounds halves to even, as Python's `round` in
    /// torchvision's `center_crop` (201 x 301 → 176: top 12, left 62 — not 13, 63; seen as a 12.7
    /// mean pixel error against timm's `resnet50.tv2_in1k` transform).
    #[test]
    fn center_crop_offsets_round_halves_to_even() {
        let (h, w) = (201, 301);
        let s = Image {
            shape: [1, h, w],
            data: (0..h * w).map(|i| i as f32).collect(),
            label: 0,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let out = CenterCrop { h: 176, w: 176 }
            .apply(s, &mut rng)
            .expect("crop");
        assert_eq!(out.data[0], (12 * w + 62) as f32);
        let s = Image {
            shape: [1, 203, 303],
            data: (0..203 * 303).map(|i| i as f32).collect(),
            label: 0,
        };
        let out = CenterCrop { h: 176, w: 176 }
            .apply(s, &mut rng)
            .expect("crop");
        // 13.5 → 14, 63.5 → 64
        assert_eq!(out.data[0], (14 * 303 + 64) as f32);
    }

    #[test]
    fn resize_keeps_constants_and_identity() {
        let s = Image {
            shape: [3, 9, 13],
            data: vec![0.4; 3 * 9 * 13],
            label: 1,
        };
        for interp in [Interp::Bilinear, Interp::Bicubic] {
            for (oh, ow) in [(4, 5), (20, 31)] {
                let r = resize(&s, oh, ow, interp, false).expect("resize");
                assert!(r.data.iter().all(|v| (v - 0.4).abs() < 1e-6));
            }
            let same = resize(&ramp(1, 7, 7), 7, 7, interp, false).expect("id");
            assert_eq!(same.data.len(), 49);
            for (a, b) in same.data.iter().zip(&ramp(1, 7, 7).data) {
                assert!((a - b).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn eval_transform_shapes_and_crop_offsets() {
        let cfg = TransformCfg {
            input_size: [3, 224, 224],
            crop_pct: 0.95,
            interp: Interp::Bicubic,
            mean: vec![0.0; 3],
            std: vec![1.0; 3],
            crop_mode: CropMode::Center,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let out = eval_transform(&cfg, true)
            .apply(ramp(3, 300, 400), &mut rng)
            .expect("t");
        assert_eq!(out.shape, [3, 224, 224]);
        let flipped = HorizontalFlip { p: 1.0 }
            .apply(ramp(1, 2, 3), &mut rng)
            .expect("flip");
        assert_eq!(flipped.data[0], ramp(1, 2, 3).data[2]);
        let g = GrayToRgb.apply(ramp(1, 2, 2), &mut rng).expect("gray");
        assert_eq!(g.shape, [3, 2, 2]);
        let rrc = RandomResizedCrop::new(32, Interp::Bilinear)
            .apply(ramp(3, 50, 70), &mut rng)
            .expect("rrc");
        assert_eq!(rrc.shape, [3, 32, 32]);
    }
}

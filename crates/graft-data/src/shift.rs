//! Documented domain shifts of real images, for direct-reuse and transfer studies: each is a
//! [`Transform`] with fixed parameters, deterministic per sample (noise is drawn from the
//! loader's per-sample RNG, keyed on (seed, epoch, index)).

use std::fmt;

use graft_core::{Error, Result};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use crate::{Image, Transform};

/// A shift of the pixel values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shift {
    /// `x × factor` (contrast and brightness scaled toward 0).
    Contrast(f32),
    /// Gaussian blur with this σ in pixels (separable kernel of radius ⌈3σ⌉, edge pixels
    /// repeated).
    Blur(f32),
    /// Additive N(0, σ²) noise on every pixel.
    Noise(f32),
    /// `max - x`, `max` the data's range top (1 for the digits): dark strokes on light ground.
    Invert(f32),
    /// Rotation by `k` quarter turns counter-clockwise, as NumPy's `np.rot90(x, k)` on the
    /// (height, width) plane (a non-square image swaps its sides for odd `k`).
    Rot90(u8),
}

impl fmt::Display for Shift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shift::Contrast(c) => write!(f, "contrast x{c}"),
            Shift::Blur(s) => write!(f, "blur sigma {s} px"),
            Shift::Noise(s) => write!(f, "noise sigma {s}"),
            Shift::Invert(m) => write!(f, "inversion ({m} - x)"),
            Shift::Rot90(k) => write!(f, "rotation by {} degrees", 90 * u32::from(*k % 4)),
        }
    }
}

impl Shift {
    /// Parses `contrast:0.25`, `blur:1.0`, `noise:0.3`, `invert` / `invert:1`, `rot90` /
    /// `rot90:2` (quarter turns; the form TOML files and the CLI use).
    pub fn parse(s: &str) -> Result<Self> {
        let (kind, arg) = match s.split_once(':') {
            Some((k, a)) => (k.trim(), Some(a.trim())),
            None => (s.trim(), None),
        };
        let num = |default: Option<f32>| -> Result<f32> {
            match (arg, default) {
                (Some(a), _) => a
                    .parse::<f32>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| {
                        Error::invalid("Shift", format!("{s:?}: {a:?} is not a number"))
                    }),
                (None, Some(d)) => Ok(d),
                (None, None) => Err(Error::invalid(
                    "Shift",
                    format!("{s:?} needs a value, as in {kind}:0.5"),
                )),
            }
        };
        let shift = match kind {
            "contrast" => Shift::Contrast(num(None)?),
            "blur" => Shift::Blur(num(None)?),
            "noise" => Shift::Noise(num(None)?),
            "invert" => Shift::Invert(num(Some(1.0))?),
            "rot90" => {
                let k = num(Some(1.0))?;
                if k.fract() != 0.0 || !(0.0..4.0).contains(&k) {
                    return Err(Error::invalid(
                        "Shift",
                        format!("{s:?}: quarter turns must be 0, 1, 2 or 3"),
                    ));
                }
                Shift::Rot90(k as u8)
            }
            _ => {
                return Err(Error::invalid(
                    "Shift",
                    format!("unknown shift {kind:?} (contrast, blur, noise, invert, rot90)"),
                ));
            }
        };
        match shift {
            Shift::Blur(v) | Shift::Noise(v) if v < 0.0 => Err(Error::invalid(
                "Shift",
                format!("{s:?}: sigma must be >= 0"),
            )),
            _ => Ok(shift),
        }
    }
}

fn kernel(sigma: f32) -> Vec<f32> {
    let r = (3.0 * sigma).ceil() as i64;
    let mut k: Vec<f32> = (-r..=r)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let s: f32 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= s);
    k
}

fn blur(s: &mut Image, sigma: f32) {
    if sigma <= 0.0 {
        return;
    }
    let [c, h, w] = s.shape;
    let k = kernel(sigma);
    let r = (k.len() / 2) as i64;
    let mut tmp = vec![0f32; s.data.len()];
    for ch in 0..c {
        let plane = ch * h * w;
        for y in 0..h {
            for x in 0..w {
                tmp[plane + y * w + x] = k
                    .iter()
                    .enumerate()
                    .map(|(j, kv)| {
                        let xx = (x as i64 + j as i64 - r).clamp(0, w as i64 - 1) as usize;
                        kv * s.data[plane + y * w + xx]
                    })
                    .sum();
            }
        }
        for y in 0..h {
            for x in 0..w {
                s.data[plane + y * w + x] = k
                    .iter()
                    .enumerate()
                    .map(|(j, kv)| {
                        let yy = (y as i64 + j as i64 - r).clamp(0, h as i64 - 1) as usize;
                        kv * tmp[plane + yy * w + x]
                    })
                    .sum();
            }
        }
    }
}

/// One quarter turn counter-clockwise: `out[c][i][j] = x[c][j][w - 1 - i]`, `out` of `[c, w, h]`.
fn rot90(s: Image) -> Image {
    let [c, h, w] = s.shape;
    let mut out = vec![0f32; s.data.len()];
    for ch in 0..c {
        let plane = ch * h * w;
        for i in 0..w {
            for j in 0..h {
                out[plane + i * h + j] = s.data[plane + j * w + (w - 1 - i)];
            }
        }
    }
    Image {
        shape: [c, w, h],
        data: out,
        ..s
    }
}

impl Transform for Shift {
    fn apply(&self, mut s: Image, rng: &mut ChaCha8Rng) -> Result<Image> {
        match *self {
            Shift::Contrast(f) => s.data.iter_mut().for_each(|v| *v *= f),
            Shift::Blur(sigma) => blur(&mut s, sigma),
            Shift::Noise(sigma) => {
                let d = rand_distr::Normal::new(0.0f32, sigma)
                    .map_err(|e| Error::invalid("Shift", format!("noise sigma {sigma}: {e}")))?;
                s.data.iter_mut().for_each(|v| *v += rng.sample(d));
            }
            Shift::Invert(m) => s.data.iter_mut().for_each(|v| *v = m - *v),
            Shift::Rot90(k) => {
                for _ in 0..k % 4 {
                    s = rot90(s);
                }
            }
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn sample() -> Image {
        Image {
            shape: [1, 3, 3],
            data: vec![0., 0., 0., 0., 9., 0., 0., 0., 0.],
            label: 0,
        }
    }

    #[test]
    fn shifts_do_what_they_say() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let b = Shift::Blur(1.0).apply(sample(), &mut rng).expect("blur");
        let flat = Image {
            data: vec![0.7; 9],
            ..sample()
        };
        let fb = Shift::Blur(1.0).apply(flat, &mut rng).expect("blur");
        assert!(
            fb.data.iter().all(|v| (v - 0.7).abs() < 1e-6),
            "edges repeat: {fb:?}"
        );
        assert!(b.data[4] < 9.0 && b.data[0] > 0.0 && (b.data[0] - b.data[8]).abs() < 1e-6);
        let i = Shift::Invert(1.0)
            .apply(sample(), &mut rng)
            .expect("invert");
        assert_eq!(i.data[4], -8.0);
        assert_eq!(i.data[0], 1.0);
        let c = Shift::Contrast(0.5)
            .apply(sample(), &mut rng)
            .expect("contrast");
        assert_eq!(c.data[4], 4.5);
        let n1 = Shift::Noise(0.3)
            .apply(sample(), &mut ChaCha8Rng::seed_from_u64(5))
            .expect("n");
        let n2 = Shift::Noise(0.3)
            .apply(sample(), &mut ChaCha8Rng::seed_from_u64(5))
            .expect("n");
        assert_eq!(n1, n2, "noise is keyed on the per-sample rng");
        assert_ne!(n1, sample());
        assert_eq!(Shift::parse("blur:1.5").expect("p"), Shift::Blur(1.5));
        assert_eq!(Shift::parse("invert").expect("p"), Shift::Invert(1.0));
        assert_eq!(Shift::parse("rot90").expect("p"), Shift::Rot90(1));
        assert_eq!(Shift::parse("rot90:3").expect("p"), Shift::Rot90(3));
        for bad in [
            "blur",
            "noise:x",
            "warp:1",
            "noise:-1",
            "rot90:1.5",
            "rot90:4",
        ] {
            assert!(Shift::parse(bad).is_err(), "{bad}");
        }
    }

    /// `np.rot90` of `[[1, 2, 3], [4, 5, 6]]` is `[[3, 6], [2, 5], [1, 4]]`; twice,
    /// `[[6, 5, 4], [3, 2, 1]]`; four times, the image.
    #[test]
    fn rot90_turns_as_numpy() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let x = Image {
            shape: [1, 2, 3],
            data: vec![1., 2., 3., 4., 5., 6.],
            label: 3,
        };
        let r1 = Shift::Rot90(1).apply(x.clone(), &mut rng).expect("r1");
        assert_eq!(r1.shape, [1, 3, 2]);
        assert_eq!(r1.data, vec![3., 6., 2., 5., 1., 4.]);
        assert_eq!(r1.label, 3);
        let r2 = Shift::Rot90(2).apply(x.clone(), &mut rng).expect("r2");
        assert_eq!(r2.shape, [1, 2, 3]);
        assert_eq!(r2.data, vec![6., 5., 4., 3., 2., 1.]);
        let r4 = Shift::Rot90(3).apply(r1, &mut rng).expect("r4");
        assert_eq!(r4, x);
        assert_eq!(Shift::Rot90(1).to_string(), "rotation by 90 degrees");
    }
}

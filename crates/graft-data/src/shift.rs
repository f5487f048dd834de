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
}

impl fmt::Display for Shift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shift::Contrast(c) => write!(f, "contrast x{c}"),
            Shift::Blur(s) => write!(f, "blur sigma {s} px"),
            Shift::Noise(s) => write!(f, "noise sigma {s}"),
            Shift::Invert(m) => write!(f, "inversion ({m} - x)"),
        }
    }
}

impl Shift {
    /// Parses `contrast:0.25`, `blur:1.0`, `noise:0.3`, `invert` / `invert:1` (the form TOML
    /// files and the CLI use).
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
            _ => {
                return Err(Error::invalid(
                    "Shift",
                    format!("unknown shift {kind:?} (contrast, blur, noise, invert)"),
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
        for bad in ["blur", "noise:x", "warp:1", "noise:-1"] {
            assert!(Shift::parse(bad).is_err(), "{bad}");
        }
    }
}

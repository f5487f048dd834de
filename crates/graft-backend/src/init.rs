//! Parameter initialisers, computed on the host from a seed and the parameter's name, so the same
//! model built on tch and on ndarray starts from bit-identical weights.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use crate::data::{DType, TensorData};
use crate::{Error, Result};

/// How a new parameter's values are drawn. Fans are computed from the shape as PyTorch does
/// (`fan_in = shape[1] * prod(shape[2..])`, `fan_out = shape[0] * prod(shape[2..])`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    Zeros,
    Ones,
    Constant(f64),
    Uniform {
        lo: f64,
        hi: f64,
    },
    Normal {
        mean: f64,
        std: f64,
    },
    /// Normal(mean, std) truncated to [lo, hi] by rejection (timm's `trunc_normal_`).
    TruncNormal {
        mean: f64,
        std: f64,
        lo: f64,
        hi: f64,
    },
    /// PyTorch's default Linear / Conv weight init: kaiming_uniform(a = √5), i.e.
    /// U(-1/√fan_in, 1/√fan_in).
    TorchDefaultWeight,
    /// PyTorch's default Linear / Conv bias init: U(-1/√fan_in, 1/√fan_in) with the weight's
    /// fan_in (given explicitly, since a bias's own shape does not carry it).
    TorchDefaultBias {
        fan_in: usize,
    },
    /// Kaiming (He) normal with `gain = √2` (ReLU), fan_out mode: torchvision's ResNet conv init.
    KaimingNormalFanOut,
}

/// `(fan_in, fan_out)` of a weight shape.
pub fn fans(shape: &[usize]) -> (usize, usize) {
    match shape {
        [] => (1, 1),
        [n] => (*n, *n),
        [o, i, rest @ ..] => {
            let rf: usize = rest.iter().product();
            (i * rf, o * rf)
        }
    }
}

/// FNV-1a, stable across runs and platforms (names → seeds).
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Mixes several u64s into one seed (splitmix64 finaliser over a running combination).
pub fn mix_seed(parts: &[u64]) -> u64 {
    let mut z: u64 = 0x9e37_79b9_7f4a_7c15;
    for p in parts {
        z ^= p
            .wrapping_add(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(z << 6)
            .wrapping_add(z >> 2);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
    }
    z
}

/// f32 uniform [0, 1) samples from a seed: the host RNG behind `rand_uniform` where a backend has
/// no seeded generator of its own.
pub fn uniform_f32(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random::<f32>()).collect()
}

impl Init {
    /// Draws a tensor of `shape` for the parameter `name` under `seed`.
    pub fn sample(
        &self,
        shape: &[usize],
        dtype: DType,
        name: &str,
        seed: u64,
    ) -> Result<TensorData> {
        let n: usize = shape.iter().product();
        let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(&[seed, stable_hash(name.as_bytes())]));
        let (fan_in, fan_out) = fans(shape);
        let uniform = |rng: &mut ChaCha8Rng, lo: f64, hi: f64| -> Vec<f32> {
            (0..n)
                .map(|_| (lo + (hi - lo) * rng.random::<f64>()) as f32)
                .collect()
        };
        let normal = |rng: &mut ChaCha8Rng, mean: f64, std: f64| -> Result<Vec<f32>> {
            let d = Normal::new(mean, std)
                .map_err(|e| Error::invalid("Init::Normal", format!("{name}: {e}")))?;
            Ok((0..n).map(|_| d.sample(rng) as f32).collect())
        };
        let values: Vec<f32> = match *self {
            Init::Zeros => vec![0.0; n],
            Init::Ones => vec![1.0; n],
            Init::Constant(v) => vec![v as f32; n],
            Init::Uniform { lo, hi } => uniform(&mut rng, lo, hi),
            Init::Normal { mean, std } => normal(&mut rng, mean, std)?,
            Init::TruncNormal { mean, std, lo, hi } => {
                if lo >= hi {
                    return Err(Error::invalid(
                        "Init::TruncNormal",
                        format!("{name}: lo >= hi"),
                    ));
                }
                let d = Normal::new(mean, std)
                    .map_err(|e| Error::invalid("Init::TruncNormal", format!("{name}: {e}")))?;
                let mut out = Vec::with_capacity(n);
                while out.len() < n {
                    let v: f64 = d.sample(&mut rng);
                    if (lo..=hi).contains(&v) {
                        out.push(v as f32);
                    }
                }
                out
            }
            Init::TorchDefaultWeight => {
                let b = 1.0 / (fan_in.max(1) as f64).sqrt();
                uniform(&mut rng, -b, b)
            }
            Init::TorchDefaultBias { fan_in } => {
                let b = 1.0 / (fan_in.max(1) as f64).sqrt();
                uniform(&mut rng, -b, b)
            }
            Init::KaimingNormalFanOut => {
                normal(&mut rng, 0.0, (2.0 / fan_out.max(1) as f64).sqrt())?
            }
        };
        let data = TensorData::f32(shape, values)?;
        Ok(match dtype {
            DType::I64 => {
                return Err(Error::dtype(
                    "Init::sample",
                    dtype,
                    format!("{name}: initialisers draw floats"),
                ));
            }
            d => data.cast(d),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_name_same_seed_same_values_and_bounds_hold() {
        let a = Init::TorchDefaultWeight
            .sample(&[8, 4, 3, 3], DType::F32, "conv.weight", 7)
            .expect("ok");
        let b = Init::TorchDefaultWeight
            .sample(&[8, 4, 3, 3], DType::F32, "conv.weight", 7)
            .expect("ok");
        let c = Init::TorchDefaultWeight
            .sample(&[8, 4, 3, 3], DType::F32, "conv2.weight", 7)
            .expect("ok");
        assert_eq!(a, b);
        assert_ne!(a, c);
        let bound = 1.0 / 36f32.sqrt();
        assert!(a.to_f32().iter().all(|v| v.abs() <= bound));
        let t = Init::TruncNormal {
            mean: 0.0,
            std: 1.0,
            lo: -0.5,
            hi: 0.5,
        }
        .sample(&[1000], DType::F32, "x", 1)
        .expect("ok");
        assert!(t.to_f32().iter().all(|v| v.abs() <= 0.5));
        assert_eq!(fans(&[16, 3, 7, 7]), (147, 784));
    }
}

//! Static int8 quantisation of an exported graph (post-training, calibrated): the QDQ form that
//! ONNX Runtime's graph optimiser turns into integer kernels (`QLinearConv`, `QLinearAdd`,
//! integer GEMM — VNNI / AMX where the CPU has them).
//!
//! The recipe (Jacob et al., "Quantization and Training of Neural Networks for Efficient
//! Integer-Arithmetic-Only Inference", CVPR 2018; ONNX Runtime's "quantize ONNX models" guide):
//!
//! - **weights** of every `Conv`, `Gemm` and `MatMul` by a constant: int8, symmetric, one scale
//!   per output channel (`scale_c = max|w_c| / 127`, zero point 0; `/ 64` — 7 bits — on x86
//!   CPUs without VNNI, see [`WeightRange`]); their biases int32 with scale
//!   `scale_input × scale_c`, so the integer accumulator adds them exactly;
//! - **activations** feeding those ops, their outputs, and the `Add`, `Mul`, `Sigmoid` and
//!   `GlobalAveragePool` whose inputs are all quantised (residual adds, SiLU, squeeze-excite):
//!   uint8, one scale and zero point per tensor from the range calibration saw (the range always
//!   holds 0, so zero is exact); a `Relu` right after such an op is folded into its output's
//!   quantisation (zero point 0 clips the negatives, which is what the `Relu` did); a `MaxPool`,
//!   `Flatten` or `Reshape` of a quantised tensor keeps its scale (max and reshapes commute with
//!   quantisation, so ONNX Runtime runs them on the uint8 values);
//! - everything else stays fp32 between a `DequantizeLinear` and a `QuantizeLinear`: the
//!   model's outputs and what reaches them only through reshapes (the features a caller reads
//!   keep full precision), normalisation layers, `Softmax`, GELU, attention's activation ×
//!   activation products, and any op with an input that is not quantised.
//!
//! Calibration is the caller's: [`calibration_targets`] names the tensors whose ranges are
//! needed, [`with_outputs`] makes a graph that returns them, and [`Ranges::observe`] folds what
//! a run returned into min / max ranges. [`quantize`] writes the QDQ graph from those ranges.
//! `plan.rs` decides what is quantised (from the fp32 graph alone, so calibration and
//! quantisation agree); `write.rs` writes the QDQ graph.

use std::collections::{BTreeMap, HashSet};

use graft_core::{Error, Result};

use crate::export::Exported;
use crate::proto::{GraphProto, TensorTypeProto, TypeProto, ValueInfoProto, data_type};

mod plan;
mod write;

pub use write::quantize;

const WHAT: &str = "int8 quantisation";

/// The integer range the weights are quantised to.
///
/// ONNX Runtime multiplies uint8 activations by int8 weights. With VNNI (AVX-512 VNNI, AVX-VNNI;
/// AMX) or on Arm the products accumulate in 32 bits. On x86 CPUs without VNNI its kernels use
/// `vpmaddubsw`, which adds each pair of products in a *saturating* 16-bit lane: two products
/// of 255 × 127 overflow it (64,770 > 32,767) and the result is silently clipped — measured
/// here on an AVX2 machine, 26 % relative error on ConvNeXt-atto and ViT-Ti (0.04 with VNNI).
/// Weights in [-64, 64] keep every pair inside the lane (255 × 64 × 2 = 32,640), for half the
/// weight resolution; this is ONNX Runtime's own advice and range (`reduce_range` in its
/// quantisation guide, "quantize ONNX models"). Measured on that AVX2 machine
/// (`tests/onnx_int8.rs`, max |int8 − fp32| / max |fp32|): ConvNeXt-atto 0.26 → 0.05, ViT-Ti
/// 0.27 → 0.05, ResNet-50 0.03 → 0.04 (rarely saturated, it only loses resolution).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightRange {
    /// [-127, 127]: 8 bits.
    Full,
    /// [-64, 64]: 7 bits, for uint8 × int8 kernels that pair products in 16 bits.
    Reduced,
}

impl WeightRange {
    /// What the CPU this process runs on needs: [`WeightRange::Reduced`] on x86 without VNNI,
    /// else [`WeightRange::Full`]. A graph quantised for one machine and run on another keeps
    /// the first machine's choice: pick explicitly when quantising for deployment elsewhere.
    pub fn for_host() -> Self {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        {
            if std::arch::is_x86_feature_detected!("avx512vnni")
                || std::arch::is_x86_feature_detected!("avxvnni")
            {
                WeightRange::Full
            } else {
                WeightRange::Reduced
            }
        }
        #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
        {
            WeightRange::Full
        }
    }

    /// The largest weight magnitude after quantisation.
    pub(crate) fn max(self) -> f32 {
        match self {
            WeightRange::Full => 127.0,
            WeightRange::Reduced => 64.0,
        }
    }
}

/// The calibrated range (min, max) of each tensor [`calibration_targets`] names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ranges {
    /// Tensor name → (min, max) seen.
    pub by_tensor: BTreeMap<String, (f32, f32)>,
    /// Samples observed (images, when the first dimension is the batch).
    pub samples: usize,
}

impl Ranges {
    /// Widens `name`'s range to hold `values` (one run's output for that tensor). Non-finite
    /// values are an error naming the tensor: a range cannot hold them.
    pub fn observe(&mut self, name: &str, values: &[f32]) -> Result<()> {
        let mut lo = f32::INFINITY;
        let mut hi = f32::NEG_INFINITY;
        for &v in values {
            if !v.is_finite() {
                return Err(Error::invalid(
                    WHAT,
                    format!("calibration: tensor {name} holds a non-finite value ({v})"),
                ));
            }
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if values.is_empty() {
            return Ok(());
        }
        let r = self.by_tensor.entry(name.to_string()).or_insert((lo, hi));
        r.0 = r.0.min(lo);
        r.1 = r.1.max(hi);
        Ok(())
    }

    /// A stable hash of the ranges (bit-exact): what a cache keys quantised results on.
    pub fn fingerprint(&self) -> u64 {
        // FNV-1a: stable across runs and platforms
        let mut h: u64 = 0xcbf29ce484222325;
        let mut eat = |b: &[u8]| {
            for &x in b {
                h ^= x as u64;
                h = h.wrapping_mul(0x100000001b3);
            }
        };
        for (k, (lo, hi)) in &self.by_tensor {
            eat(k.as_bytes());
            eat(&lo.to_bits().to_le_bytes());
            eat(&hi.to_bits().to_le_bytes());
        }
        eat(&(self.samples as u64).to_le_bytes());
        h
    }
}

fn graph_of(e: &Exported) -> Result<&GraphProto> {
    e.proto
        .graph
        .as_ref()
        .ok_or_else(|| Error::invalid(WHAT, "the model has no graph"))
}

/// The tensors whose ranges [`quantize`] needs, in graph order.
pub fn calibration_targets(e: &Exported) -> Result<Vec<String>> {
    let p = plan::plan(graph_of(e)?);
    Ok(p.acts
        .into_iter()
        .filter(|(_, s)| *s == plan::Source::Calibrated)
        .map(|(n, _)| n)
        .collect())
}

/// The serialized model with `names` added to its outputs (fp32, shape left to the runtime):
/// run it over calibration data and pass each output to [`Ranges::observe`].
pub fn with_outputs(e: &Exported, names: &[String]) -> Result<Vec<u8>> {
    use prost::Message;
    let mut proto = e.proto.clone();
    let g = proto
        .graph
        .as_mut()
        .ok_or_else(|| Error::invalid(WHAT, "the model has no graph"))?;
    let have: HashSet<String> = g.output.iter().map(|o| o.name.clone()).collect();
    for n in names.iter().filter(|n| !have.contains(*n)) {
        g.output.push(ValueInfoProto {
            name: n.clone(),
            r#type: Some(TypeProto {
                tensor_type: Some(TensorTypeProto {
                    elem_type: data_type::FLOAT,
                    shape: None,
                }),
            }),
        });
    }
    Ok(proto.encode_to_vec())
}

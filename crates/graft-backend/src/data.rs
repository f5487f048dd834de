//! Host-side tensor values: how tensors enter and leave a backend, and what tests compare.

use half::bf16;
use ndarray::{ArrayD, IxDyn};

use crate::{Error, Result};

/// NumPy broadcast of two shapes, or None when they are incompatible.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let r = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| {
        if i + s.len() >= r {
            s[i + s.len() - r]
        } else {
            1
        }
    };
    (0..r)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

/// Checks that `dims` reorders the `rank` dims of a tensor (each once): `permute`'s argument.
pub fn check_permutation(dims: &[usize], rank: usize) -> Result<()> {
    let mut seen = vec![false; rank];
    if dims.len() != rank
        || dims
            .iter()
            .any(|&d| d >= rank || std::mem::replace(&mut seen[d], true))
    {
        return Err(Error::invalid(
            "permute",
            format!("{dims:?} is not a permutation of 0..{rank}"),
        ));
    }
    Ok(())
}

/// Element types graft tensors carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float: parameters, activations.
    F32,
    /// bfloat16: the opt-in fast path (AMX on this CPU).
    BF16,
    /// 64-bit integer: token ids, labels, indices, BatchNorm's `num_batches_tracked`.
    I64,
}

impl DType {
    /// True for F32 and BF16.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::BF16)
    }
    /// The PyTorch / safetensors spelling.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::BF16 => "bfloat16",
            DType::I64 => "int64",
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A tensor's value on the host, in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    F32(ArrayD<f32>),
    BF16(ArrayD<bf16>),
    I64(ArrayD<i64>),
}

impl TensorData {
    /// An f32 tensor from a shape and row-major values.
    pub fn f32(shape: &[usize], values: Vec<f32>) -> Result<Self> {
        ArrayD::from_shape_vec(IxDyn(shape), values)
            .map(TensorData::F32)
            .map_err(|e| Error::shape("TensorData::f32", e.to_string()))
    }
    /// An i64 tensor from a shape and row-major values.
    pub fn i64(shape: &[usize], values: Vec<i64>) -> Result<Self> {
        ArrayD::from_shape_vec(IxDyn(shape), values)
            .map(TensorData::I64)
            .map_err(|e| Error::shape("TensorData::i64", e.to_string()))
    }
    /// A 0-d f32 scalar.
    pub fn scalar_f32(v: f32) -> Self {
        TensorData::F32(ArrayD::from_elem(IxDyn(&[]), v))
    }
    /// Shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            TensorData::F32(a) => a.shape(),
            TensorData::BF16(a) => a.shape(),
            TensorData::I64(a) => a.shape(),
        }
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape().iter().product()
    }
    /// True when it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Element type.
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::BF16(_) => DType::BF16,
            TensorData::I64(_) => DType::I64,
        }
    }
    /// The values' bytes, little-endian, row-major (the layout safetensors and ONNX's
    /// `raw_data` store).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        match self {
            TensorData::F32(a) => a
                .as_standard_layout()
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            TensorData::BF16(a) => a
                .as_standard_layout()
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            TensorData::I64(a) => a
                .as_standard_layout()
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        }
    }
    /// The values as f32 (bf16 widened exactly, i64 rounded), in standard layout.
    pub fn to_f32(&self) -> ArrayD<f32> {
        match self {
            TensorData::F32(a) => a.as_standard_layout().into_owned(),
            TensorData::BF16(a) => a.mapv(f32::from),
            TensorData::I64(a) => a.mapv(|v| v as f32),
        }
    }
    /// The values as f64 (exact for every dtype but i64 beyond 2^53).
    pub fn to_f64(&self) -> ArrayD<f64> {
        match self {
            TensorData::F32(a) => a.mapv(f64::from),
            TensorData::BF16(a) => a.mapv(f64::from),
            TensorData::I64(a) => a.mapv(|v| v as f64),
        }
    }
    /// Converts to another dtype (float → i64 truncates toward zero, as PyTorch's `.long()`).
    pub fn cast(&self, dtype: DType) -> TensorData {
        match (self, dtype) {
            (TensorData::F32(_), DType::F32)
            | (TensorData::BF16(_), DType::BF16)
            | (TensorData::I64(_), DType::I64) => self.clone(),
            (_, DType::F32) => TensorData::F32(self.to_f32()),
            (TensorData::I64(a), DType::BF16) => {
                TensorData::BF16(a.mapv(|v| bf16::from_f64(v as f64)))
            }
            (_, DType::BF16) => TensorData::BF16(self.to_f32().mapv(bf16::from_f32)),
            (TensorData::F32(a), DType::I64) => TensorData::I64(a.mapv(|v| v as i64)),
            (TensorData::BF16(a), DType::I64) => TensorData::I64(a.mapv(|v| f32::from(v) as i64)),
        }
    }
    /// The f32 array, or a dtype error naming `op`.
    pub fn as_f32(&self, op: &'static str) -> Result<&ArrayD<f32>> {
        match self {
            TensorData::F32(a) => Ok(a),
            other => Err(Error::dtype(op, other.dtype(), "expected float32")),
        }
    }
    /// The i64 array, or a dtype error naming `op`.
    pub fn as_i64(&self, op: &'static str) -> Result<&ArrayD<i64>> {
        match self {
            TensorData::I64(a) => Ok(a),
            other => Err(Error::dtype(op, other.dtype(), "expected int64")),
        }
    }
    /// Largest absolute elementwise difference to `other` (as f64), or a shape error.
    pub fn max_abs_diff(&self, other: &TensorData) -> Result<f64> {
        if self.shape() != other.shape() {
            return Err(Error::shape(
                "max_abs_diff",
                format!("shapes differ: {:?} vs {:?}", self.shape(), other.shape()),
            ));
        }
        let (a, b) = (self.to_f64(), other.to_f64());
        Ok(a.iter().zip(b.iter()).fold(0.0f64, |m, (x, y)| {
            if x.is_nan() && y.is_nan() {
                m
            } else {
                m.max((x - y).abs())
            }
        }))
    }
}

impl From<ArrayD<f32>> for TensorData {
    fn from(a: ArrayD<f32>) -> Self {
        TensorData::F32(a)
    }
}
impl From<ArrayD<i64>> for TensorData {
    fn from(a: ArrayD<i64>) -> Self {
        TensorData::I64(a)
    }
}
impl From<ArrayD<bf16>> for TensorData {
    fn from(a: ArrayD<bf16>) -> Self {
        TensorData::BF16(a)
    }
}

//! graft-ndarray: graft's [`Backend`] in pure Rust over ndarray 0.16 — inference only.
//!
//! Owns: CPU kernels for every backend op: broadcasting elementwise maths, reductions, indexing,
//! matmul and linear on the `gemm` crate's kernels (module `gemm`, the crate's one `unsafe` call,
//! behind a shape-checked safe wrapper), conv2d as im2col + GEMM straight into the output planes
//! (images in parallel when the batch fills the thread pool; depthwise and 1×1 special-cased),
//! pools, norms. bf16 tensors are computed in f32 and rounded once per op (as libtorch's CPU
//! kernels do).
//!
//! Must not know: autograd (it does not implement `AutodiffBackend`, so training code does not
//! compile against it), training-mode BatchNorm, dropout (both return [`Error::Unsupported`]),
//! libtorch, model families, files, TOML.
//!
//! ```compile_fail
//! // Training needs AutodiffBackend, which the inference-only backend does not implement.
//! fn train<B: graft_backend::AutodiffBackend>(_b: &B) {}
//! train(&graft_ndarray::NdArray::default());
//! ```

mod conv;
mod gemm;
mod kernels;

use graft_backend::DType;
use graft_core::{Error, Result};
use half::bf16;
use ndarray::{ArcArray, ArrayD, Axis, IxDyn};

/// The ndarray backend (CPU, pure Rust).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NdArray;

/// An ndarray tensor: a shared, copy-on-write array of one of graft's dtypes.
#[derive(Debug, Clone)]
pub enum NdTensor {
    F32(ArcArray<f32, IxDyn>),
    BF16(ArcArray<bf16, IxDyn>),
    I64(ArcArray<i64, IxDyn>),
}

impl NdTensor {
    fn dtype(&self) -> DType {
        match self {
            NdTensor::F32(_) => DType::F32,
            NdTensor::BF16(_) => DType::BF16,
            NdTensor::I64(_) => DType::I64,
        }
    }
    fn shape(&self) -> &[usize] {
        match self {
            NdTensor::F32(a) => a.shape(),
            NdTensor::BF16(a) => a.shape(),
            NdTensor::I64(a) => a.shape(),
        }
    }
    /// Float values as f32 (bf16 widened), or a dtype error naming `op`.
    fn f32(&self, op: &'static str) -> Result<std::borrow::Cow<'_, ArcArray<f32, IxDyn>>> {
        match self {
            NdTensor::F32(a) => Ok(std::borrow::Cow::Borrowed(a)),
            NdTensor::BF16(a) => Ok(std::borrow::Cow::Owned(a.mapv(f32::from).into_shared())),
            NdTensor::I64(_) => Err(Error::dtype(op, DType::I64, "float op")),
        }
    }
    /// Wraps an f32 result in `like`'s float dtype (bf16 rounded once).
    fn float_like(like: DType, a: ArrayD<f32>) -> NdTensor {
        match like {
            DType::BF16 => NdTensor::BF16(a.mapv(bf16::from_f32).into_shared()),
            _ => NdTensor::F32(a.into_shared()),
        }
    }
}

/// Applies a shape-only (dtype-generic) operation to any tensor.
macro_rules! each {
    ($x:expr, $a:ident => $body:expr) => {
        match $x {
            NdTensor::F32($a) => NdTensor::F32($body),
            NdTensor::BF16($a) => NdTensor::BF16($body),
            NdTensor::I64($a) => NdTensor::I64($body),
        }
    };
}

/// Same as `each!` for fallible bodies.
macro_rules! each_try {
    ($x:expr, $a:ident => $body:expr) => {
        match $x {
            NdTensor::F32($a) => NdTensor::F32($body?),
            NdTensor::BF16($a) => NdTensor::BF16($body?),
            NdTensor::I64($a) => NdTensor::I64($body?),
        }
    };
}

fn unsupported(what: &str) -> Error {
    Error::Unsupported {
        backend: "ndarray",
        what: what.to_string(),
        why: "graft-ndarray is inference-only; train on graft-tch".to_string(),
    }
}

fn check_dim(op: &'static str, dim: usize, rank: usize) -> Result<Axis> {
    if dim < rank {
        Ok(Axis(dim))
    } else {
        Err(Error::invalid(
            op,
            format!("dim {dim} out of range for rank {rank}"),
        ))
    }
}

impl NdArray {
    /// `f` on every element of an f32 tensor, in place when this handle is the array's only
    /// owner (`ArcArray` copies on write otherwise, so a shared array is never changed).
    fn unary_consume(
        &self,
        op: &'static str,
        x: NdTensor,
        f: impl Fn(f32) -> f32 + Sync + Send,
    ) -> Result<NdTensor> {
        match x {
            NdTensor::F32(mut a) => {
                if a.len() >= kernels::PAR_MIN {
                    a.par_mapv_inplace(f);
                } else {
                    a.mapv_inplace(f);
                }
                Ok(NdTensor::F32(a))
            }
            other => self.unary(op, &other, f),
        }
    }
    fn unary(
        &self,
        op: &'static str,
        x: &NdTensor,
        f: impl Fn(f32) -> f32 + Sync,
    ) -> Result<NdTensor> {
        let a = x.f32(op)?;
        Ok(NdTensor::float_like(
            x.dtype(),
            kernels::par_map(&a.view(), f),
        ))
    }
    fn binary(
        &self,
        op: &'static str,
        a: &NdTensor,
        b: &NdTensor,
        ff: impl Fn(f32, f32) -> f32 + Sync,
        fi: Option<fn(i64, i64) -> i64>,
    ) -> Result<NdTensor> {
        if a.dtype() != b.dtype() {
            return Err(Error::dtype(
                op,
                format!("{} with {}", a.dtype(), b.dtype()),
                "operands must have the same dtype (cast first)",
            ));
        }
        match (a, b, fi) {
            (NdTensor::I64(x), NdTensor::I64(y), Some(fi)) => Ok(NdTensor::I64(
                kernels::zip_bcast(op, &x.view(), &y.view(), fi)?.into_shared(),
            )),
            (NdTensor::I64(_), _, None) => Err(Error::dtype(op, DType::I64, "float op")),
            _ => {
                let (x, y) = (a.f32(op)?, b.f32(op)?);
                Ok(NdTensor::float_like(
                    a.dtype(),
                    kernels::zip_bcast(op, &x.view(), &y.view(), ff)?,
                ))
            }
        }
    }
}

fn reduce_dims(op: &'static str, rank: usize, dims: &[usize]) -> Result<Vec<usize>> {
    let mut d: Vec<usize> = if dims.is_empty() {
        (0..rank).collect()
    } else {
        dims.to_vec()
    };
    for &x in &d {
        check_dim(op, x, rank)?;
    }
    d.sort_unstable();
    d.dedup();
    Ok(d)
}

fn sum_generic<T>(a: &ArcArray<T, IxDyn>, dims: &[usize], keepdim: bool) -> ArrayD<T>
where
    T: Clone + num_traits::Zero + std::ops::Add<Output = T>,
{
    let mut out = a.to_owned();
    for &d in dims.iter().rev() {
        out = out.sum_axis(Axis(d));
    }
    if keepdim {
        for &d in dims {
            out.insert_axis_inplace(Axis(d));
        }
    }
    out
}

mod ops;

#[cfg(test)]
mod tests {
    use super::*;
    use graft_backend::{Backend, Conv2dOpts, TensorData};
    use graft_backend::{Ctx, ModeTable, ParamBuilder, nn};

    graft_backend::conformance_tests!(NdArray, inference_only = true);

    #[test]
    fn training_forward_is_a_clear_error() {
        let pb = ParamBuilder::new(NdArray, 0);
        nn::init_batch_norm(&pb.root().sub("bn").expect("path"), 3).expect("bn");
        let p = pb.finish();
        let x = NdArray.zeros(&[2, 3, 4, 4], DType::F32).expect("x");
        let modes = ModeTable::new();
        let err =
            nn::batch_norm(&p, "bn", &x, &Ctx::train(&modes, 0, 0), 1e-5, 0.1).expect_err("train");
        let msg = err.to_string();
        assert!(
            msg.contains("ndarray") && msg.contains("inference-only"),
            "{msg}"
        );
        let err =
            nn::dropout(&NdArray, &x, 0.1, &Ctx::train(&modes, 0, 0), "drop").expect_err("dropout");
        assert!(matches!(err, Error::Unsupported { .. }), "{err}");
        // eval mode runs
        nn::batch_norm(&p, "bn", &x, &Ctx::eval(), 1e-5, 0.1).expect("eval");
        nn::dropout(&NdArray, &x, 0.1, &Ctx::eval(), "drop").expect("eval dropout is identity");
    }

    #[test]
    fn bad_shapes_are_errors_not_panics() {
        let b = NdArray;
        let x = b.zeros(&[2, 3], DType::F32).expect("x");
        let y = b.zeros(&[4, 5], DType::F32).expect("y");
        assert!(b.add(&x, &y).is_err());
        assert!(b.matmul(&x, &y).is_err());
        assert!(b.reshape(&x, &[5]).is_err());
        assert!(b.permute(&x, &[0, 0]).is_err());
        assert!(b.narrow(&x, 1, 2, 2).is_err());
        let idx = b
            .from_data(&TensorData::i64(&[1], vec![9]).expect("idx"))
            .expect("idx");
        assert!(b.index_select(&x, 0, &idx).is_err());
        let w = b.zeros(&[4, 2, 3, 3], DType::F32).expect("w");
        let img = b.zeros(&[1, 3, 5, 5], DType::F32).expect("img");
        assert!(
            b.conv2d(&img, &w, None, Conv2dOpts::new()).is_err(),
            "channel mismatch"
        );
        assert!(b.sum(&x, &[2], false).is_err());
    }
}

//! graft-tch: graft's [`Backend`] and [`AutodiffBackend`] over libtorch, through tch 0.26.
//!
//! Owns: the mapping of every backend op to libtorch kernels (fallible `f_*` calls only — a
//! libtorch exception becomes [`Error::Backend`] naming the op, never a panic), autograd
//! (`backward` computes gradients with `torch::autograd::grad`-style engine calls and accumulates
//! nothing on the tensors, so "no gradient" really is none), no-grad scopes, in-place assignment,
//! device selection (CPU default, CUDA when present) and the libtorch rpath (build.rs).
//!
//! Must not know: model families, parameter names or groups (graft-backend's store owns those —
//! tch's `VarStore` / `nn::Optimizer` are not used), optimizers, TOML, files — except
//! [`read_pth`], libtorch's own unpickler (it runs the file's pickle program; graft-zoo's
//! `torch_file` reads the same files without running anything and is what graft uses — this
//! one stays as a cross-check in the parity tests).

mod autodiff;
mod ops;
mod pth;
pub use pth::read_pth;

use graft_backend::DType;
use graft_core::{Error, Result};
use tch::{Device, Kind, TchError, Tensor};

/// The libtorch backend on one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tch {
    device: Device,
}

impl Default for Tch {
    fn default() -> Self {
        Self::cpu()
    }
}

impl Tch {
    /// CPU.
    pub fn cpu() -> Self {
        Self {
            device: Device::Cpu,
        }
    }
    /// CUDA device `index`, or an error if libtorch sees no such GPU.
    pub fn cuda(index: usize) -> Result<Self> {
        let n = tch::Cuda::device_count();
        if (index as i64) < n {
            Ok(Self {
                device: Device::Cuda(index),
            })
        } else {
            Err(Error::Unsupported {
                backend: "tch",
                what: format!("cuda:{index}"),
                why: format!("libtorch sees {n} CUDA device(s)"),
            })
        }
    }
    /// CUDA 0 if available, else CPU.
    pub fn best_available() -> Self {
        Self {
            device: Device::cuda_if_available(),
        }
    }
    /// The tch device.
    pub fn tch_device(&self) -> Device {
        self.device
    }
    /// Sets libtorch's intra-op thread count (results depend on it: keep it fixed for
    /// reproducible runs).
    pub fn set_num_threads(n: usize) {
        tch::set_num_threads(n.max(1) as i32);
    }
    /// libtorch's intra-op thread count.
    pub fn num_threads() -> usize {
        tch::get_num_threads().max(1) as usize
    }
}

/// A libtorch tensor handle. `clone` is a shallow clone: same storage, same autograd identity.
#[derive(Debug)]
pub struct TchTensor(pub Tensor);

impl Clone for TchTensor {
    fn clone(&self) -> Self {
        TchTensor(self.0.shallow_clone())
    }
}

impl TchTensor {
    /// The underlying tch tensor.
    pub fn inner(&self) -> &Tensor {
        &self.0
    }
}

fn err(op: &'static str) -> impl Fn(TchError) -> Error {
    move |e| Error::Backend {
        op: format!("tch {op}"),
        msg: e.to_string(),
    }
}

fn kind_of(d: DType) -> Kind {
    match d {
        DType::F32 => Kind::Float,
        DType::BF16 => Kind::BFloat16,
        DType::I64 => Kind::Int64,
    }
}

fn dtype_of(k: Kind) -> Result<DType> {
    match k {
        Kind::Float => Ok(DType::F32),
        Kind::BFloat16 => Ok(DType::BF16),
        Kind::Int64 => Ok(DType::I64),
        other => Err(Error::dtype(
            "tch",
            format!("{other:?}"),
            "graft tensors are float32, bfloat16 or int64",
        )),
    }
}

fn ishape(s: &[usize]) -> Vec<i64> {
    s.iter().map(|&v| v as i64).collect()
}

fn pair(p: (usize, usize)) -> [i64; 2] {
    [p.0 as i64, p.1 as i64]
}

fn t(x: Tensor) -> TchTensor {
    TchTensor(x)
}

fn check_dim(op: &'static str, dim: usize, rank: usize) -> Result<i64> {
    if dim < rank.max(1) {
        Ok(dim as i64)
    } else {
        Err(Error::invalid(
            op,
            format!("dim {dim} out of range for rank {rank}"),
        ))
    }
}

/// The dims a reduction covers: all of them when `dims` is empty, each checked against `rank`.
fn reduce_dims(op: &'static str, dims: &[usize], rank: usize) -> Result<Vec<i64>> {
    if dims.is_empty() {
        return Ok((0..rank as i64).collect());
    }
    dims.iter().map(|&d| check_dim(op, d, rank)).collect()
}

impl Tch {
    fn float_only(&self, op: &'static str, x: &TchTensor) -> Result<()> {
        match dtype_of(x.0.kind())? {
            DType::I64 => Err(Error::dtype(op, DType::I64, "float op")),
            _ => Ok(()),
        }
    }
    fn same_kind(&self, op: &'static str, a: &TchTensor, b: &TchTensor) -> Result<()> {
        if a.0.kind() != b.0.kind() {
            return Err(Error::dtype(
                op,
                format!("{:?} with {:?}", a.0.kind(), b.0.kind()),
                "operands must have the same dtype (cast first)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use graft_backend::{Backend, MemoryFormat};

    graft_backend::conformance_tests!(Tch::cpu(), inference_only = false, autodiff);

    #[test]
    fn dropout_is_seeded_and_scaled() {
        let b = Tch::cpu();
        let x = b.full(&[200, 100], 1.0, DType::F32).expect("full");
        let a = b
            .to_data(&b.dropout(&x, 0.3, 42).expect("dropout"))
            .expect("data");
        let again = b
            .to_data(&b.dropout(&x, 0.3, 42).expect("dropout"))
            .expect("data");
        let other = b
            .to_data(&b.dropout(&x, 0.3, 43).expect("dropout"))
            .expect("data");
        assert_eq!(a, again, "same seed, same mask");
        assert_ne!(a, other, "another seed, another mask");
        let v = a.to_f64();
        let zeros = v.iter().filter(|x| **x == 0.0).count() as f64 / v.len() as f64;
        assert!((zeros - 0.3).abs() < 0.02, "zero fraction {zeros}");
        assert!(v.iter().all(|x| *x == 0.0 || (*x - 1.0 / 0.7).abs() < 1e-6));
        let dp = b
            .to_data(&b.drop_path(&x, 0.5, 7).expect("drop_path"))
            .expect("data")
            .to_f64();
        for row in dp.rows() {
            assert!(
                row.iter().all(|v| *v == row[0]),
                "drop_path drops whole samples"
            );
        }
        assert!(b.dropout(&x, 1.0, 0).is_err());
    }

    #[test]
    fn libtorch_errors_are_typed_not_panics() {
        let b = Tch::cpu();
        let x = b.zeros(&[2, 3], DType::F32).expect("zeros");
        let y = b.zeros(&[4, 5], DType::F32).expect("zeros");
        let e = b.matmul(&x, &y).expect_err("bad matmul");
        assert!(matches!(e, Error::Backend { .. }), "{e}");
        assert!(e.to_string().contains("matmul"), "{e}");
        let e = b.reshape(&x, &[7]).expect_err("bad reshape");
        assert!(e.to_string().contains("element counts"), "{e}");
        let i = b.zeros(&[2], DType::I64).expect("zeros");
        assert!(b.add(&x, &i).is_err(), "mixed dtypes are refused");
    }

    #[test]
    fn channels_last_keeps_values() {
        let b = Tch::cpu();
        let x = b
            .from_data(&graft_backend::conformance::rnd(
                &[2, 3, 4, 5],
                1,
                -1.0,
                1.0,
            ))
            .expect("x");
        let y = b
            .to_memory_format(&x, MemoryFormat::ChannelsLast)
            .expect("cl");
        assert_eq!(y.0.stride(), vec![60, 1, 15, 3]);
        assert_eq!(b.to_data(&y).expect("y"), b.to_data(&x).expect("x"));
    }
}

/// The same suite on CUDA: `cargo test -p graft-tch --features cuda` on a machine with a GPU.
#[cfg(all(test, feature = "cuda"))]
mod cuda_tests {
    use super::*;

    graft_backend::conformance_tests!(
        Tch::cuda(0).expect("the cuda feature needs a CUDA device"),
        inference_only = false,
        autodiff
    );
}

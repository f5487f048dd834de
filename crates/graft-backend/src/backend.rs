//! The [`Backend`] trait (forward ops) and [`AutodiffBackend`] (training capabilities).
//!
//! Thin by design: a backend implements ~45 required ops; the rest (relu, silu, softmax, linear,
//! layer_norm, attention, dropout, ...) are provided as compositions a backend may override with a
//! native kernel. All dims are `usize` (no negative indexing); reshape takes the full shape.

use std::fmt::Debug;

use crate::data::{DType, TensorData};
use crate::opts::{
    AdamWStep, BatchNormMode, BatchNormTensors, Conv2dOpts, GeluApprox, MemoryFormat, Pool2dOpts,
};
use crate::{Error, Result};

/// A tensor library graft models run on. The value of a `Backend` is its device (CPU, `cuda:0`).
pub trait Backend: Clone + Send + Sync + Debug + 'static {
    /// A tensor handle. Cloning is cheap and shares storage (in-place updates are seen by clones).
    type Tensor: Clone + Send + Debug;

    /// Short backend name for messages: `"tch"`, `"ndarray"`.
    fn name(&self) -> &'static str;
    /// The device, e.g. `"cpu"`, `"cuda:0"`.
    fn device(&self) -> String;

    // ---- data in / out -----------------------------------------------------------------------
    /// Uploads a host value. (`self` is the device the tensor goes to.)
    #[allow(clippy::wrong_self_convention)]
    fn from_data(&self, data: &TensorData) -> Result<Self::Tensor>;
    /// Downloads a tensor's value.
    fn to_data(&self, x: &Self::Tensor) -> Result<TensorData>;
    /// Shape.
    fn shape(&self, x: &Self::Tensor) -> Vec<usize>;
    /// Element type.
    fn dtype(&self, x: &Self::Tensor) -> DType;
    /// Element type conversion (float → i64 truncates toward zero).
    fn cast(&self, x: &Self::Tensor, dtype: DType) -> Result<Self::Tensor>;
    /// f32 uniform samples in [0, 1), fully determined by `seed` (same seed, same values).
    fn rand_uniform(&self, shape: &[usize], seed: u64) -> Result<Self::Tensor>;
    /// Memory-format hint for 4-d tensors; the values never change. Default: no-op.
    fn to_memory_format(&self, x: &Self::Tensor, _format: MemoryFormat) -> Result<Self::Tensor> {
        Ok(x.clone())
    }

    /// A tensor filled with `value`.
    fn full(&self, shape: &[usize], value: f64, dtype: DType) -> Result<Self::Tensor> {
        let n: usize = shape.iter().product();
        let data = match dtype {
            DType::I64 => TensorData::i64(shape, vec![value as i64; n])?,
            _ => TensorData::f32(shape, vec![value as f32; n])?.cast(dtype),
        };
        self.from_data(&data)
    }
    /// Zeros.
    fn zeros(&self, shape: &[usize], dtype: DType) -> Result<Self::Tensor> {
        self.full(shape, 0.0, dtype)
    }
    /// A 0-d tensor.
    fn scalar(&self, value: f64, dtype: DType) -> Result<Self::Tensor> {
        self.full(&[], value, dtype)
    }
    /// Number of dims.
    fn rank(&self, x: &Self::Tensor) -> usize {
        self.shape(x).len()
    }
    /// Number of elements.
    fn numel(&self, x: &Self::Tensor) -> usize {
        self.shape(x).iter().product()
    }

    // ---- elementwise, broadcasting -------------------------------------------------------------
    /// `a + b` with NumPy broadcasting.
    fn add(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;
    /// `a - b` with broadcasting.
    fn sub(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;
    /// `a * b` with broadcasting.
    fn mul(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;
    /// `a / b` with broadcasting (i64: truncating division is not offered; cast first).
    fn div(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;
    /// `x + v`.
    fn add_scalar(&self, x: &Self::Tensor, v: f64) -> Result<Self::Tensor> {
        let s = self.scalar(v, self.dtype(x))?;
        self.add(x, &s)
    }
    /// `x * v`.
    fn mul_scalar(&self, x: &Self::Tensor, v: f64) -> Result<Self::Tensor> {
        let s = self.scalar(v, self.dtype(x))?;
        self.mul(x, &s)
    }
    /// 1 where `x < v`, else 0, in `x`'s dtype.
    fn lt_scalar(&self, x: &Self::Tensor, v: f64) -> Result<Self::Tensor>;
    /// `-x`.
    fn neg(&self, x: &Self::Tensor) -> Result<Self::Tensor> {
        self.mul_scalar(x, -1.0)
    }
    /// `e^x`.
    fn exp(&self, x: &Self::Tensor) -> Result<Self::Tensor>;
    /// Natural log.
    fn log(&self, x: &Self::Tensor) -> Result<Self::Tensor>;
    /// tanh.
    fn tanh(&self, x: &Self::Tensor) -> Result<Self::Tensor>;
    /// Square root.
    fn sqrt(&self, x: &Self::Tensor) -> Result<Self::Tensor>;
    /// Logistic sigmoid.
    fn sigmoid(&self, x: &Self::Tensor) -> Result<Self::Tensor>;
    /// Clamp to `[min, max]`; either bound optional.
    fn clamp(&self, x: &Self::Tensor, min: Option<f64>, max: Option<f64>) -> Result<Self::Tensor>;
    /// GELU, exact (erf) or tanh-approximated.
    fn gelu(&self, x: &Self::Tensor, approx: GeluApprox) -> Result<Self::Tensor>;
    /// max(x, 0).
    fn relu(&self, x: &Self::Tensor) -> Result<Self::Tensor> {
        self.clamp(x, Some(0.0), None)
    }
    /// min(max(x, 0), 6).
    fn relu6(&self, x: &Self::Tensor) -> Result<Self::Tensor> {
        self.clamp(x, Some(0.0), Some(6.0))
    }
    /// `x * sigmoid(x)`.
    fn silu(&self, x: &Self::Tensor) -> Result<Self::Tensor> {
        self.mul(x, &self.sigmoid(x)?)
    }
    /// `relu6(x + 3) / 6`.
    fn hardsigmoid(&self, x: &Self::Tensor) -> Result<Self::Tensor> {
        self.mul_scalar(&self.relu6(&self.add_scalar(x, 3.0)?)?, 1.0 / 6.0)
    }
    /// `x * relu6(x + 3) / 6`.
    fn hardswish(&self, x: &Self::Tensor) -> Result<Self::Tensor> {
        self.mul(x, &self.hardsigmoid(x)?)
    }
    /// Softmax along `dim` (max-subtracted).
    fn softmax(&self, x: &Self::Tensor, dim: usize) -> Result<Self::Tensor> {
        let m = self.max_dim(x, dim, true)?;
        let e = self.exp(&self.sub(x, &m)?)?;
        let s = self.sum(&e, &[dim], true)?;
        self.div(&e, &s)
    }
    /// Log-softmax along `dim`.
    fn log_softmax(&self, x: &Self::Tensor, dim: usize) -> Result<Self::Tensor> {
        let m = self.max_dim(x, dim, true)?;
        let shifted = self.sub(x, &m)?;
        let lse = self.log(&self.sum(&self.exp(&shifted)?, &[dim], true)?)?;
        self.sub(&shifted, &lse)
    }

    // ---- consuming forms: may reuse the input's storage ----------------------------------------
    /// `relu(x)`, free to overwrite `x`'s storage: the caller hands its handle over and reads no
    /// other handle to that storage afterwards (a fresh op output, as in PyTorch's
    /// `ReLU(inplace=True)`). Saves an allocation per activation. Default: out of place.
    fn relu_consume(&self, x: Self::Tensor) -> Result<Self::Tensor> {
        self.relu(&x)
    }
    /// `hardswish(x)` with [`Backend::relu_consume`]'s contract.
    fn hardswish_consume(&self, x: Self::Tensor) -> Result<Self::Tensor> {
        self.hardswish(&x)
    }
    /// `silu(x)` with [`Backend::relu_consume`]'s contract.
    fn silu_consume(&self, x: Self::Tensor) -> Result<Self::Tensor> {
        self.silu(&x)
    }
    /// `a + b` free to overwrite `a`'s storage ([`Backend::relu_consume`]'s contract for `a`).
    fn add_consume(&self, a: Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor> {
        self.add(&a, b)
    }

    // ---- reductions ----------------------------------------------------------------------------
    /// Sum over `dims` (all dims when empty).
    fn sum(&self, x: &Self::Tensor, dims: &[usize], keepdim: bool) -> Result<Self::Tensor>;
    /// Mean over `dims` (all dims when empty).
    fn mean(&self, x: &Self::Tensor, dims: &[usize], keepdim: bool) -> Result<Self::Tensor> {
        let shape = self.shape(x);
        let n: usize = if dims.is_empty() {
            shape.iter().product()
        } else {
            dims.iter()
                .map(|&d| shape.get(d).copied().unwrap_or(1))
                .product()
        };
        let s = self.sum(x, dims, keepdim)?;
        self.mul_scalar(&s, 1.0 / n.max(1) as f64)
    }
    /// Max values along `dim`.
    fn max_dim(&self, x: &Self::Tensor, dim: usize, keepdim: bool) -> Result<Self::Tensor>;
    /// Index of the max along `dim` (first on ties), i64.
    fn argmax(&self, x: &Self::Tensor, dim: usize, keepdim: bool) -> Result<Self::Tensor>;
    /// The `k` largest (or smallest) along `dim`, sorted, with their i64 indices.
    fn topk(
        &self,
        x: &Self::Tensor,
        k: usize,
        dim: usize,
        largest: bool,
    ) -> Result<(Self::Tensor, Self::Tensor)>;

    // ---- indexing ------------------------------------------------------------------------------
    /// `out[i][j][k] = x[i][index[i][j][k]][k]` for `dim = 1` (PyTorch's gather).
    fn gather(&self, x: &Self::Tensor, dim: usize, index: &Self::Tensor) -> Result<Self::Tensor>;
    /// Rows (slices along `dim`) picked by a 1-d i64 index.
    fn index_select(
        &self,
        x: &Self::Tensor,
        dim: usize,
        index: &Self::Tensor,
    ) -> Result<Self::Tensor>;
    /// `value` where `mask` (broadcastable to `x`, any dtype) is non-zero, else `x`.
    fn masked_fill(
        &self,
        x: &Self::Tensor,
        mask: &Self::Tensor,
        value: f64,
    ) -> Result<Self::Tensor>;
    /// Embedding lookup: i64 `ids` of any shape → `ids.shape + [dim]` rows of `weight`.
    fn embedding(&self, weight: &Self::Tensor, ids: &Self::Tensor) -> Result<Self::Tensor> {
        let ids_shape = self.shape(ids);
        let n: usize = ids_shape.iter().product();
        let flat = self.reshape(ids, &[n])?;
        let rows = self.index_select(weight, 0, &flat)?;
        let wshape = self.shape(weight);
        let mut out = ids_shape;
        out.extend_from_slice(&wshape[1..]);
        self.reshape(&rows, &out)
    }

    // ---- shape ---------------------------------------------------------------------------------
    /// Same elements, new shape (element count must agree).
    fn reshape(&self, x: &Self::Tensor, shape: &[usize]) -> Result<Self::Tensor>;
    /// Reorders dims: `out.shape[i] = x.shape[dims[i]]`.
    fn permute(&self, x: &Self::Tensor, dims: &[usize]) -> Result<Self::Tensor>;
    /// Concatenates along `dim`.
    fn cat(&self, xs: &[&Self::Tensor], dim: usize) -> Result<Self::Tensor>;
    /// `len` elements along `dim` starting at `start`.
    fn narrow(
        &self,
        x: &Self::Tensor,
        dim: usize,
        start: usize,
        len: usize,
    ) -> Result<Self::Tensor>;
    /// Merges dims `start..=end` into one.
    fn flatten(&self, x: &Self::Tensor, start: usize, end: usize) -> Result<Self::Tensor> {
        let shape = self.shape(x);
        if start > end || end >= shape.len().max(1) {
            return Err(Error::invalid(
                "flatten",
                format!("dims {start}..={end} out of range for shape {shape:?}"),
            ));
        }
        if shape.is_empty() {
            return self.reshape(x, &[1]);
        }
        let mut out: Vec<usize> = shape[..start].to_vec();
        out.push(shape[start..=end].iter().product());
        out.extend_from_slice(&shape[end + 1..]);
        self.reshape(x, &out)
    }
    /// Swaps two dims.
    fn transpose(&self, x: &Self::Tensor, a: usize, b: usize) -> Result<Self::Tensor> {
        let r = self.rank(x);
        if a >= r || b >= r {
            return Err(Error::invalid(
                "transpose",
                format!("dims {a}, {b} out of range for rank {r}"),
            ));
        }
        let mut dims: Vec<usize> = (0..r).collect();
        dims.swap(a, b);
        self.permute(x, &dims)
    }
    /// Inserts a size-1 dim at `dim`.
    fn unsqueeze(&self, x: &Self::Tensor, dim: usize) -> Result<Self::Tensor> {
        let mut shape = self.shape(x);
        if dim > shape.len() {
            return Err(Error::invalid(
                "unsqueeze",
                format!("dim {dim} > rank {}", shape.len()),
            ));
        }
        shape.insert(dim, 1);
        self.reshape(x, &shape)
    }

    // ---- linear algebra ------------------------------------------------------------------------
    /// Matrix product; ≥3-d operands are batched with broadcast batch dims, 1-d as in NumPy.
    fn matmul(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;
    /// `x · wᵀ + b` with `w: [out, in]` (PyTorch's Linear).
    fn linear(
        &self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        b: Option<&Self::Tensor>,
    ) -> Result<Self::Tensor> {
        let y = self.matmul(x, &self.transpose(w, 0, 1)?)?;
        match b {
            Some(b) => self.add(&y, b),
            None => Ok(y),
        }
    }

    // ---- convolution, normalisation, pooling --------------------------------------------------
    /// 2-d convolution, NCHW input, `[out, in/groups, kh, kw]` weight.
    fn conv2d(
        &self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        b: Option<&Self::Tensor>,
        opts: Conv2dOpts,
    ) -> Result<Self::Tensor>;
    /// BatchNorm over dim 1 of an `[N, C, ...]` input. In `Train` mode the running statistics (and
    /// `num_batches_tracked`) are updated in place.
    fn batch_norm(
        &self,
        x: &Self::Tensor,
        bn: BatchNormTensors<'_, Self::Tensor>,
        mode: BatchNormMode,
    ) -> Result<Self::Tensor>;
    /// LayerNorm over the last `normalized_dims` dims (biased variance, as PyTorch).
    fn layer_norm(
        &self,
        x: &Self::Tensor,
        normalized_dims: usize,
        weight: Option<&Self::Tensor>,
        bias: Option<&Self::Tensor>,
        eps: f64,
    ) -> Result<Self::Tensor> {
        let r = self.rank(x);
        if normalized_dims == 0 || normalized_dims > r {
            return Err(Error::invalid(
                "layer_norm",
                format!("normalized_dims {normalized_dims} for rank {r}"),
            ));
        }
        let dims: Vec<usize> = (r - normalized_dims..r).collect();
        let mu = self.mean(x, &dims, true)?;
        let xc = self.sub(x, &mu)?;
        let var = self.mean(&self.mul(&xc, &xc)?, &dims, true)?;
        let inv = self.sqrt(&self.add_scalar(&var, eps)?)?;
        let mut y = self.div(&xc, &inv)?;
        if let Some(w) = weight {
            y = self.mul(&y, w)?;
        }
        if let Some(b) = bias {
            y = self.add(&y, b)?;
        }
        Ok(y)
    }
    /// Max pool over NCHW.
    fn max_pool2d(&self, x: &Self::Tensor, opts: Pool2dOpts) -> Result<Self::Tensor>;
    /// Average pool over NCHW.
    fn avg_pool2d(&self, x: &Self::Tensor, opts: Pool2dOpts) -> Result<Self::Tensor>;
    /// Adaptive average pool to `out` (PyTorch's bin edges: floor(i·H/o), ceil((i+1)·H/o)).
    fn adaptive_avg_pool2d(&self, x: &Self::Tensor, out: (usize, usize)) -> Result<Self::Tensor>;
    /// Adaptive max pool to `out`.
    fn adaptive_max_pool2d(&self, x: &Self::Tensor, out: (usize, usize)) -> Result<Self::Tensor>;

    // ---- attention -----------------------------------------------------------------------------
    /// `softmax(q·kᵀ·scale + mask)·v` over `[..., L, E]` operands; `mask` is additive and
    /// broadcastable to `[..., Lq, Lk]` (0 to keep, a large negative to drop); `scale` defaults to
    /// `1/sqrt(E)`.
    fn scaled_dot_product_attention(
        &self,
        q: &Self::Tensor,
        k: &Self::Tensor,
        v: &Self::Tensor,
        mask: Option<&Self::Tensor>,
        scale: Option<f64>,
    ) -> Result<Self::Tensor> {
        let r = self.rank(q);
        if r < 2 || self.rank(k) != r || self.rank(v) != r {
            return Err(Error::shape(
                "scaled_dot_product_attention",
                "q, k, v need the same rank >= 2",
            ));
        }
        let e = self.shape(q)[r - 1];
        let scale = scale.unwrap_or(1.0 / (e as f64).sqrt());
        let q = self.mul_scalar(q, scale)?;
        let mut att = self.matmul(&q, &self.transpose(k, r - 2, r - 1)?)?;
        if let Some(m) = mask {
            att = self.add(&att, m)?;
        }
        let att = self.softmax(&att, r - 1)?;
        self.matmul(&att, v)
    }

    // ---- stochastic (training only; callers check the context) ---------------------------------
    /// Inverted dropout: zero each element with probability `p`, scale the rest by `1/(1-p)`.
    fn dropout(&self, x: &Self::Tensor, p: f64, seed: u64) -> Result<Self::Tensor> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::invalid(
                "dropout",
                format!("p = {p} must be in [0, 1)"),
            ));
        }
        let keep = self.lt_scalar(&self.rand_uniform(&self.shape(x), seed)?, 1.0 - p)?;
        let keep = self.cast(&keep, self.dtype(x))?;
        self.mul_scalar(&self.mul(x, &keep)?, 1.0 / (1.0 - p))
    }
    /// Stochastic depth (timm's `drop_path`): drop whole samples with probability `p`, scale the
    /// kept ones by `1/(1-p)`.
    fn drop_path(&self, x: &Self::Tensor, p: f64, seed: u64) -> Result<Self::Tensor> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::invalid(
                "drop_path",
                format!("p = {p} must be in [0, 1)"),
            ));
        }
        let shape = self.shape(x);
        let Some(&n) = shape.first() else {
            return Err(Error::shape("drop_path", "needs a batch dim"));
        };
        let mut mshape = vec![1; shape.len()];
        mshape[0] = n;
        let keep = self.lt_scalar(&self.rand_uniform(&mshape, seed)?, 1.0 - p)?;
        let keep = self.cast(&keep, self.dtype(x))?;
        self.mul_scalar(&self.mul(x, &keep)?, 1.0 / (1.0 - p))
    }
}

/// Training capabilities: gradients, no-grad scopes, in-place updates. Implemented by graft-tch;
/// graft-ndarray is inference-only and does not implement it, so training code does not compile
/// against it.
pub trait AutodiffBackend: Backend {
    /// Turns gradient tracking on or off for a leaf tensor, in place (every clone sees it).
    fn set_requires_grad(&self, x: &Self::Tensor, on: bool) -> Result<()>;
    /// Whether gradients are tracked for `x`.
    fn requires_grad(&self, x: &Self::Tensor) -> bool;
    /// Gradients of the scalar `loss` with respect to each of `wrt` (all must require grad);
    /// `None` where `loss` does not depend on it. Nothing is accumulated on the tensors.
    fn backward(
        &self,
        loss: &Self::Tensor,
        wrt: &[&Self::Tensor],
    ) -> Result<Vec<Option<Self::Tensor>>>;
    /// Runs `f` with gradient recording off.
    fn no_grad<R>(&self, f: impl FnOnce() -> R) -> R;
    /// Intra-op threads the backend computes with (results depend on it: training runs record it
    /// and refuse to resume under another count).
    fn num_threads(&self) -> usize;
    /// A tensor sharing `x`'s values with no autograd history.
    fn detach(&self, x: &Self::Tensor) -> Result<Self::Tensor>;
    /// `dst ← src` in place (no gradient recorded); shapes must match, `src` is cast to `dst`'s
    /// dtype.
    fn assign(&self, dst: &Self::Tensor, src: &Self::Tensor) -> Result<()>;
    /// One AdamW update of `p` with gradient `g` done in place on `p` and the moments `m`, `v`
    /// (decoupled decay, `m.lerp_(g, 1-β1)`, `v = β2·v + (1-β2)·g·g`, bias corrections,
    /// `p -= lr/bc1 · m / (√v/√bc2 + eps)`), with `scratch` (allocated here on first use, shaped
    /// like `p`, overwritten every call) for the intermediates, so a step allocates nothing. The
    /// same update as PyTorch's within float rounding (the scalars may be regrouped to save
    /// memory passes). Called under no-grad. Returns false when the backend has no in-place form — the optimizer
    /// then composes the same update from out-of-place ops.
    fn adamw_in_place(
        &self,
        _p: &Self::Tensor,
        _g: &Self::Tensor,
        _m: &Self::Tensor,
        _v: &Self::Tensor,
        _scratch: &mut Option<Self::Tensor>,
        _s: &AdamWStep,
    ) -> Result<bool> {
        Ok(false)
    }
}

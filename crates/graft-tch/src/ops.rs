//! Every [`Backend`] op on libtorch kernels (fallible `f_*` calls; an exception is an
//! `Error::Backend` naming the op).

use graft_backend::{
    Backend, BatchNormMode, BatchNormTensors, Conv2dOpts, DType, GeluApprox, MemoryFormat,
    Pool2dOpts, TensorData,
};
use graft_core::{Error, Result};
use half::bf16;
use ndarray::{ArrayD, IxDyn};
use tch::{Device, Kind, Tensor};

use crate::*;

impl Backend for Tch {
    type Tensor = TchTensor;

    fn name(&self) -> &'static str {
        "tch"
    }
    fn device(&self) -> String {
        match self.device {
            Device::Cpu => "cpu".to_string(),
            Device::Cuda(i) => format!("cuda:{i}"),
            other => format!("{other:?}").to_lowercase(),
        }
    }

    fn from_data(&self, data: &TensorData) -> Result<TchTensor> {
        let shape = ishape(data.shape());
        let x = match data {
            TensorData::F32(a) => {
                let v: Vec<f32> = a.iter().copied().collect();
                Tensor::f_from_slice(&v).map_err(err("from_data"))?
            }
            TensorData::BF16(a) => {
                // tch 0.26 declares `half::bf16` as Kind::Half: upload the bits as i16 and
                // reinterpret them as bfloat16.
                let v: Vec<i16> = a.iter().map(|x| x.to_bits() as i16).collect();
                Tensor::f_from_slice(&v)
                    .and_then(|b| b.f_view_dtype(Kind::BFloat16))
                    .map_err(err("from_data"))?
            }
            TensorData::I64(a) => {
                let v: Vec<i64> = a.iter().copied().collect();
                Tensor::f_from_slice(&v).map_err(err("from_data"))?
            }
        };
        let x = x.f_reshape(shape).map_err(err("from_data"))?;
        Ok(t(x.f_to_device(self.device).map_err(err("from_data"))?))
    }

    fn to_data(&self, x: &TchTensor) -> Result<TensorData> {
        let shape: Vec<usize> = x.0.size().iter().map(|&d| d as usize).collect();
        let flat =
            x.0.f_detach()
                .and_then(|d| d.f_to_device(Device::Cpu))
                .and_then(|d| d.f_contiguous())
                .and_then(|d| d.f_reshape([-1]))
                .map_err(err("to_data"))?;
        let shape_err = |e: ndarray::ShapeError| Error::shape("to_data", e.to_string());
        Ok(match dtype_of(x.0.kind())? {
            DType::F32 => TensorData::F32(
                ArrayD::from_shape_vec(
                    IxDyn(&shape),
                    Vec::<f32>::try_from(&flat).map_err(err("to_data"))?,
                )
                .map_err(shape_err)?,
            ),
            DType::BF16 => {
                let bits = flat.f_view_dtype(Kind::Int16).map_err(err("to_data"))?;
                let v: Vec<bf16> = Vec::<i16>::try_from(&bits)
                    .map_err(err("to_data"))?
                    .into_iter()
                    .map(|b| bf16::from_bits(b as u16))
                    .collect();
                TensorData::BF16(ArrayD::from_shape_vec(IxDyn(&shape), v).map_err(shape_err)?)
            }
            DType::I64 => TensorData::I64(
                ArrayD::from_shape_vec(
                    IxDyn(&shape),
                    Vec::<i64>::try_from(&flat).map_err(err("to_data"))?,
                )
                .map_err(shape_err)?,
            ),
        })
    }

    fn shape(&self, x: &TchTensor) -> Vec<usize> {
        x.0.size().iter().map(|&d| d as usize).collect()
    }
    fn dtype(&self, x: &TchTensor) -> DType {
        // Every tensor graft creates is f32, bf16 or i64 (from_data, cast and the ops keep to
        // them); a foreign kind can only come from a raw tch tensor wrapped by hand.
        dtype_of(x.0.kind()).unwrap_or(DType::F32)
    }
    fn cast(&self, x: &TchTensor, dtype: DType) -> Result<TchTensor> {
        if dtype == DType::I64 && x.0.is_floating_point() {
            // PyTorch's .long() truncates toward zero
            return Ok(t(x
                .0
                .f_trunc()
                .and_then(|v| v.f_to_kind(Kind::Int64))
                .map_err(err("cast"))?));
        }
        Ok(t(x.0.f_to_kind(kind_of(dtype)).map_err(err("cast"))?))
    }
    fn rand_uniform(&self, shape: &[usize], seed: u64) -> Result<TchTensor> {
        // libtorch has one global generator per device; seeding it per call makes every mask a
        // function of its seed alone (graft derives seeds from (seed, step, path)).
        tch::manual_seed(seed as i64);
        Ok(t(Tensor::f_rand(ishape(shape), (Kind::Float, self.device))
            .map_err(err("rand_uniform"))?))
    }
    fn to_memory_format(&self, x: &TchTensor, format: MemoryFormat) -> Result<TchTensor> {
        if x.0.dim() != 4 {
            return Ok(x.clone());
        }
        let y = match format {
            MemoryFormat::Contiguous => x.0.f_contiguous(),
            // tch has no memory-format API: NHWC strides through permute → contiguous → permute.
            MemoryFormat::ChannelsLast => {
                x.0.f_permute([0, 2, 3, 1])
                    .and_then(|v| v.f_contiguous())
                    .and_then(|v| v.f_permute([0, 3, 1, 2]))
            }
        };
        Ok(t(y.map_err(err("to_memory_format"))?))
    }
    fn full(&self, shape: &[usize], value: f64, dtype: DType) -> Result<TchTensor> {
        Ok(t(Tensor::f_full(
            ishape(shape),
            value,
            (kind_of(dtype), self.device),
        )
        .map_err(err("full"))?))
    }

    fn add(&self, a: &TchTensor, b: &TchTensor) -> Result<TchTensor> {
        self.same_kind("add", a, b)?;
        Ok(t(a.0.f_add(&b.0).map_err(err("add"))?))
    }
    fn sub(&self, a: &TchTensor, b: &TchTensor) -> Result<TchTensor> {
        self.same_kind("sub", a, b)?;
        Ok(t(a.0.f_sub(&b.0).map_err(err("sub"))?))
    }
    fn mul(&self, a: &TchTensor, b: &TchTensor) -> Result<TchTensor> {
        self.same_kind("mul", a, b)?;
        Ok(t(a.0.f_mul(&b.0).map_err(err("mul"))?))
    }
    fn div(&self, a: &TchTensor, b: &TchTensor) -> Result<TchTensor> {
        self.same_kind("div", a, b)?;
        self.float_only("div", a)?;
        Ok(t(a.0.f_div(&b.0).map_err(err("div"))?))
    }
    fn add_scalar(&self, x: &TchTensor, v: f64) -> Result<TchTensor> {
        if x.0.kind() == Kind::Int64 {
            return Ok(t(x.0.f_add_scalar(v as i64).map_err(err("add_scalar"))?));
        }
        Ok(t(x.0.f_add_scalar(v).map_err(err("add_scalar"))?))
    }
    fn mul_scalar(&self, x: &TchTensor, v: f64) -> Result<TchTensor> {
        if x.0.kind() == Kind::Int64 {
            return Ok(t(x.0.f_mul_scalar(v as i64).map_err(err("mul_scalar"))?));
        }
        Ok(t(x.0.f_mul_scalar(v).map_err(err("mul_scalar"))?))
    }
    fn lt_scalar(&self, x: &TchTensor, v: f64) -> Result<TchTensor> {
        Ok(t(x
            .0
            .f_lt(v)
            .and_then(|m| m.f_to_kind(x.0.kind()))
            .map_err(err("lt_scalar"))?))
    }
    fn neg(&self, x: &TchTensor) -> Result<TchTensor> {
        Ok(t(x.0.f_neg().map_err(err("neg"))?))
    }
    fn exp(&self, x: &TchTensor) -> Result<TchTensor> {
        self.float_only("exp", x)?;
        Ok(t(x.0.f_exp().map_err(err("exp"))?))
    }
    fn log(&self, x: &TchTensor) -> Result<TchTensor> {
        self.float_only("log", x)?;
        Ok(t(x.0.f_log().map_err(err("log"))?))
    }
    fn tanh(&self, x: &TchTensor) -> Result<TchTensor> {
        self.float_only("tanh", x)?;
        Ok(t(x.0.f_tanh().map_err(err("tanh"))?))
    }
    fn sqrt(&self, x: &TchTensor) -> Result<TchTensor> {
        self.float_only("sqrt", x)?;
        Ok(t(x.0.f_sqrt().map_err(err("sqrt"))?))
    }
    fn sigmoid(&self, x: &TchTensor) -> Result<TchTensor> {
        self.float_only("sigmoid", x)?;
        Ok(t(x.0.f_sigmoid().map_err(err("sigmoid"))?))
    }
    fn clamp(&self, x: &TchTensor, min: Option<f64>, max: Option<f64>) -> Result<TchTensor> {
        let y = match (min, max) {
            (Some(lo), Some(hi)) => x.0.f_clamp(lo, hi),
            (Some(lo), None) => x.0.f_clamp_min(lo),
            (None, Some(hi)) => x.0.f_clamp_max(hi),
            (None, None) => return Ok(x.clone()),
        };
        Ok(t(y.map_err(err("clamp"))?))
    }
    fn gelu(&self, x: &TchTensor, approx: GeluApprox) -> Result<TchTensor> {
        self.float_only("gelu", x)?;
        let a = match approx {
            GeluApprox::Erf => "none",
            GeluApprox::Tanh => "tanh",
        };
        Ok(t(x.0.f_gelu(a).map_err(err("gelu"))?))
    }
    fn relu(&self, x: &TchTensor) -> Result<TchTensor> {
        Ok(t(x.0.f_relu().map_err(err("relu"))?))
    }
    fn relu6(&self, x: &TchTensor) -> Result<TchTensor> {
        Ok(t(x.0.f_relu6().map_err(err("relu6"))?))
    }
    fn silu(&self, x: &TchTensor) -> Result<TchTensor> {
        self.float_only("silu", x)?;
        Ok(t(x.0.f_silu().map_err(err("silu"))?))
    }
    fn hardsigmoid(&self, x: &TchTensor) -> Result<TchTensor> {
        self.float_only("hardsigmoid", x)?;
        Ok(t(x.0.f_hardsigmoid().map_err(err("hardsigmoid"))?))
    }
    fn hardswish(&self, x: &TchTensor) -> Result<TchTensor> {
        self.float_only("hardswish", x)?;
        Ok(t(x.0.f_hardswish().map_err(err("hardswish"))?))
    }
    fn relu_consume(&self, x: TchTensor) -> Result<TchTensor> {
        // in place only outside autograd: a recorded in-place op could invalidate saved values
        if x.0.requires_grad() {
            return self.relu(&x);
        }
        let mut y = x.0;
        Ok(t(y.f_relu_().map_err(err("relu"))?))
    }
    fn hardswish_consume(&self, x: TchTensor) -> Result<TchTensor> {
        if x.0.requires_grad() || !x.0.is_floating_point() {
            return self.hardswish(&x);
        }
        let mut y = x.0;
        Ok(t(y.f_hardswish_().map_err(err("hardswish"))?))
    }
    fn silu_consume(&self, x: TchTensor) -> Result<TchTensor> {
        if x.0.requires_grad() || !x.0.is_floating_point() {
            return self.silu(&x);
        }
        let mut y = x.0;
        Ok(t(y.f_silu_().map_err(err("silu"))?))
    }
    fn add_consume(&self, a: TchTensor, b: &TchTensor) -> Result<TchTensor> {
        // in place when `a` already has the result's shape (b broadcasts into it)
        if a.0.requires_grad() || b.0.requires_grad() || a.0.size() != b.0.size() {
            return self.add(&a, b);
        }
        self.same_kind("add", &a, b)?;
        let mut y = a.0;
        Ok(t(y.f_add_(&b.0).map_err(err("add"))?))
    }
    fn softmax(&self, x: &TchTensor, dim: usize) -> Result<TchTensor> {
        self.float_only("softmax", x)?;
        let d = check_dim("softmax", dim, x.0.dim())?;
        Ok(t(x.0.f_softmax(d, x.0.kind()).map_err(err("softmax"))?))
    }
    fn log_softmax(&self, x: &TchTensor, dim: usize) -> Result<TchTensor> {
        self.float_only("log_softmax", x)?;
        let d = check_dim("log_softmax", dim, x.0.dim())?;
        Ok(t(x
            .0
            .f_log_softmax(d, x.0.kind())
            .map_err(err("log_softmax"))?))
    }

    fn sum(&self, x: &TchTensor, dims: &[usize], keepdim: bool) -> Result<TchTensor> {
        let r = x.0.dim();
        let dims = reduce_dims("sum", dims, r)?;
        if r == 0 {
            return Ok(x.clone());
        }
        Ok(t(x
            .0
            .f_sum_dim_intlist(dims.as_slice(), keepdim, x.0.kind())
            .map_err(err("sum"))?))
    }
    fn mean(&self, x: &TchTensor, dims: &[usize], keepdim: bool) -> Result<TchTensor> {
        self.float_only("mean", x)?;
        let r = x.0.dim();
        let dims = reduce_dims("mean", dims, r)?;
        if r == 0 {
            return Ok(x.clone());
        }
        Ok(t(x
            .0
            .f_mean_dim(dims.as_slice(), keepdim, x.0.kind())
            .map_err(err("mean"))?))
    }
    fn max_dim(&self, x: &TchTensor, dim: usize, keepdim: bool) -> Result<TchTensor> {
        let d = check_dim("max_dim", dim, x.0.dim())?;
        Ok(t(x.0.f_max_dim(d, keepdim).map_err(err("max_dim"))?.0))
    }
    fn argmax(&self, x: &TchTensor, dim: usize, keepdim: bool) -> Result<TchTensor> {
        let d = check_dim("argmax", dim, x.0.dim())?;
        Ok(t(x.0.f_argmax(d, keepdim).map_err(err("argmax"))?))
    }
    fn topk(
        &self,
        x: &TchTensor,
        k: usize,
        dim: usize,
        largest: bool,
    ) -> Result<(TchTensor, TchTensor)> {
        let d = check_dim("topk", dim, x.0.dim())?;
        let (v, i) =
            x.0.f_topk(k as i64, d, largest, true)
                .map_err(err("topk"))?;
        Ok((t(v), t(i)))
    }

    fn gather(&self, x: &TchTensor, dim: usize, index: &TchTensor) -> Result<TchTensor> {
        let d = check_dim("gather", dim, x.0.dim())?;
        Ok(t(x
            .0
            .f_gather(d, &index.0, false)
            .map_err(err("gather"))?))
    }
    fn index_select(&self, x: &TchTensor, dim: usize, index: &TchTensor) -> Result<TchTensor> {
        let d = check_dim("index_select", dim, x.0.dim())?;
        Ok(t(x
            .0
            .f_index_select(d, &index.0)
            .map_err(err("index_select"))?))
    }
    fn masked_fill(&self, x: &TchTensor, mask: &TchTensor, value: f64) -> Result<TchTensor> {
        let m = mask.0.f_ne(0).map_err(err("masked_fill"))?;
        let y = if x.0.kind() == Kind::Int64 {
            x.0.f_masked_fill(&m, value as i64)
        } else {
            x.0.f_masked_fill(&m, value)
        };
        Ok(t(y.map_err(err("masked_fill"))?))
    }
    fn embedding(&self, weight: &TchTensor, ids: &TchTensor) -> Result<TchTensor> {
        Ok(t(
            Tensor::f_embedding(&weight.0, &ids.0, -1, false, false).map_err(err("embedding"))?
        ))
    }

    fn reshape(&self, x: &TchTensor, shape: &[usize]) -> Result<TchTensor> {
        let n: usize = shape.iter().product();
        if n != self.numel(x) {
            return Err(Error::shape(
                "reshape",
                format!("{:?} → {shape:?}: element counts differ", self.shape(x)),
            ));
        }
        Ok(t(x.0.f_reshape(ishape(shape)).map_err(err("reshape"))?))
    }
    fn permute(&self, x: &TchTensor, dims: &[usize]) -> Result<TchTensor> {
        Ok(t(x.0.f_permute(ishape(dims)).map_err(err("permute"))?))
    }
    fn cat(&self, xs: &[&TchTensor], dim: usize) -> Result<TchTensor> {
        let ts: Vec<&Tensor> = xs.iter().map(|x| &x.0).collect();
        Ok(t(Tensor::f_cat(&ts, dim as i64).map_err(err("cat"))?))
    }
    fn narrow(&self, x: &TchTensor, dim: usize, start: usize, len: usize) -> Result<TchTensor> {
        let d = check_dim("narrow", dim, x.0.dim())?;
        Ok(t(x
            .0
            .f_narrow(d, start as i64, len as i64)
            .map_err(err("narrow"))?))
    }

    fn matmul(&self, a: &TchTensor, b: &TchTensor) -> Result<TchTensor> {
        self.same_kind("matmul", a, b)?;
        Ok(t(a.0.f_matmul(&b.0).map_err(err("matmul"))?))
    }
    fn linear(&self, x: &TchTensor, w: &TchTensor, b: Option<&TchTensor>) -> Result<TchTensor> {
        Ok(t(x
            .0
            .f_linear(&w.0, b.map(|b| &b.0))
            .map_err(err("linear"))?))
    }

    fn conv2d(
        &self,
        x: &TchTensor,
        w: &TchTensor,
        b: Option<&TchTensor>,
        o: Conv2dOpts,
    ) -> Result<TchTensor> {
        if x.0.dim() != 4 || w.0.dim() != 4 {
            return Err(Error::shape(
                "conv2d",
                format!(
                    "input {:?} and weight {:?} must be 4-d",
                    x.0.size(),
                    w.0.size()
                ),
            ));
        }
        Ok(t(x
            .0
            .f_conv2d(
                &w.0,
                b.map(|b| &b.0),
                pair(o.stride),
                pair(o.padding),
                pair(o.dilation),
                o.groups as i64,
            )
            .map_err(err("conv2d"))?))
    }
    fn batch_norm(
        &self,
        x: &TchTensor,
        bn: BatchNormTensors<'_, TchTensor>,
        mode: BatchNormMode,
    ) -> Result<TchTensor> {
        let (training, momentum) = match mode {
            BatchNormMode::Eval => (false, 0.0),
            BatchNormMode::Train { momentum } => {
                let factor = match (momentum, bn.num_batches_tracked) {
                    (m, Some(nbt)) => {
                        let _same = tch::no_grad(|| nbt.0.shallow_clone().f_add_scalar_(1))
                            .map_err(err("batch_norm"))?;
                        match m {
                            Some(m) => m,
                            None => {
                                1.0 / nbt.0.f_int64_value(&[]).map_err(err("batch_norm"))?.max(1)
                                    as f64
                            }
                        }
                    }
                    (Some(m), None) => m,
                    (None, None) => {
                        return Err(Error::invalid(
                            "batch_norm",
                            "cumulative re-estimation (momentum None) needs num_batches_tracked",
                        ));
                    }
                };
                (true, factor)
            }
        };
        let y = x.0.f_batch_norm(
            bn.weight.map(|w| &w.0),
            bn.bias.map(|b| &b.0),
            Some(&bn.running_mean.0),
            Some(&bn.running_var.0),
            training,
            momentum,
            bn.eps,
            true,
        );
        Ok(t(y.map_err(err("batch_norm"))?))
    }
    fn layer_norm(
        &self,
        x: &TchTensor,
        normalized_dims: usize,
        weight: Option<&TchTensor>,
        bias: Option<&TchTensor>,
        eps: f64,
    ) -> Result<TchTensor> {
        let size = x.0.size();
        if normalized_dims == 0 || normalized_dims > size.len() {
            return Err(Error::invalid(
                "layer_norm",
                format!("normalized_dims {normalized_dims} for shape {size:?}"),
            ));
        }
        let norm_shape = &size[size.len() - normalized_dims..];
        Ok(t(x
            .0
            .f_layer_norm(
                norm_shape,
                weight.map(|w| &w.0),
                bias.map(|b| &b.0),
                eps,
                true,
            )
            .map_err(err("layer_norm"))?))
    }
    fn max_pool2d(&self, x: &TchTensor, o: Pool2dOpts) -> Result<TchTensor> {
        Ok(t(x
            .0
            .f_max_pool2d(
                pair(o.kernel),
                pair(o.stride),
                pair(o.padding),
                pair(o.dilation),
                o.ceil_mode,
            )
            .map_err(err("max_pool2d"))?))
    }
    fn avg_pool2d(&self, x: &TchTensor, o: Pool2dOpts) -> Result<TchTensor> {
        Ok(t(x
            .0
            .f_avg_pool2d(
                pair(o.kernel),
                pair(o.stride),
                pair(o.padding),
                o.ceil_mode,
                o.count_include_pad,
                None::<i64>,
            )
            .map_err(err("avg_pool2d"))?))
    }
    fn adaptive_avg_pool2d(&self, x: &TchTensor, out: (usize, usize)) -> Result<TchTensor> {
        Ok(t(x
            .0
            .f_adaptive_avg_pool2d(pair(out))
            .map_err(err("adaptive_avg_pool2d"))?))
    }
    fn adaptive_max_pool2d(&self, x: &TchTensor, out: (usize, usize)) -> Result<TchTensor> {
        Ok(t(x
            .0
            .f_adaptive_max_pool2d(pair(out))
            .map_err(err("adaptive_max_pool2d"))?
            .0))
    }
    fn scaled_dot_product_attention(
        &self,
        q: &TchTensor,
        k: &TchTensor,
        v: &TchTensor,
        mask: Option<&TchTensor>,
        scale: Option<f64>,
    ) -> Result<TchTensor> {
        Ok(t(Tensor::f_scaled_dot_product_attention(
            &q.0,
            &k.0,
            &v.0,
            mask.map(|m| &m.0),
            0.0,
            false,
            scale,
            false,
        )
        .map_err(err("scaled_dot_product_attention"))?))
    }
}

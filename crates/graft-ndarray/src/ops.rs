//! Every [`Backend`] op over ndarray: element types dispatched with `each!`, the kernels in
//! `kernels` / `conv`, bf16 computed in f32 and rounded once per op.

use graft_backend::{
    Backend, BatchNormMode, BatchNormTensors, Conv2dOpts, DType, GeluApprox, Pool2dOpts, TensorData,
};
use graft_core::{Error, Result};
use half::bf16;
use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn};

use crate::*;

impl Backend for NdArray {
    type Tensor = NdTensor;

    fn name(&self) -> &'static str {
        "ndarray"
    }
    fn device(&self) -> String {
        "cpu".to_string()
    }
    fn from_data(&self, data: &TensorData) -> Result<NdTensor> {
        Ok(match data {
            TensorData::F32(a) => NdTensor::F32(a.to_shared()),
            TensorData::BF16(a) => NdTensor::BF16(a.to_shared()),
            TensorData::I64(a) => NdTensor::I64(a.to_shared()),
        })
    }
    fn to_data(&self, x: &NdTensor) -> Result<TensorData> {
        Ok(match x {
            NdTensor::F32(a) => TensorData::F32(a.as_standard_layout().into_owned()),
            NdTensor::BF16(a) => TensorData::BF16(a.as_standard_layout().into_owned()),
            NdTensor::I64(a) => TensorData::I64(a.as_standard_layout().into_owned()),
        })
    }
    fn shape(&self, x: &NdTensor) -> Vec<usize> {
        x.shape().to_vec()
    }
    fn dtype(&self, x: &NdTensor) -> DType {
        x.dtype()
    }
    fn cast(&self, x: &NdTensor, dtype: DType) -> Result<NdTensor> {
        if x.dtype() == dtype {
            return Ok(x.clone());
        }
        self.from_data(&self.to_data(x)?.cast(dtype))
    }
    fn rand_uniform(&self, shape: &[usize], seed: u64) -> Result<NdTensor> {
        let n = shape.iter().product();
        let v = graft_backend::init::uniform_f32(n, seed);
        ArrayD::from_shape_vec(IxDyn(shape), v)
            .map(|a| NdTensor::F32(a.into_shared()))
            .map_err(|e| Error::shape("rand_uniform", e.to_string()))
    }
    fn full(&self, shape: &[usize], value: f64, dtype: DType) -> Result<NdTensor> {
        let s = IxDyn(shape);
        Ok(match dtype {
            DType::F32 => NdTensor::F32(ArrayD::from_elem(s, value as f32).into_shared()),
            DType::BF16 => {
                NdTensor::BF16(ArrayD::from_elem(s, bf16::from_f64(value)).into_shared())
            }
            DType::I64 => NdTensor::I64(ArrayD::from_elem(s, value as i64).into_shared()),
        })
    }

    fn add(&self, a: &NdTensor, b: &NdTensor) -> Result<NdTensor> {
        self.binary(
            "add",
            a,
            b,
            |x, y| x + y,
            Some(|x: i64, y: i64| x.wrapping_add(y)),
        )
    }
    fn sub(&self, a: &NdTensor, b: &NdTensor) -> Result<NdTensor> {
        self.binary(
            "sub",
            a,
            b,
            |x, y| x - y,
            Some(|x: i64, y: i64| x.wrapping_sub(y)),
        )
    }
    fn mul(&self, a: &NdTensor, b: &NdTensor) -> Result<NdTensor> {
        self.binary(
            "mul",
            a,
            b,
            |x, y| x * y,
            Some(|x: i64, y: i64| x.wrapping_mul(y)),
        )
    }
    fn div(&self, a: &NdTensor, b: &NdTensor) -> Result<NdTensor> {
        self.binary("div", a, b, |x, y| x / y, None)
    }
    fn add_scalar(&self, x: &NdTensor, v: f64) -> Result<NdTensor> {
        match x {
            NdTensor::I64(a) => Ok(NdTensor::I64(
                a.mapv(|e| e.wrapping_add(v as i64)).into_shared(),
            )),
            _ => {
                let v = v as f32;
                self.unary("add_scalar", x, move |e| e + v)
            }
        }
    }
    fn mul_scalar(&self, x: &NdTensor, v: f64) -> Result<NdTensor> {
        match x {
            NdTensor::I64(a) => Ok(NdTensor::I64(
                a.mapv(|e| e.wrapping_mul(v as i64)).into_shared(),
            )),
            _ => {
                let v = v as f32;
                self.unary("mul_scalar", x, move |e| e * v)
            }
        }
    }
    fn lt_scalar(&self, x: &NdTensor, v: f64) -> Result<NdTensor> {
        match x {
            NdTensor::I64(a) => Ok(NdTensor::I64(
                a.mapv(|e| i64::from((e as f64) < v)).into_shared(),
            )),
            _ => self.unary(
                "lt_scalar",
                x,
                move |e| if f64::from(e) < v { 1.0 } else { 0.0 },
            ),
        }
    }
    fn neg(&self, x: &NdTensor) -> Result<NdTensor> {
        match x {
            NdTensor::I64(a) => Ok(NdTensor::I64(a.mapv(i64::wrapping_neg).into_shared())),
            _ => self.unary("neg", x, |e| -e),
        }
    }
    fn exp(&self, x: &NdTensor) -> Result<NdTensor> {
        self.unary("exp", x, f32::exp)
    }
    fn log(&self, x: &NdTensor) -> Result<NdTensor> {
        self.unary("log", x, f32::ln)
    }
    fn tanh(&self, x: &NdTensor) -> Result<NdTensor> {
        self.unary("tanh", x, f32::tanh)
    }
    fn sqrt(&self, x: &NdTensor) -> Result<NdTensor> {
        self.unary("sqrt", x, f32::sqrt)
    }
    fn sigmoid(&self, x: &NdTensor) -> Result<NdTensor> {
        self.unary("sigmoid", x, |e| 1.0 / (1.0 + (-e).exp()))
    }
    fn clamp(&self, x: &NdTensor, min: Option<f64>, max: Option<f64>) -> Result<NdTensor> {
        match x {
            NdTensor::I64(a) => {
                let (lo, hi) = (
                    min.map_or(i64::MIN, |v| v as i64),
                    max.map_or(i64::MAX, |v| v as i64),
                );
                Ok(NdTensor::I64(a.mapv(|e| e.max(lo).min(hi)).into_shared()))
            }
            _ => {
                let (lo, hi) = (
                    min.map_or(f32::NEG_INFINITY, |v| v as f32),
                    max.map_or(f32::INFINITY, |v| v as f32),
                );
                self.unary(
                    "clamp",
                    x,
                    move |e| if e.is_nan() { e } else { e.max(lo).min(hi) },
                )
            }
        }
    }
    fn gelu(&self, x: &NdTensor, approx: GeluApprox) -> Result<NdTensor> {
        match approx {
            GeluApprox::Erf => self.unary("gelu", x, |e| {
                0.5 * e * (1.0 + libm::erff(e * std::f32::consts::FRAC_1_SQRT_2))
            }),
            GeluApprox::Tanh => {
                let k = (2.0f32 / std::f32::consts::PI).sqrt();
                self.unary("gelu", x, move |e| {
                    0.5 * e * (1.0 + (k * (e + 0.044715 * e * e * e)).tanh())
                })
            }
        }
    }
    fn relu(&self, x: &NdTensor) -> Result<NdTensor> {
        self.clamp(x, Some(0.0), None)
    }
    fn relu_consume(&self, x: NdTensor) -> Result<NdTensor> {
        self.unary_consume("relu", x, |e| if e.is_nan() { e } else { e.max(0.0) })
    }
    fn silu_consume(&self, x: NdTensor) -> Result<NdTensor> {
        self.unary_consume("silu", x, |e| e / (1.0 + (-e).exp()))
    }
    fn hardswish_consume(&self, x: NdTensor) -> Result<NdTensor> {
        self.unary_consume("hardswish", x, |e| e * (e + 3.0).clamp(0.0, 6.0) / 6.0)
    }
    fn add_consume(&self, a: NdTensor, b: &NdTensor) -> Result<NdTensor> {
        match (a, b) {
            (NdTensor::F32(mut x), NdTensor::F32(y)) if x.shape() == y.shape() => {
                if x.len() >= kernels::PAR_MIN {
                    ndarray::Zip::from(&mut x)
                        .and(y)
                        .par_for_each(|p, &q| *p += q);
                } else {
                    x.zip_mut_with(y, |p, &q| *p += q);
                }
                Ok(NdTensor::F32(x))
            }
            (a, b) => self.add(&a, b),
        }
    }
    fn silu(&self, x: &NdTensor) -> Result<NdTensor> {
        self.unary("silu", x, |e| e / (1.0 + (-e).exp()))
    }
    fn hardsigmoid(&self, x: &NdTensor) -> Result<NdTensor> {
        self.unary("hardsigmoid", x, |e| (e + 3.0).clamp(0.0, 6.0) / 6.0)
    }
    fn hardswish(&self, x: &NdTensor) -> Result<NdTensor> {
        self.unary("hardswish", x, |e| e * (e + 3.0).clamp(0.0, 6.0) / 6.0)
    }
    fn softmax(&self, x: &NdTensor, dim: usize) -> Result<NdTensor> {
        let a = x.f32("softmax")?;
        let ax = check_dim("softmax", dim, a.ndim())?;
        Ok(NdTensor::float_like(
            x.dtype(),
            kernels::softmax(&a.view(), ax, false),
        ))
    }
    fn log_softmax(&self, x: &NdTensor, dim: usize) -> Result<NdTensor> {
        let a = x.f32("log_softmax")?;
        let ax = check_dim("log_softmax", dim, a.ndim())?;
        Ok(NdTensor::float_like(
            x.dtype(),
            kernels::softmax(&a.view(), ax, true),
        ))
    }

    fn sum(&self, x: &NdTensor, dims: &[usize], keepdim: bool) -> Result<NdTensor> {
        let dims = reduce_dims("sum", x.shape().len(), dims)?;
        Ok(match x {
            NdTensor::I64(a) => NdTensor::I64(sum_generic(a, &dims, keepdim).into_shared()),
            _ => {
                // accumulate in f64 for accuracy, then round once
                let a = x.f32("sum")?.mapv(f64::from).into_shared();
                NdTensor::float_like(
                    x.dtype(),
                    sum_generic(&a, &dims, keepdim).mapv(|v| v as f32),
                )
            }
        })
    }
    fn max_dim(&self, x: &NdTensor, dim: usize, keepdim: bool) -> Result<NdTensor> {
        let ax = check_dim("max_dim", dim, x.shape().len())?;
        let out = each!(x, a => {
            let mut m = a.map_axis(ax, |lane| {
                let mut best = lane[0];
                for &v in lane.iter() {
                    if v > best { best = v; }
                }
                best
            });
            if keepdim { m.insert_axis_inplace(ax); }
            m.into_shared()
        });
        if x.shape()[dim] == 0 {
            return Err(Error::shape("max_dim", "empty dim"));
        }
        Ok(out)
    }
    fn argmax(&self, x: &NdTensor, dim: usize, keepdim: bool) -> Result<NdTensor> {
        let ax = check_dim("argmax", dim, x.shape().len())?;
        if x.shape()[dim] == 0 {
            return Err(Error::shape("argmax", "empty dim"));
        }
        fn first_max<T: PartialOrd + Copy>(lane: ndarray::ArrayView1<'_, T>) -> i64 {
            let mut bi = 0;
            for (i, &v) in lane.iter().enumerate() {
                if v > lane[bi] {
                    bi = i;
                }
            }
            bi as i64
        }
        let mut m = match x {
            NdTensor::F32(a) => a.map_axis(ax, first_max),
            NdTensor::BF16(a) => a.map_axis(ax, first_max),
            NdTensor::I64(a) => a.map_axis(ax, first_max),
        };
        if keepdim {
            m.insert_axis_inplace(ax);
        }
        Ok(NdTensor::I64(m.into_shared()))
    }
    fn topk(
        &self,
        x: &NdTensor,
        k: usize,
        dim: usize,
        largest: bool,
    ) -> Result<(NdTensor, NdTensor)> {
        let ax = check_dim("topk", dim, x.shape().len())?;
        if k > x.shape()[dim] {
            return Err(Error::invalid(
                "topk",
                format!("k = {k} > size {} of dim {dim}", x.shape()[dim]),
            ));
        }
        let (vals, idx) = match x {
            NdTensor::F32(a) => {
                let (v, i) = kernels::topk(&a.view(), k, ax, largest);
                (NdTensor::F32(v.into_shared()), i)
            }
            NdTensor::BF16(a) => {
                let (v, i) = kernels::topk(&a.view(), k, ax, largest);
                (NdTensor::BF16(v.into_shared()), i)
            }
            NdTensor::I64(a) => {
                let (v, i) = kernels::topk(&a.view(), k, ax, largest);
                (NdTensor::I64(v.into_shared()), i)
            }
        };
        Ok((vals, NdTensor::I64(idx.into_shared())))
    }

    fn gather(&self, x: &NdTensor, dim: usize, index: &NdTensor) -> Result<NdTensor> {
        let NdTensor::I64(idx) = index else {
            return Err(Error::dtype("gather", index.dtype(), "index must be int64"));
        };
        check_dim("gather", dim, x.shape().len())?;
        Ok(each_try!(x, a => kernels::gather(&a.view(), dim, &idx.view()).map(|r| r.into_shared())))
    }
    fn index_select(&self, x: &NdTensor, dim: usize, index: &NdTensor) -> Result<NdTensor> {
        let NdTensor::I64(idx) = index else {
            return Err(Error::dtype(
                "index_select",
                index.dtype(),
                "index must be int64",
            ));
        };
        if idx.ndim() != 1 {
            return Err(Error::shape(
                "index_select",
                format!("index must be 1-d, got {:?}", idx.shape()),
            ));
        }
        let ax = check_dim("index_select", dim, x.shape().len())?;
        let n = x.shape()[dim] as i64;
        let ids: Vec<usize> = idx
            .iter()
            .map(|&i| {
                if (0..n).contains(&i) {
                    Ok(i as usize)
                } else {
                    Err(Error::invalid(
                        "index_select",
                        format!("index {i} out of range for size {n}"),
                    ))
                }
            })
            .collect::<Result<_>>()?;
        Ok(each!(x, a => a.select(ax, &ids).into_shared()))
    }
    fn masked_fill(&self, x: &NdTensor, mask: &NdTensor, value: f64) -> Result<NdTensor> {
        let shape = x.shape().to_vec();
        let m: ArrayD<bool> = match mask {
            NdTensor::F32(a) => a.mapv(|v| v != 0.0),
            NdTensor::BF16(a) => a.mapv(|v| f32::from(v) != 0.0),
            NdTensor::I64(a) => a.mapv(|v| v != 0),
        };
        let m = m
            .broadcast(IxDyn(&shape))
            .ok_or_else(|| {
                Error::shape(
                    "masked_fill",
                    format!("mask {:?} does not broadcast to {shape:?}", m.shape()),
                )
            })?
            .to_owned();
        Ok(match x {
            NdTensor::F32(a) => NdTensor::F32(
                ndarray::Zip::from(a)
                    .and(&m)
                    .map_collect(|&v, &k| if k { value as f32 } else { v })
                    .into_shared(),
            ),
            NdTensor::BF16(a) => NdTensor::BF16(
                ndarray::Zip::from(a)
                    .and(&m)
                    .map_collect(|&v, &k| if k { bf16::from_f64(value) } else { v })
                    .into_shared(),
            ),
            NdTensor::I64(a) => NdTensor::I64(
                ndarray::Zip::from(a)
                    .and(&m)
                    .map_collect(|&v, &k| if k { value as i64 } else { v })
                    .into_shared(),
            ),
        })
    }

    fn reshape(&self, x: &NdTensor, shape: &[usize]) -> Result<NdTensor> {
        let n: usize = shape.iter().product();
        if n != x.shape().iter().product::<usize>() {
            return Err(Error::shape(
                "reshape",
                format!("{:?} → {shape:?}: element counts differ", x.shape()),
            ));
        }
        let err = |e: ndarray::ShapeError| Error::shape("reshape", e.to_string());
        Ok(each_try!(x, a => {
            let std = if a.is_standard_layout() { a.clone() } else { a.as_standard_layout().into_owned().into_shared() };
            std.into_shape_with_order(IxDyn(shape)).map_err(err)
        }))
    }
    fn permute(&self, x: &NdTensor, dims: &[usize]) -> Result<NdTensor> {
        graft_backend::check_permutation(dims, x.shape().len())?;
        Ok(each!(x, a => a.clone().permuted_axes(IxDyn(dims))))
    }
    fn cat(&self, xs: &[&NdTensor], dim: usize) -> Result<NdTensor> {
        let Some(first) = xs.first() else {
            return Err(Error::invalid("cat", "no tensors"));
        };
        check_dim("cat", dim, first.shape().len())?;
        let err = |e: ndarray::ShapeError| Error::shape("cat", e.to_string());
        macro_rules! cat_as {
            ($var:ident) => {{
                let views = xs
                    .iter()
                    .map(|x| match x {
                        NdTensor::$var(a) => Ok(a.view()),
                        other => Err(Error::dtype(
                            "cat",
                            other.dtype(),
                            "all tensors must share a dtype",
                        )),
                    })
                    .collect::<Result<Vec<ArrayViewD<'_, _>>>>()?;
                NdTensor::$var(
                    ndarray::concatenate(Axis(dim), &views)
                        .map_err(err)?
                        .into_shared(),
                )
            }};
        }
        Ok(match first {
            NdTensor::F32(_) => cat_as!(F32),
            NdTensor::BF16(_) => cat_as!(BF16),
            NdTensor::I64(_) => cat_as!(I64),
        })
    }
    fn narrow(&self, x: &NdTensor, dim: usize, start: usize, len: usize) -> Result<NdTensor> {
        let ax = check_dim("narrow", dim, x.shape().len())?;
        if start + len > x.shape()[dim] {
            return Err(Error::invalid(
                "narrow",
                format!(
                    "{start}..{} out of range for size {}",
                    start + len,
                    x.shape()[dim]
                ),
            ));
        }
        let s = ndarray::Slice::from(start..start + len);
        Ok(each!(x, a => { let mut v = a.clone(); v.slice_axis_inplace(ax, s); v }))
    }

    fn matmul(&self, a: &NdTensor, b: &NdTensor) -> Result<NdTensor> {
        if a.dtype() != b.dtype() {
            return Err(Error::dtype(
                "matmul",
                format!("{} with {}", a.dtype(), b.dtype()),
                "same dtype",
            ));
        }
        let (x, y) = (a.f32("matmul")?, b.f32("matmul")?);
        Ok(NdTensor::float_like(
            a.dtype(),
            kernels::matmul(&x.view(), &y.view())?,
        ))
    }
    fn linear(&self, x: &NdTensor, w: &NdTensor, b: Option<&NdTensor>) -> Result<NdTensor> {
        let (xa, wa) = (x.f32("linear")?, w.f32("linear")?);
        let ba = b.map(|b| b.f32("linear")).transpose()?;
        Ok(NdTensor::float_like(
            x.dtype(),
            kernels::linear(&xa.view(), &wa.view(), ba.as_ref().map(|b| b.view()))?,
        ))
    }
    fn conv2d(
        &self,
        x: &NdTensor,
        w: &NdTensor,
        b: Option<&NdTensor>,
        opts: Conv2dOpts,
    ) -> Result<NdTensor> {
        let (xa, wa) = (x.f32("conv2d")?, w.f32("conv2d")?);
        let ba = b.map(|b| b.f32("conv2d")).transpose()?;
        Ok(NdTensor::float_like(
            x.dtype(),
            kernels::conv2d(&xa.view(), &wa.view(), ba.as_ref().map(|b| b.view()), opts)?,
        ))
    }
    fn batch_norm(
        &self,
        x: &NdTensor,
        bn: BatchNormTensors<'_, NdTensor>,
        mode: BatchNormMode,
    ) -> Result<NdTensor> {
        if let BatchNormMode::Train { .. } = mode {
            return Err(unsupported("BatchNorm in training / re-estimation mode"));
        }
        let xa = x.f32("batch_norm")?;
        let get = |t: Option<&NdTensor>| {
            t.map(|t| {
                t.f32("batch_norm")
                    .map(|a| a.iter().copied().collect::<Vec<f32>>())
            })
            .transpose()
        };
        let mean = get(Some(bn.running_mean))?.unwrap_or_default();
        let var = get(Some(bn.running_var))?.unwrap_or_default();
        let w = get(bn.weight)?;
        let bias = get(bn.bias)?;
        Ok(NdTensor::float_like(
            x.dtype(),
            kernels::batch_norm_eval(
                &xa.view(),
                &mean,
                &var,
                w.as_deref(),
                bias.as_deref(),
                bn.eps,
            )?,
        ))
    }
    fn layer_norm(
        &self,
        x: &NdTensor,
        normalized_dims: usize,
        weight: Option<&NdTensor>,
        bias: Option<&NdTensor>,
        eps: f64,
    ) -> Result<NdTensor> {
        let xa = x.f32("layer_norm")?;
        let wa = weight.map(|t| t.f32("layer_norm")).transpose()?;
        let ba = bias.map(|t| t.f32("layer_norm")).transpose()?;
        Ok(NdTensor::float_like(
            x.dtype(),
            kernels::layer_norm(
                &xa.view(),
                normalized_dims,
                wa.as_ref().map(|a| a.view()),
                ba.as_ref().map(|a| a.view()),
                eps,
            )?,
        ))
    }
    fn max_pool2d(&self, x: &NdTensor, opts: Pool2dOpts) -> Result<NdTensor> {
        let a = x.f32("max_pool2d")?;
        Ok(NdTensor::float_like(
            x.dtype(),
            kernels::pool2d(&a.view(), opts, true)?,
        ))
    }
    fn avg_pool2d(&self, x: &NdTensor, opts: Pool2dOpts) -> Result<NdTensor> {
        let a = x.f32("avg_pool2d")?;
        Ok(NdTensor::float_like(
            x.dtype(),
            kernels::pool2d(&a.view(), opts, false)?,
        ))
    }
    fn adaptive_avg_pool2d(&self, x: &NdTensor, out: (usize, usize)) -> Result<NdTensor> {
        let a = x.f32("adaptive_avg_pool2d")?;
        Ok(NdTensor::float_like(
            x.dtype(),
            kernels::adaptive_pool2d(&a.view(), out, false)?,
        ))
    }
    fn adaptive_max_pool2d(&self, x: &NdTensor, out: (usize, usize)) -> Result<NdTensor> {
        let a = x.f32("adaptive_max_pool2d")?;
        Ok(NdTensor::float_like(
            x.dtype(),
            kernels::adaptive_pool2d(&a.view(), out, true)?,
        ))
    }
    fn dropout(&self, _x: &NdTensor, _p: f64, _seed: u64) -> Result<NdTensor> {
        Err(unsupported("dropout in training mode"))
    }
    fn drop_path(&self, _x: &NdTensor, _p: f64, _seed: u64) -> Result<NdTensor> {
        Err(unsupported("drop_path in training mode"))
    }
}

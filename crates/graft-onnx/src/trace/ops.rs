//! The [`Backend`] ops of [`Trace`]: each records its ONNX nodes and computes its output shape.

use graft_backend::{
    Backend, BatchNormMode, BatchNormTensors, Conv2dOpts, DType, GeluApprox, Pool2dOpts,
    TensorData, broadcast_shape,
};
use graft_core::{Error, Result};

use super::{NAME, Trace, Value, ints, pads, pair, unsupported};
use crate::graph::{Attr, onnx_type};
use crate::proto::data_type;

impl Backend for Trace {
    type Tensor = Value;

    fn name(&self) -> &'static str {
        NAME
    }
    fn device(&self) -> String {
        "onnx graph".into()
    }
    fn from_data(&self, data: &TensorData) -> Result<Value> {
        let (shape, dtype) = (data.shape().to_vec(), data.dtype());
        Ok(Self::value(self.konst(data.clone()), shape, dtype))
    }
    fn to_data(&self, _x: &Value) -> Result<TensorData> {
        Err(unsupported(
            "reading a tensor's values while tracing",
            "the model reads a computed value in its forward (a data-dependent step); an exported graph cannot",
        ))
    }
    fn shape(&self, x: &Value) -> Vec<usize> {
        x.shape.clone()
    }
    fn dtype(&self, x: &Value) -> DType {
        x.dtype
    }
    fn cast(&self, x: &Value, dtype: DType) -> Result<Value> {
        if x.dtype == dtype {
            return Ok(x.clone());
        }
        let to = Attr::Int(onnx_type(dtype).into());
        Ok(self.op("Cast", &[&x.name], vec![("to", to)], x.shape.clone(), dtype))
    }
    fn rand_uniform(&self, _shape: &[usize], _seed: u64) -> Result<Value> {
        Err(unsupported(
            "random numbers",
            "an exported graph computes the eval-mode function (no dropout, no drop path)",
        ))
    }

    fn add(&self, a: &Value, b: &Value) -> Result<Value> {
        self.binary("Add", a, b)
    }
    fn sub(&self, a: &Value, b: &Value) -> Result<Value> {
        self.binary("Sub", a, b)
    }
    fn mul(&self, a: &Value, b: &Value) -> Result<Value> {
        self.binary("Mul", a, b)
    }
    fn div(&self, a: &Value, b: &Value) -> Result<Value> {
        self.binary("Div", a, b)
    }
    fn lt_scalar(&self, x: &Value, v: f64) -> Result<Value> {
        let s = self.scalar_const(v, x.dtype);
        let m = self.op("Less", &[&x.name, &s], vec![], x.shape.clone(), x.dtype);
        let to = Attr::Int(onnx_type(x.dtype).into());
        Ok(self.op(
            "Cast",
            &[&m.name],
            vec![("to", to)],
            x.shape.clone(),
            x.dtype,
        ))
    }
    fn exp(&self, x: &Value) -> Result<Value> {
        Ok(self.unary("Exp", x))
    }
    fn log(&self, x: &Value) -> Result<Value> {
        Ok(self.unary("Log", x))
    }
    fn tanh(&self, x: &Value) -> Result<Value> {
        Ok(self.unary("Tanh", x))
    }
    fn sqrt(&self, x: &Value) -> Result<Value> {
        Ok(self.unary("Sqrt", x))
    }
    fn sigmoid(&self, x: &Value) -> Result<Value> {
        Ok(self.unary("Sigmoid", x))
    }
    fn clamp(&self, x: &Value, min: Option<f64>, max: Option<f64>) -> Result<Value> {
        let lo = min.map_or(String::new(), |v| self.scalar_const(v, x.dtype));
        let hi = max.map_or(String::new(), |v| self.scalar_const(v, x.dtype));
        Ok(self.op(
            "Clip",
            &[&x.name, &lo, &hi],
            vec![],
            x.shape.clone(),
            x.dtype,
        ))
    }
    fn gelu(&self, x: &Value, approx: GeluApprox) -> Result<Value> {
        // the decompositions PyTorch's exporter writes, which ONNX Runtime fuses back into one
        // Gelu / FastGelu kernel
        let inner = match approx {
            GeluApprox::Erf => {
                let d = self.div(x, &self.scalar(std::f64::consts::SQRT_2, x.dtype)?)?;
                self.unary("Erf", &d)
            }
            GeluApprox::Tanh => {
                let c = (2.0 / std::f64::consts::PI).sqrt();
                let three = self.scalar_const(3.0, x.dtype);
                let cube = self.op("Pow", &[&x.name, &three], vec![], x.shape.clone(), x.dtype);
                let t = self.add(x, &self.mul_scalar(&cube, 0.044715)?)?;
                self.unary("Tanh", &self.mul_scalar(&t, c)?)
            }
        };
        let y = self.mul(x, &self.add_scalar(&inner, 1.0)?)?;
        self.mul_scalar(&y, 0.5)
    }
    fn relu(&self, x: &Value) -> Result<Value> {
        Ok(self.unary("Relu", x))
    }
    fn relu6(&self, x: &Value) -> Result<Value> {
        self.clamp(x, Some(0.0), Some(6.0))
    }
    fn silu(&self, x: &Value) -> Result<Value> {
        self.mul(x, &self.unary("Sigmoid", x))
    }
    fn hardsigmoid(&self, x: &Value) -> Result<Value> {
        let attrs = vec![
            ("alpha", Attr::Float(1.0 / 6.0)),
            ("beta", Attr::Float(0.5)),
        ];
        Ok(self.op("HardSigmoid", &[&x.name], attrs, x.shape.clone(), x.dtype))
    }
    fn hardswish(&self, x: &Value) -> Result<Value> {
        Ok(self.unary("HardSwish", x))
    }
    fn softmax(&self, x: &Value, dim: usize) -> Result<Value> {
        Self::check_dim("softmax", x, dim)?;
        let a = vec![("axis", Attr::Int(dim as i64))];
        Ok(self.op("Softmax", &[&x.name], a, x.shape.clone(), x.dtype))
    }
    fn log_softmax(&self, x: &Value, dim: usize) -> Result<Value> {
        Self::check_dim("log_softmax", x, dim)?;
        let a = vec![("axis", Attr::Int(dim as i64))];
        Ok(self.op("LogSoftmax", &[&x.name], a, x.shape.clone(), x.dtype))
    }

    fn sum(&self, x: &Value, dims: &[usize], keepdim: bool) -> Result<Value> {
        self.reduce("ReduceSum", x, dims, keepdim)
    }
    fn mean(&self, x: &Value, dims: &[usize], keepdim: bool) -> Result<Value> {
        self.reduce("ReduceMean", x, dims, keepdim)
    }
    fn max_dim(&self, x: &Value, dim: usize, keepdim: bool) -> Result<Value> {
        Self::check_dim("max_dim", x, dim)?;
        self.reduce("ReduceMax", x, &[dim], keepdim)
    }
    fn argmax(&self, x: &Value, dim: usize, keepdim: bool) -> Result<Value> {
        Self::check_dim("argmax", x, dim)?;
        let mut shape = x.shape.clone();
        if keepdim {
            shape[dim] = 1;
        } else {
            shape.remove(dim);
        }
        let attrs = vec![
            ("axis", Attr::Int(dim as i64)),
            ("keepdims", Attr::Int(keepdim.into())),
        ];
        Ok(self.op("ArgMax", &[&x.name], attrs, shape, DType::I64))
    }
    fn topk(&self, x: &Value, k: usize, dim: usize, largest: bool) -> Result<(Value, Value)> {
        Self::check_dim("topk", x, dim)?;
        if k > x.shape[dim] {
            return Err(Error::invalid(
                "topk",
                format!("k = {k} > {} along dim {dim}", x.shape[dim]),
            ));
        }
        let kk = self.i64s(&[k]);
        let attrs = vec![
            ("axis", Attr::Int(dim as i64)),
            ("largest", Attr::Int(largest.into())),
            ("sorted", Attr::Int(1)),
        ];
        let mut out = self
            .graph()
            .node("TopK", vec![x.name.to_string(), kk], 2, attrs);
        let mut shape = x.shape.clone();
        shape[dim] = k;
        let idx = Self::value(out.remove(1), shape.clone(), DType::I64);
        Ok((Self::value(out.remove(0), shape, x.dtype), idx))
    }

    fn gather(&self, x: &Value, dim: usize, index: &Value) -> Result<Value> {
        Self::check_dim("gather", x, dim)?;
        let a = vec![("axis", Attr::Int(dim as i64))];
        Ok(self.op(
            "GatherElements",
            &[&x.name, &index.name],
            a,
            index.shape.clone(),
            x.dtype,
        ))
    }
    fn index_select(&self, x: &Value, dim: usize, index: &Value) -> Result<Value> {
        Self::check_dim("index_select", x, dim)?;
        if index.shape.len() != 1 {
            return Err(Error::shape(
                "index_select",
                format!("index must be 1-d, got {:?}", index.shape),
            ));
        }
        let mut shape = x.shape.clone();
        shape[dim] = index.shape[0];
        let a = vec![("axis", Attr::Int(dim as i64))];
        Ok(self.op("Gather", &[&x.name, &index.name], a, shape, x.dtype))
    }
    fn masked_fill(&self, x: &Value, mask: &Value, value: f64) -> Result<Value> {
        let shape = broadcast_shape(&x.shape, &mask.shape).ok_or_else(|| {
            Error::shape(
                "masked_fill",
                format!("mask {:?} does not broadcast to {:?}", mask.shape, x.shape),
            )
        })?;
        let to = Attr::Int(data_type::BOOL.into());
        let m = self.op(
            "Cast",
            &[&mask.name],
            vec![("to", to)],
            mask.shape.clone(),
            mask.dtype,
        );
        let v = self.scalar_const(value, x.dtype);
        Ok(self.op("Where", &[&m.name, &v, &x.name], vec![], shape, x.dtype))
    }
    fn embedding(&self, weight: &Value, ids: &Value) -> Result<Value> {
        let mut shape = ids.shape.clone();
        shape.extend_from_slice(&weight.shape[1..]);
        let a = vec![("axis", Attr::Int(0))];
        Ok(self.op("Gather", &[&weight.name, &ids.name], a, shape, weight.dtype))
    }

    fn reshape(&self, x: &Value, shape: &[usize]) -> Result<Value> {
        let (n, m) = (
            x.shape.iter().product::<usize>(),
            shape.iter().product::<usize>(),
        );
        if n != m {
            return Err(Error::shape(
                "reshape",
                format!("{:?} ({n} elements) to {shape:?} ({m})", x.shape),
            ));
        }
        if x.shape == shape {
            return Ok(x.clone());
        }
        let s = self.i64s(shape);
        Ok(self.op("Reshape", &[&x.name, &s], vec![], shape.to_vec(), x.dtype))
    }
    fn permute(&self, x: &Value, dims: &[usize]) -> Result<Value> {
        graft_backend::check_permutation(dims, x.shape.len())?;
        let shape = dims.iter().map(|&d| x.shape[d]).collect();
        Ok(self.op(
            "Transpose",
            &[&x.name],
            vec![("perm", ints(dims))],
            shape,
            x.dtype,
        ))
    }
    fn cat(&self, xs: &[&Value], dim: usize) -> Result<Value> {
        let first = xs
            .first()
            .ok_or_else(|| Error::invalid("cat", "no tensors"))?;
        Self::check_dim("cat", first, dim)?;
        let mut shape = first.shape.clone();
        shape[dim] = 0;
        for x in xs {
            let ok = x.shape.len() == shape.len()
                && x.shape
                    .iter()
                    .zip(&first.shape)
                    .enumerate()
                    .all(|(i, (a, b))| i == dim || a == b);
            if !ok || x.dtype != first.dtype {
                return Err(Error::shape(
                    "cat",
                    format!(
                        "{:?} {} with {:?} {} along dim {dim}",
                        x.shape, x.dtype, first.shape, first.dtype
                    ),
                ));
            }
            shape[dim] += x.shape[dim];
        }
        let names: Vec<&str> = xs.iter().map(|x| &*x.name).collect();
        let a = vec![("axis", Attr::Int(dim as i64))];
        Ok(self.op("Concat", &names, a, shape, first.dtype))
    }
    fn narrow(&self, x: &Value, dim: usize, start: usize, len: usize) -> Result<Value> {
        Self::check_dim("narrow", x, dim)?;
        if start + len > x.shape[dim] {
            return Err(Error::invalid(
                "narrow",
                format!(
                    "{start}..{} past {} along dim {dim}",
                    start + len,
                    x.shape[dim]
                ),
            ));
        }
        if start == 0 && len == x.shape[dim] {
            return Ok(x.clone());
        }
        let (s, e, a) = (
            self.i64s(&[start]),
            self.i64s(&[start + len]),
            self.i64s(&[dim]),
        );
        let mut shape = x.shape.clone();
        shape[dim] = len;
        Ok(self.op("Slice", &[&x.name, &s, &e, &a], vec![], shape, x.dtype))
    }

    fn matmul(&self, a: &Value, b: &Value) -> Result<Value> {
        let (ra, rb) = (a.shape.len(), b.shape.len());
        let bad = || {
            Error::shape(
                "matmul",
                format!("{:?} and {:?} do not multiply", a.shape, b.shape),
            )
        };
        if ra == 0 || rb == 0 {
            return Err(bad());
        }
        // NumPy's rules: a 1-d operand gains a dim that the result then drops
        let sa = if ra == 1 {
            vec![1, a.shape[0]]
        } else {
            a.shape.clone()
        };
        let sb = if rb == 1 {
            vec![b.shape[0], 1]
        } else {
            b.shape.clone()
        };
        let (m, k) = (sa[sa.len() - 2], sa[sa.len() - 1]);
        let (k2, n) = (sb[sb.len() - 2], sb[sb.len() - 1]);
        if k != k2 {
            return Err(bad());
        }
        let mut shape =
            broadcast_shape(&sa[..sa.len() - 2], &sb[..sb.len() - 2]).ok_or_else(bad)?;
        if ra > 1 {
            shape.push(m);
        }
        if rb > 1 {
            shape.push(n);
        }
        let (a, b) = self.same_dtype(a, b)?;
        Ok(self.op("MatMul", &[&a.name, &b.name], vec![], shape, a.dtype))
    }
    fn linear(&self, x: &Value, w: &Value, b: Option<&Value>) -> Result<Value> {
        if w.shape.len() != 2 || x.shape.last() != Some(&w.shape[1]) {
            return Err(Error::shape(
                "linear",
                format!("input {:?} with weight {:?}", x.shape, w.shape),
            ));
        }
        if x.shape.len() == 2 {
            let mut shape = x.shape.clone();
            shape[1] = w.shape[0];
            let mut inputs = vec![&*x.name, &*w.name];
            if let Some(b) = b {
                inputs.push(&b.name);
            }
            let a = vec![("transB", Attr::Int(1))];
            return Ok(self.op("Gemm", &inputs, a, shape, x.dtype));
        }
        let y = self.matmul(x, &self.permute(w, &[1, 0])?)?;
        match b {
            Some(b) => self.add(&y, b),
            None => Ok(y),
        }
    }
    fn conv2d(&self, x: &Value, w: &Value, b: Option<&Value>, o: Conv2dOpts) -> Result<Value> {
        let bad = |why: &str| {
            Error::shape(
                "conv2d",
                format!("input {:?}, weight {:?}, {o:?}: {why}", x.shape, w.shape),
            )
        };
        if x.shape.len() != 4 || w.shape.len() != 4 {
            return Err(bad("needs NCHW input and OIHW weight"));
        }
        if o.groups == 0
            || x.shape[1] != w.shape[1] * o.groups
            || !w.shape[0].is_multiple_of(o.groups)
        {
            return Err(bad("channels and groups disagree"));
        }
        let out = |i: usize, k: usize, s: usize, p: usize, d: usize| {
            let span = d * (k - 1) + 1;
            (i + 2 * p >= span && s > 0).then(|| (i + 2 * p - span) / s + 1)
        };
        let oh = out(
            x.shape[2],
            w.shape[2],
            o.stride.0,
            o.padding.0,
            o.dilation.0,
        );
        let ow = out(
            x.shape[3],
            w.shape[3],
            o.stride.1,
            o.padding.1,
            o.dilation.1,
        );
        let (Some(oh), Some(ow)) = (oh, ow) else {
            return Err(bad("the kernel does not fit"));
        };
        let mut inputs = vec![&*x.name, &*w.name];
        if let Some(b) = b {
            inputs.push(&b.name);
        }
        let attrs = vec![
            ("kernel_shape", ints(&w.shape[2..])),
            ("strides", pair(o.stride)),
            ("pads", pads(o.padding)),
            ("dilations", pair(o.dilation)),
            ("group", Attr::Int(o.groups as i64)),
        ];
        let shape = vec![x.shape[0], w.shape[0], oh, ow];
        Ok(self.op("Conv", &inputs, attrs, shape, x.dtype))
    }
    fn batch_norm(
        &self,
        x: &Value,
        bn: BatchNormTensors<'_, Value>,
        mode: BatchNormMode,
    ) -> Result<Value> {
        if mode != BatchNormMode::Eval {
            return Err(unsupported(
                "training-mode BatchNorm",
                "an exported graph computes the eval-mode function",
            ));
        }
        if x.shape.len() < 2 {
            return Err(Error::shape("batch_norm", format!("input {:?}", x.shape)));
        }
        let c = x.shape[1];
        let scale = match bn.weight {
            Some(w) => w.name.to_string(),
            None => self
                .konst(TensorData::F32(ndarray::ArrayD::ones(ndarray::IxDyn(&[c]))).cast(x.dtype)),
        };
        let shift = match bn.bias {
            Some(b) => b.name.to_string(),
            None => self
                .konst(TensorData::F32(ndarray::ArrayD::zeros(ndarray::IxDyn(&[c]))).cast(x.dtype)),
        };
        let attrs = vec![("epsilon", Attr::Float(bn.eps as f32))];
        let inputs = [
            &*x.name,
            &scale,
            &shift,
            &bn.running_mean.name,
            &bn.running_var.name,
        ];
        Ok(self.op(
            "BatchNormalization",
            &inputs,
            attrs,
            x.shape.clone(),
            x.dtype,
        ))
    }
    fn layer_norm(
        &self,
        x: &Value,
        normalized_dims: usize,
        weight: Option<&Value>,
        bias: Option<&Value>,
        eps: f64,
    ) -> Result<Value> {
        let r = x.shape.len();
        if normalized_dims == 0 || normalized_dims > r {
            return Err(Error::invalid(
                "layer_norm",
                format!("normalized_dims {normalized_dims} for rank {r}"),
            ));
        }
        let norm_shape = &x.shape[r - normalized_dims..];
        let scale = match weight {
            Some(w) => w.name.to_string(),
            None => self.konst(
                TensorData::F32(ndarray::ArrayD::ones(ndarray::IxDyn(norm_shape))).cast(x.dtype),
            ),
        };
        let mut inputs = vec![&*x.name, &scale];
        if let Some(b) = bias {
            inputs.push(&b.name);
        }
        let attrs = vec![
            ("axis", Attr::Int((r - normalized_dims) as i64)),
            ("epsilon", Attr::Float(eps as f32)),
        ];
        Ok(self.op(
            "LayerNormalization",
            &inputs,
            attrs,
            x.shape.clone(),
            x.dtype,
        ))
    }
    fn max_pool2d(&self, x: &Value, opts: Pool2dOpts) -> Result<Value> {
        self.pool("MaxPool", x, opts)
    }
    fn avg_pool2d(&self, x: &Value, opts: Pool2dOpts) -> Result<Value> {
        self.pool("AveragePool", x, opts)
    }
    fn adaptive_avg_pool2d(&self, x: &Value, out: (usize, usize)) -> Result<Value> {
        self.adaptive(false, x, out)
    }
    fn adaptive_max_pool2d(&self, x: &Value, out: (usize, usize)) -> Result<Value> {
        self.adaptive(true, x, out)
    }
}

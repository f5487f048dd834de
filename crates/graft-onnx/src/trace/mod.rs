//! [`Trace`]: a [`Backend`] whose tensors are names in a graph being written. Running a model's
//! forward on it records every op as ONNX nodes (opset [`OPSET`]), with shapes computed as the
//! ops go, so the model code that runs on libtorch and ndarray is the code that is exported — no
//! per-architecture export code.
//!
//! A trace is of one input shape: every shape in the graph is fixed (a model that builds a
//! batch-sized tensor, as ViT's class token does, bakes the batch in). Ops that need values
//! (`to_data`) or randomness (training-mode dropout) are refused with
//! [`graft_core::Error::Unsupported`].

use std::sync::{Arc, Mutex, MutexGuard};

use graft_backend::{Backend, DType, Pool2dOpts, TensorData, broadcast_shape};
use graft_core::{Error, Result};

use crate::graph::{Attr, Graph};

mod ops;

/// The ONNX operator set the trace writes (LayerNormalization needs 17; Reduce* take their axes
/// as an input from 18).
pub const OPSET: i64 = 18;

/// The tracing backend: clones share one graph.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    g: Arc<Mutex<Graph>>,
}

/// A traced tensor: the name of its value in the graph, its shape and dtype.
#[derive(Debug, Clone)]
pub struct Value {
    pub(crate) name: Arc<str>,
    shape: Vec<usize>,
    dtype: DType,
}

const NAME: &str = "onnx-trace";

fn unsupported(what: &str, why: &str) -> Error {
    Error::Unsupported {
        backend: NAME,
        what: what.into(),
        why: why.into(),
    }
}

fn ints(v: &[usize]) -> Attr {
    Attr::Ints(v.iter().map(|&x| x as i64).collect())
}

fn pair(p: (usize, usize)) -> Attr {
    ints(&[p.0, p.1])
}

fn pads(p: (usize, usize)) -> Attr {
    ints(&[p.0, p.1, p.0, p.1])
}

impl Trace {
    /// A new, empty trace.
    pub fn new() -> Self {
        Self::default()
    }
    pub(crate) fn graph(&self) -> MutexGuard<'_, Graph> {
        // a panic while the lock was held leaves a graph that is only ever appended to
        self.g.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// Declares a graph input.
    pub fn input(&self, name: &str, shape: &[usize], dtype: DType) -> Value {
        self.graph()
            .inputs
            .push((name.to_string(), dtype, shape.to_vec()));
        Value {
            name: name.into(),
            shape: shape.to_vec(),
            dtype,
        }
    }
    fn value(name: String, shape: Vec<usize>, dtype: DType) -> Value {
        Value {
            name: name.into(),
            shape,
            dtype,
        }
    }
    /// One node with one output.
    fn op(
        &self,
        op: &'static str,
        inputs: &[&str],
        attrs: Vec<(&'static str, Attr)>,
        shape: Vec<usize>,
        dtype: DType,
    ) -> Value {
        let inputs = inputs.iter().map(|s| s.to_string()).collect();
        let mut out = self.graph().node(op, inputs, 1, attrs);
        Self::value(out.remove(0), shape, dtype)
    }
    fn unary(&self, op: &'static str, x: &Value) -> Value {
        self.op(op, &[&x.name], vec![], x.shape.clone(), x.dtype)
    }
    fn konst(&self, data: TensorData) -> String {
        self.graph().constant(data)
    }
    /// A 1-d i64 constant (axes, shapes, slice bounds).
    fn i64s(&self, v: &[usize]) -> String {
        let v: Vec<i64> = v.iter().map(|&x| x as i64).collect();
        let n = v.len();
        self.konst(TensorData::I64(
            ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[n]), v).expect("1-d"),
        ))
    }
    /// A 0-d constant of `dtype`.
    fn scalar_const(&self, v: f64, dtype: DType) -> String {
        let d = match dtype {
            DType::I64 => TensorData::I64(ndarray::arr0(v as i64).into_dyn()),
            _ => TensorData::scalar_f32(v as f32).cast(dtype),
        };
        self.konst(d)
    }
    /// Brings two operands to one dtype (an i64 operand takes the float one's; bf16 meets f32
    /// in f32, as libtorch promotes).
    fn same_dtype(&self, a: &Value, b: &Value) -> Result<(Value, Value)> {
        if a.dtype == b.dtype {
            return Ok((a.clone(), b.clone()));
        }
        let to = match (a.dtype, b.dtype) {
            (DType::I64, t) | (t, DType::I64) => t,
            _ => DType::F32,
        };
        Ok((self.cast(a, to)?, self.cast(b, to)?))
    }
    fn binary(&self, op: &'static str, a: &Value, b: &Value) -> Result<Value> {
        let (a, b) = self.same_dtype(a, b)?;
        let shape = broadcast_shape(&a.shape, &b.shape).ok_or_else(|| {
            Error::shape(
                op,
                format!("{:?} and {:?} do not broadcast", a.shape, b.shape),
            )
        })?;
        Ok(self.op(op, &[&a.name, &b.name], vec![], shape, a.dtype))
    }
    fn check_dim(op: &'static str, x: &Value, dim: usize) -> Result<()> {
        if dim >= x.shape.len() {
            return Err(Error::invalid(
                op,
                format!("dim {dim} out of range for shape {:?}", x.shape),
            ));
        }
        Ok(())
    }
    fn reduce(&self, op: &'static str, x: &Value, dims: &[usize], keepdim: bool) -> Result<Value> {
        for &d in dims {
            Self::check_dim(op, x, d)?;
        }
        let all: Vec<usize> = (0..x.shape.len()).collect();
        let dims = if dims.is_empty() { &all[..] } else { dims };
        let mut shape = Vec::new();
        for (i, &s) in x.shape.iter().enumerate() {
            if !dims.contains(&i) {
                shape.push(s);
            } else if keepdim {
                shape.push(1);
            }
        }
        let axes = self.i64s(dims);
        Ok(self.op(
            op,
            &[&x.name, &axes],
            vec![("keepdims", Attr::Int(keepdim.into()))],
            shape,
            x.dtype,
        ))
    }
    fn pool(&self, op: &'static str, x: &Value, o: Pool2dOpts) -> Result<Value> {
        if x.shape.len() != 4 {
            return Err(Error::shape(op, format!("needs NCHW, got {:?}", x.shape)));
        }
        let oh = o.out_len(x.shape[2], 0);
        let ow = o.out_len(x.shape[3], 1);
        let (Some(oh), Some(ow)) = (oh, ow) else {
            return Err(Error::shape(
                op,
                format!("window {:?} does not fit {:?}", o.kernel, x.shape),
            ));
        };
        let mut attrs = vec![
            ("kernel_shape", pair(o.kernel)),
            ("strides", pair(o.stride)),
            ("pads", pads(o.padding)),
            ("ceil_mode", Attr::Int(o.ceil_mode.into())),
        ];
        if op == "MaxPool" {
            attrs.push(("dilations", pair(o.dilation)));
        } else {
            attrs.push(("count_include_pad", Attr::Int(o.count_include_pad.into())));
        }
        let shape = vec![x.shape[0], x.shape[1], oh, ow];
        Ok(self.op(op, &[&x.name], attrs, shape, x.dtype))
    }
    /// Adaptive pooling as a global pool or an exact fixed window (the sizes divide); PyTorch's
    /// uneven bins have no ONNX operator.
    fn adaptive(&self, max: bool, x: &Value, out: (usize, usize)) -> Result<Value> {
        let op = if max {
            "adaptive_max_pool2d"
        } else {
            "adaptive_avg_pool2d"
        };
        if x.shape.len() != 4 || out.0 == 0 || out.1 == 0 {
            return Err(Error::shape(op, format!("{:?} to {out:?}", x.shape)));
        }
        let (h, w) = (x.shape[2], x.shape[3]);
        if out == (1, 1) {
            let g = if max {
                "GlobalMaxPool"
            } else {
                "GlobalAveragePool"
            };
            let shape = vec![x.shape[0], x.shape[1], 1, 1];
            return Ok(self.op(g, &[&x.name], vec![], shape, x.dtype));
        }
        if !h.is_multiple_of(out.0) || !w.is_multiple_of(out.1) {
            return Err(unsupported(
                &format!("{op} from {h}x{w} to {}x{}", out.0, out.1),
                "ONNX has no adaptive pooling: graft exports it only as a global pool or when the output size divides the input's",
            ));
        }
        let k = (h / out.0, w / out.1);
        let o = Pool2dOpts {
            kernel: k,
            stride: k,
            padding: (0, 0),
            dilation: (1, 1),
            ceil_mode: false,
            count_include_pad: true,
        };
        self.pool(if max { "MaxPool" } else { "AveragePool" }, x, o)
    }
}

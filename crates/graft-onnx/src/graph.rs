//! The graph a trace records: ONNX nodes in call order, constants, and the names of values.

use std::collections::{HashMap, HashSet};

use graft_backend::{DType, TensorData};
use graft_core::{Error, Result};

use crate::proto::{
    AttributeProto, AttributeType, DimValue, Dimension, GraphProto, NodeProto, TensorProto,
    TensorShapeProto, TensorTypeProto, TypeProto, ValueInfoProto, data_type,
};

/// A node attribute value.
#[derive(Debug, Clone)]
pub(crate) enum Attr {
    Int(i64),
    Float(f32),
    Ints(Vec<i64>),
}

/// The element type ONNX names for a graft dtype.
pub(crate) fn onnx_type(dtype: DType) -> i32 {
    match dtype {
        DType::F32 => data_type::FLOAT,
        DType::BF16 => data_type::BFLOAT16,
        DType::I64 => data_type::INT64,
    }
}

/// A tensor proto of `data` named `name`.
pub(crate) fn tensor_proto(name: &str, data: &TensorData) -> TensorProto {
    TensorProto {
        dims: data.shape().iter().map(|&d| d as i64).collect(),
        data_type: onnx_type(data.dtype()),
        name: name.to_string(),
        raw_data: data.to_le_bytes(),
    }
}

/// A typed value info of fixed shape.
pub(crate) fn value_info(name: &str, elem: i32, shape: &[usize]) -> ValueInfoProto {
    let dim = shape
        .iter()
        .map(|&d| Dimension {
            value: Some(DimValue::DimValue(d as i64)),
        })
        .collect();
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: elem,
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
    }
}

/// What a trace has recorded so far.
#[derive(Debug, Default)]
pub(crate) struct Graph {
    pub(crate) nodes: Vec<NodeProto>,
    /// Constants by value name: model parameters and the small constants ops make.
    pub(crate) constants: Vec<(String, TensorData)>,
    /// Graph inputs: name, dtype, shape.
    pub(crate) inputs: Vec<(String, DType, Vec<usize>)>,
    next: usize,
    per_op: HashMap<&'static str, usize>,
}

impl Graph {
    /// A fresh value name.
    pub(crate) fn fresh(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}{}", self.next)
    }
    /// Records a constant; returns its value name.
    pub(crate) fn constant(&mut self, data: TensorData) -> String {
        let name = self.fresh("const_");
        self.constants.push((name.clone(), data));
        name
    }
    /// Records one node with `outputs` fresh output names; returns them.
    pub(crate) fn node(
        &mut self,
        op: &'static str,
        inputs: Vec<String>,
        outputs: usize,
        attrs: Vec<(&'static str, Attr)>,
    ) -> Vec<String> {
        let k = self.per_op.entry(op).or_insert(0);
        *k += 1;
        let name = format!("{op}_{k}");
        let out: Vec<String> = (0..outputs).map(|_| self.fresh("v")).collect();
        let attribute = attrs
            .into_iter()
            .map(|(n, a)| {
                let mut p = AttributeProto {
                    name: n.to_string(),
                    ..Default::default()
                };
                match a {
                    Attr::Int(i) => {
                        p.i = i;
                        p.r#type = AttributeType::Int as i32;
                    }
                    Attr::Float(f) => {
                        p.f = f;
                        p.r#type = AttributeType::Float as i32;
                    }
                    Attr::Ints(v) => {
                        p.ints = v;
                        p.r#type = AttributeType::Ints as i32;
                    }
                }
                p
            })
            .collect();
        self.nodes.push(NodeProto {
            input: inputs,
            output: out.clone(),
            name,
            op_type: op.to_string(),
            attribute,
            domain: String::new(),
        });
        out
    }

    /// The graph proto with `outputs` (name, dtype, shape) as its results: constants no node
    /// reads are dropped (a model's unused parameters, a replaced head's old weights), names in
    /// `rename` (value → parameter or output name) are applied.
    pub(crate) fn finish(
        &self,
        name: &str,
        outputs: &[(String, DType, Vec<usize>)],
        rename: &HashMap<String, String>,
    ) -> Result<GraphProto> {
        let used: HashSet<&str> = self
            .nodes
            .iter()
            .flat_map(|n| n.input.iter().map(String::as_str))
            .chain(outputs.iter().map(|(n, _, _)| n.as_str()))
            .collect();
        let rn = |n: &str| rename.get(n).cloned().unwrap_or_else(|| n.to_string());
        for (n, ..) in outputs {
            if self.constants.iter().any(|(c, _)| c == n) || self.inputs.iter().any(|i| &i.0 == n) {
                return Err(Error::invalid(
                    "onnx export",
                    format!("the output {n} is a constant or an input, not computed"),
                ));
            }
        }
        let node = self
            .nodes
            .iter()
            .map(|n| {
                let mut n = n.clone();
                for i in n.input.iter_mut().chain(n.output.iter_mut()) {
                    if !i.is_empty() {
                        *i = rn(i);
                    }
                }
                n
            })
            .collect();
        let initializer = self
            .constants
            .iter()
            .filter(|(n, _)| used.contains(n.as_str()))
            .map(|(n, d)| tensor_proto(&rn(n), d))
            .collect();
        Ok(GraphProto {
            node,
            name: name.to_string(),
            initializer,
            input: self
                .inputs
                .iter()
                .map(|(n, dt, s)| value_info(&rn(n), onnx_type(*dt), s))
                .collect(),
            output: outputs
                .iter()
                .map(|(n, dt, s)| value_info(&rn(n), onnx_type(*dt), s))
                .collect(),
            ..Default::default()
        })
    }
}

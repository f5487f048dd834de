//! Which tensors the int8 graph quantises and how: decided from the fp32 graph alone.

use std::collections::{HashMap, HashSet};

use crate::proto::{GraphProto, NodeProto, TensorProto, data_type};

/// Ops whose output is quantised when all their inputs are (ONNX Runtime runs them on uint8).
const INTEGER_ELEMENTWISE: &[&str] = &["Add", "Mul", "Sigmoid", "GlobalAveragePool"];

/// Where an activation's quantisation parameters come from.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Source {
    /// Its own calibrated range.
    Calibrated,
    /// The same scale and zero point as another quantised tensor (a max-pool or reshape of it).
    SameAs(String),
}

/// What [`quantize`] will do to a graph: decided from the float graph alone, so calibration and
/// quantisation agree on the tensors.
#[derive(Debug, Default)]
pub(super) struct Plan {
    /// Quantised activations in graph order, and where their parameters come from.
    pub(super) acts: Vec<(String, Source)>,
    /// `Relu` nodes folded into their producer's output quantisation (node index → the
    /// producer's index).
    pub(super) folded: HashMap<usize, usize>,
    /// Weight inputs: (node index, per-channel axis, the initializer, whether the op reads its
    /// transpose — a `MatMul` of `Transpose(W)`, how a linear layer on token sequences exports).
    pub(super) weights: Vec<(usize, i64, String, bool)>,
}

fn attr_i(n: &NodeProto, name: &str, default: i64) -> i64 {
    n.attribute
        .iter()
        .find(|a| a.name == name)
        .map_or(default, |a| a.i)
}

fn attr_f(n: &NodeProto, name: &str, default: f32) -> f32 {
    n.attribute
        .iter()
        .find(|a| a.name == name)
        .map_or(default, |a| a.f)
}

pub(super) fn plan(g: &GraphProto) -> Plan {
    let inits: HashMap<&str, &TensorProto> =
        g.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
    // the model's outputs and what reaches them only through reshapes stay fp32: the features
    // a caller reads keep full precision
    let mut outputs: HashSet<&str> = g.output.iter().map(|o| o.name.as_str()).collect();
    for n in g.node.iter().rev() {
        if matches!(
            n.op_type.as_str(),
            "Reshape" | "Flatten" | "Squeeze" | "Transpose" | "Identity"
        ) && n.output.len() == 1
            && outputs.contains(n.output[0].as_str())
        {
            outputs.insert(n.input[0].as_str());
        }
    }
    let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in g.node.iter().enumerate() {
        for x in n.input.iter().filter(|x| !x.is_empty()) {
            consumers.entry(x.as_str()).or_default().push(i);
        }
        for y in &n.output {
            producer.insert(y.as_str(), i);
        }
    }
    let float_init = |x: &str| {
        inits
            .get(x)
            .is_some_and(|t| t.data_type == data_type::FLOAT)
    };
    let mut p = Plan::default();
    let mut quantised: HashSet<String> = HashSet::new();
    // an activation to quantise: a pass-through op's output takes its input's parameters
    let mut want = |x: &str, p: &mut Plan, quantised: &mut HashSet<String>| {
        if quantised.contains(x) || inits.contains_key(x) {
            return;
        }
        let src = producer
            .get(x)
            .map(|&i| &g.node[i])
            .filter(|n| matches!(n.op_type.as_str(), "MaxPool" | "Flatten" | "Reshape"))
            .filter(|n| n.output.len() == 1 && quantised.contains(&n.input[0]))
            .map_or(Source::Calibrated, |n| Source::SameAs(n.input[0].clone()));
        quantised.insert(x.to_string());
        p.acts.push((x.to_string(), src));
    };
    // an op's output: folds a sole following Relu unless something reads the raw value
    let out = |i: usize,
               p: &mut Plan,
               quantised: &mut HashSet<String>,
               want: &mut dyn FnMut(&str, &mut Plan, &mut HashSet<String>)| {
        let y = g.node[i].output[0].as_str();
        if outputs.contains(y) {
            return;
        }
        let next = consumers.get(y).map(Vec::as_slice).unwrap_or_default();
        if let [j] = next
            && g.node[*j].op_type == "Relu"
            && !outputs.contains(g.node[*j].output[0].as_str())
        {
            p.folded.insert(*j, i);
            want(&g.node[*j].output[0], p, quantised);
            return;
        }
        want(y, p, quantised);
    };
    for (i, n) in g.node.iter().enumerate() {
        let weight_axis = match n.op_type.as_str() {
            "Conv" => Some(0),
            "Gemm"
                if attr_i(n, "transA", 0) == 0
                    && attr_f(n, "alpha", 1.0) == 1.0
                    && attr_f(n, "beta", 1.0) == 1.0 =>
            {
                Some(if attr_i(n, "transB", 0) == 1 { 0 } else { 1 })
            }
            _ => None,
        };
        match weight_axis {
            Some(axis)
                if n.input.len() >= 2 && float_init(&n.input[1]) && !float_init(&n.input[0]) =>
            {
                let bias_ok = n.input.get(2).is_none_or(|b| b.is_empty() || float_init(b));
                if !bias_ok {
                    continue;
                }
                want(&n.input[0], &mut p, &mut quantised);
                p.weights.push((i, axis, n.input[1].clone(), false));
                out(i, &mut p, &mut quantised, &mut want);
            }
            // x @ Transpose(W): a linear layer on a sequence (the bias Add follows in fp32);
            // weights pre-transposed, output quantised — ONNX Runtime's `QLinearMatMul`
            None if n.op_type == "MatMul" && n.input.len() == 2 && !float_init(&n.input[0]) => {
                let w = producer
                    .get(n.input[1].as_str())
                    .map(|&t| &g.node[t])
                    .filter(|t| t.op_type == "Transpose" && float_init(&t.input[0]))
                    .filter(|t| {
                        inits[t.input[0].as_str()].dims.len() == 2
                            && t.attribute
                                .iter()
                                .any(|a| a.name == "perm" && a.ints == [1, 0])
                    });
                if let Some(t) = w {
                    want(&n.input[0], &mut p, &mut quantised);
                    p.weights.push((i, 1, t.input[0].clone(), true));
                    out(i, &mut p, &mut quantised, &mut want);
                }
            }
            // ops ONNX Runtime has integer kernels for (`QLinearAdd`, `QLinearMul`,
            // `QLinearSigmoid`, `QLinearGlobalAveragePool`): quantised when every input is
            _ if INTEGER_ELEMENTWISE.contains(&n.op_type.as_str())
                && n.output.len() == 1
                && !outputs.contains(n.output[0].as_str())
                && !n.input.is_empty()
                && n.input.iter().all(|x| quantised.contains(x)) =>
            {
                out(i, &mut p, &mut quantised, &mut want);
            }
            _ => {}
        }
    }
    p
}

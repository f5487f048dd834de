//! The QDQ graph: int8 / int32 initializers behind `DequantizeLinear`, a `QuantizeLinear` →
//! `DequantizeLinear` pair after each quantised activation.

use std::collections::{HashMap, HashSet};

use graft_core::{Error, Result};

use super::plan::{Source, plan};
use super::{Ranges, WHAT, WeightRange, graph_of};
use crate::export::Exported;
use crate::proto::{
    AttributeProto, AttributeType, NodeProto, StringStringEntryProto, TensorProto, data_type,
};

/// uint8 affine parameters for a range: the range is widened to hold 0 (so zero — padding,
/// ReLU's floor — is exact), scale = width / 255.
fn uint8_params(lo: f32, hi: f32) -> (f32, u8) {
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let scale = (hi - lo) / 255.0;
    if scale.is_nan() || scale <= 0.0 || !scale.is_finite() {
        return (1.0, 0);
    }
    let zp = (-lo / scale).round_ties_even().clamp(0.0, 255.0) as u8;
    (scale, zp)
}

fn tensor(name: String, elem: i32, dims: Vec<i64>, raw: Vec<u8>) -> TensorProto {
    TensorProto {
        dims,
        data_type: elem,
        name,
        raw_data: raw,
    }
}

fn f32s(t: &TensorProto) -> Result<Vec<f32>> {
    let n: i64 = t.dims.iter().product();
    if t.data_type != data_type::FLOAT || t.raw_data.len() != 4 * n.max(0) as usize {
        return Err(Error::invalid(
            WHAT,
            format!("initializer {}: expected {n} raw fp32 values", t.name),
        ));
    }
    Ok(t.raw_data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Per-channel symmetric int8 weights along `axis`, each channel's largest magnitude at
/// `±range.max()`: (values, scales).
fn int8_per_channel(
    w: &[f32],
    dims: &[i64],
    axis: usize,
    range: WeightRange,
) -> (Vec<i8>, Vec<f32>) {
    let top = range.max();
    let c = dims[axis] as usize;
    let inner: usize = dims[axis + 1..].iter().product::<i64>() as usize;
    let channel = |i: usize| (i / inner) % c;
    let mut amax = vec![0f32; c];
    for (i, &v) in w.iter().enumerate() {
        let k = channel(i);
        amax[k] = amax[k].max(v.abs());
    }
    let scales: Vec<f32> = amax
        .iter()
        .map(|&a| if a > 0.0 { a / top } else { 1.0 })
        .collect();
    let q = w
        .iter()
        .enumerate()
        .map(|(i, &v)| (v / scales[channel(i)]).round_ties_even().clamp(-top, top) as i8)
        .collect();
    (q, scales)
}

fn node(
    op: &str,
    name: String,
    input: Vec<String>,
    output: Vec<String>,
    axis: Option<i64>,
) -> NodeProto {
    NodeProto {
        input,
        output,
        name,
        op_type: op.to_string(),
        attribute: axis
            .map(|a| AttributeProto {
                name: "axis".into(),
                i: a,
                r#type: AttributeType::Int as i32,
                ..Default::default()
            })
            .into_iter()
            .collect(),
        domain: String::new(),
    }
}

/// The QDQ int8 form of `e` from calibrated `ranges` (the module doc says what is quantised and
/// how). Same input and output as `e`; an error names a tensor the ranges lack (calibrated on a
/// different graph) or a weight that cannot be read. `weights` is the integer range of the
/// weights: [`WeightRange::for_host`] for the CPU this process runs on.
pub fn quantize(e: &Exported, ranges: &Ranges, weights: WeightRange) -> Result<Exported> {
    let g = graph_of(e)?;
    let p = plan(g);
    if p.weights.is_empty() {
        return Err(Error::invalid(
            WHAT,
            format!(
                "{}: no Conv or Gemm with constant weights to quantise",
                g.name
            ),
        ));
    }
    // activation parameters
    let mut params: HashMap<String, (f32, u8)> = HashMap::new();
    for (name, src) in &p.acts {
        let qp = match src {
            Source::Calibrated => {
                let &(lo, hi) = ranges.by_tensor.get(name).ok_or_else(|| {
                    Error::invalid(
                        WHAT,
                        format!(
                            "no calibrated range for tensor {name}: the ranges come from a different graph (calibrate this model as exported)"
                        ),
                    )
                })?;
                if !lo.is_finite() || !hi.is_finite() || lo > hi {
                    return Err(Error::invalid(
                        WHAT,
                        format!("tensor {name}: calibrated range [{lo}, {hi}] is not a range"),
                    ));
                }
                uint8_params(lo, hi)
            }
            Source::SameAs(other) => params[other],
        };
        params.insert(name.clone(), qp);
    }
    let inits: HashMap<&str, &TensorProto> =
        g.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut new_inits: Vec<TensorProto> = Vec::new();
    let mut head: Vec<NodeProto> = Vec::new();
    let mut nodes: Vec<NodeProto> = g.node.clone();
    // weights and biases: int8 / int32 initializers behind DequantizeLinear
    for (i, axis, wname, transposed) in &p.weights {
        let (i, k) = (*i, 1);
        let n = &g.node[i];
        let w = inits[wname.as_str()];
        let (mut data, mut dims) = (f32s(w)?, w.dims.clone());
        if *transposed {
            let (r, c) = (dims[0] as usize, dims[1] as usize);
            data = (0..r * c).map(|j| data[(j % r) * c + j / r]).collect();
            dims = vec![dims[1], dims[0]];
        }
        let (q, scales) = int8_per_channel(&data, &dims, *axis as usize, weights);
        let base = format!("{}__n{i}", w.name);
        let c = scales.len() as i64;
        new_inits.push(tensor(
            format!("{base}_q"),
            data_type::INT8,
            dims,
            q.iter().map(|&v| v as u8).collect(),
        ));
        new_inits.push(tensor(
            format!("{base}_scale"),
            data_type::FLOAT,
            vec![c],
            scales.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ));
        new_inits.push(tensor(
            format!("{base}_zp"),
            data_type::INT8,
            vec![c],
            vec![0; c as usize],
        ));
        head.push(node(
            "DequantizeLinear",
            format!("{base}_dq"),
            vec![
                format!("{base}_q"),
                format!("{base}_scale"),
                format!("{base}_zp"),
            ],
            vec![format!("{base}_dq")],
            Some(*axis),
        ));
        nodes[i].input[k] = format!("{base}_dq");
        if let Some(b) = n.input.get(2).filter(|b| !b.is_empty()) {
            let bt = inits[b.as_str()];
            let bv = f32s(bt)?;
            let (sx, _) = params[n.input[0].as_str()];
            if bv.len() != scales.len() {
                return Err(Error::invalid(
                    WHAT,
                    format!(
                        "{}: bias {} has {} values for {c} channels",
                        n.name,
                        b,
                        bv.len()
                    ),
                ));
            }
            let bs: Vec<f32> = scales.iter().map(|s| s * sx).collect();
            let bq: Vec<i32> = bv
                .iter()
                .zip(&bs)
                .map(|(v, s)| {
                    (f64::from(*v) / f64::from(*s))
                        .round()
                        .clamp(i32::MIN as f64, i32::MAX as f64) as i32
                })
                .collect();
            let bb = format!("{b}__n{i}");
            new_inits.push(tensor(
                format!("{bb}_q"),
                data_type::INT32,
                vec![c],
                bq.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ));
            new_inits.push(tensor(
                format!("{bb}_scale"),
                data_type::FLOAT,
                vec![c],
                bs.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ));
            new_inits.push(tensor(
                format!("{bb}_zp"),
                data_type::INT32,
                vec![c],
                vec![0; 4 * c as usize],
            ));
            head.push(node(
                "DequantizeLinear",
                format!("{bb}_dq"),
                vec![format!("{bb}_q"), format!("{bb}_scale"), format!("{bb}_zp")],
                vec![format!("{bb}_dq")],
                Some(0),
            ));
            nodes[i].input[2] = format!("{bb}_dq");
        }
    }
    // a folded Relu's producer writes the Relu's output name
    for (&relu, &prod) in &p.folded {
        nodes[prod].output[0] = g.node[relu].output[0].clone();
    }
    // activations: Q → DQ right after the producer (or first, for a graph input); every reader
    // takes the dequantised value
    let mut after: HashMap<usize, Vec<NodeProto>> = HashMap::new();
    let producer: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| !p.folded.contains_key(i))
        .flat_map(|(i, n)| n.output.iter().map(move |y| (y.as_str(), i)))
        .collect();
    let mut qdq_for: HashMap<String, String> = HashMap::new();
    for (name, _) in &p.acts {
        let (s, zp) = params[name];
        new_inits.push(tensor(
            format!("{name}__scale"),
            data_type::FLOAT,
            vec![],
            s.to_le_bytes().to_vec(),
        ));
        new_inits.push(tensor(
            format!("{name}__zp"),
            data_type::UINT8,
            vec![],
            vec![zp],
        ));
        let sz = || vec![format!("{name}__scale"), format!("{name}__zp")];
        let q = node(
            "QuantizeLinear",
            format!("{name}__quantize"),
            [vec![name.clone()], sz()].concat(),
            vec![format!("{name}__q")],
            None,
        );
        let dq = node(
            "DequantizeLinear",
            format!("{name}__dequantize"),
            [vec![format!("{name}__q")], sz()].concat(),
            vec![format!("{name}__dq")],
            None,
        );
        match producer.get(name.as_str()) {
            Some(&i) => after.entry(i).or_default().extend([q, dq]),
            None => head.extend([q, dq]),
        }
        qdq_for.insert(name.clone(), format!("{name}__dq"));
    }
    let mut out_nodes = head;
    for (i, mut n) in nodes.into_iter().enumerate() {
        if p.folded.contains_key(&i) {
            continue;
        }
        for x in n.input.iter_mut() {
            if let Some(d) = qdq_for.get(x) {
                *x = d.clone();
            }
        }
        out_nodes.push(n);
        out_nodes.extend(after.remove(&i).unwrap_or_default());
    }
    // a Transpose whose weight now comes pre-transposed reads nothing anyone uses
    let read: HashSet<String> = out_nodes
        .iter()
        .flat_map(|n| n.input.iter().cloned())
        .chain(g.output.iter().map(|o| o.name.clone()))
        .collect();
    out_nodes.retain(|n| n.op_type != "Transpose" || n.output.iter().any(|y| read.contains(y)));
    let mut g2 = g.clone();
    g2.node = out_nodes;
    let used: HashSet<&str> = g2
        .node
        .iter()
        .flat_map(|n| n.input.iter().map(String::as_str))
        .collect();
    let mut initializer: Vec<TensorProto> = g
        .initializer
        .iter()
        .filter(|t| used.contains(t.name.as_str()))
        .cloned()
        .collect();
    initializer.extend(new_inits);
    g2.initializer = initializer;
    let mut proto = e.proto.clone();
    proto.doc_string = format!(
        "{} — int8 (QDQ: per-channel int8 weights, uint8 activations calibrated on {} samples)",
        proto.doc_string, ranges.samples
    );
    proto.metadata_props.push(StringStringEntryProto {
        key: "graft.quantization".into(),
        value: format!("int8-qdq; calibration {:016x}", ranges.fingerprint()),
    });
    proto.graph = Some(g2);
    Ok(Exported {
        proto,
        input: e.input.clone(),
        output: e.output.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_span_the_chosen_range_per_channel() {
        // two output channels (axis 0) of three values each
        let w = [0.5, -1.0, 0.25, 3.0, 1.5, -0.75];
        for (range, top) in [(WeightRange::Full, 127), (WeightRange::Reduced, 64)] {
            let (q, scales) = int8_per_channel(&w, &[2, 3], 0, range);
            assert_eq!(q[1], -top, "{range:?}");
            assert_eq!(q[3], top, "{range:?}");
            assert!(q.iter().all(|&v| (v as i32).abs() <= top as i32));
            assert_eq!(scales, vec![1.0 / top as f32, 3.0 / top as f32]);
            for (i, &v) in w.iter().enumerate() {
                let back = q[i] as f32 * scales[i / 3];
                assert!(
                    (back - v).abs() <= scales[i / 3] / 2.0 + 1e-6,
                    "{range:?} {i}"
                );
            }
        }
    }
}

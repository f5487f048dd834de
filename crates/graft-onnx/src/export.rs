//! Exporting a zoo model: rebuild it on [`Trace`], run the forward once on a traced input, write
//! what was recorded as an ONNX model.

use std::collections::HashMap;
use std::path::Path;

use graft_backend::{Backend, Ctx, DType};
use graft_core::{Error, Result};
use graft_zoo::Model;
use prost::Message;

use crate::proto::{ModelProto, OperatorSetIdProto, StringStringEntryProto};
use crate::trace::{OPSET, Trace};

/// ONNX IR version written (IR 8 is the one opset 18 models carry).
pub const IR_VERSION: i64 = 8;

/// What the exported graph returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Output {
    /// The classifier's logits (`Model::forward`).
    Logits,
    /// The pooled features the classifier sees (`Model::forward_pooled`): what feature
    /// extraction caches.
    #[default]
    Pooled,
    /// The trunk's last feature map or token sequence (`Model::forward_features`).
    Features,
}

impl Output {
    fn name(self) -> &'static str {
        match self {
            Output::Logits => "logits",
            Output::Pooled => "pooled",
            Output::Features => "features",
        }
    }
}

/// An exported model: the ONNX proto, its input and output names and shapes.
#[derive(Debug, Clone)]
pub struct Exported {
    pub proto: ModelProto,
    pub input: (String, Vec<usize>),
    pub output: (String, Vec<usize>),
}

impl Exported {
    /// The serialized model (the bytes of a `.onnx` file).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.proto.encode_to_vec()
    }
    /// Writes the `.onnx` file (graft's atomic write: a temporary file beside it, synced, renamed
    /// into place — an existing file is replaced whole or not at all), making its directory.
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(d) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
        }
        graft_backend::safetensors_io::write_atomic(path, &self.to_bytes())
    }
}

/// Exports `model`'s eval-mode function at one input shape (`[N, C, H, W]`, f32): `what` picks
/// logits, pooled features or the trunk's features. An inference copy
/// (`Model::for_inference`) exports with its BatchNorms folded; a bf16 model exports in bf16
/// (ONNX Runtime's CPU provider runs f32 only).
pub fn export<B: Backend>(
    model: &Model<B>,
    input_shape: &[usize],
    what: Output,
) -> Result<Exported> {
    use graft_core::limits::{MAX_IN_CHANS, MAX_INPUT_SIDE};
    let ok = match input_shape {
        &[n, c, h, w] => {
            n > 0
                && n <= 1 << 20
                && (1..=MAX_IN_CHANS).contains(&c)
                && (1..=MAX_INPUT_SIDE).contains(&h)
                && (1..=MAX_INPUT_SIDE).contains(&w)
        }
        _ => false,
    };
    if !ok {
        return Err(Error::invalid(
            "onnx export",
            format!(
                "input shape {input_shape:?}: [N, C, H, W] with N in 1..=1048576, C in 1..={MAX_IN_CHANS}, H and W in 1..={MAX_INPUT_SIDE}"
            ),
        ));
    }
    let trace = Trace::new();
    let traced = model.to_backend(&trace)?;
    let x = trace.input("input", input_shape, DType::F32);
    let ctx = Ctx::eval();
    let y = match what {
        Output::Logits => traced.forward(&x, &ctx)?,
        Output::Pooled => traced.forward_pooled(&x, &ctx)?,
        Output::Features => traced.forward_features(&x, &ctx)?,
    };
    let mut rename: HashMap<String, String> = traced
        .params()
        .iter()
        .map(|(name, e)| (e.tensor.name.to_string(), name.to_string()))
        .collect();
    rename.insert(y.name.to_string(), what.name().to_string());
    let out_shape = trace.shape(&y);
    let graph = trace.graph().finish(
        model.name(),
        &[(y.name.to_string(), trace.dtype(&y), out_shape.clone())],
        &rename,
    )?;
    let proto = ModelProto {
        ir_version: IR_VERSION,
        producer_name: "graft".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: format!(
            "{} ({}), {} of a {:?} input",
            model.name(),
            model.architecture(),
            what.name(),
            input_shape
        ),
        graph: Some(graph),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        metadata_props: vec![StringStringEntryProto {
            key: "graft.output".into(),
            value: what.name().into(),
        }],
    };
    Ok(Exported {
        proto,
        input: ("input".into(), input_shape.to_vec()),
        output: (what.name().into(), out_shape),
    })
}

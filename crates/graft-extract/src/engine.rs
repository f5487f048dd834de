//! What runs the trunk during an extraction: the model's own backend, or the model exported to
//! ONNX (graft-onnx) and run by ONNX Runtime (graft-ort) — the same function, ONNX Runtime's
//! CPU kernels (its NCHWc convolutions measured fastest of every form here on ResNet-50 at 224,
//! docs/speed.md).

use std::collections::HashMap;

use graft_backend::{Backend, DType, InputBatch, TensorData};
use graft_core::{Error, Result};
use graft_ort::{OnnxRuntime, OrtSession, SessionOptions};
use graft_zoo::Model;

use crate::FeatureSpec;

/// The engine of a trunk pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    /// The model's backend (libtorch or ndarray) on its inference copy.
    #[default]
    Backend,
    /// The inference copy traced to ONNX and run by ONNX Runtime's CPU provider with `threads`
    /// intra-op threads (0: ONNX Runtime's default). The library is the one the process loaded
    /// (`graft_ort::OnnxRuntime::load`), else found at run time (`ORT_DYLIB_PATH`, or the
    /// `onnxruntime` wheel of `$VIRTUAL_ENV`); fp32 image models,
    /// pooled features and logits (the classifier runs on the backend, from the pooled
    /// features).
    OnnxRuntime { threads: usize },
}

impl Engine {
    /// A label for cache keys and reports (empty for the backend: older caches stay valid).
    pub(crate) fn key(&self) -> &'static str {
        match self {
            Engine::Backend => "",
            Engine::OnnxRuntime { .. } => "+onnxruntime",
        }
    }
}

/// One ONNX Runtime session per input shape (the traced graph's shapes are fixed: a loader's
/// last, shorter batch gets its own).
pub(crate) struct OrtTrunk {
    rt: OnnxRuntime,
    threads: usize,
    sessions: HashMap<Vec<usize>, OrtSession>,
}

impl OrtTrunk {
    /// Checks that `model` and `specs` can run on ONNX Runtime and loads the library.
    pub(crate) fn new<B: Backend>(
        model: &Model<B>,
        specs: &[FeatureSpec],
        threads: usize,
    ) -> Result<Self> {
        let refuse = |why: String| Error::invalid("extract (ONNX Runtime engine)", why);
        if model.dtype() != DType::F32 {
            return Err(refuse(format!(
                "{} is {}: ONNX Runtime's CPU provider runs fp32 graphs (use the backend engine for bf16)",
                model.name(),
                model.dtype()
            )));
        }
        if let Some(s) = specs.iter().find(|s| matches!(s, FeatureSpec::Stage(_))) {
            return Err(refuse(format!(
                "{s:?}: stage features run on the backend engine; ONNX Runtime computes pooled features and logits"
            )));
        }
        Ok(Self {
            rt: OnnxRuntime::get_or_load(None)?,
            threads,
            sessions: HashMap::new(),
        })
    }

    /// The pooled features of one batch of images.
    pub(crate) fn pooled<B: Backend>(
        &mut self,
        model: &Model<B>,
        inputs: &InputBatch,
    ) -> Result<TensorData> {
        let InputBatch::Images(x) = inputs else {
            return Err(Error::invalid(
                "extract (ONNX Runtime engine)",
                format!(
                    "{}: the ONNX Runtime engine runs image models",
                    model.name()
                ),
            ));
        };
        let x = x.cast(DType::F32);
        let shape = x.shape().to_vec();
        if !self.sessions.contains_key(&shape) {
            let e = graft_onnx::export(model, &shape, graft_onnx::Output::Pooled)?;
            let opts = SessionOptions {
                threads: self.threads,
            };
            let s = OrtSession::new(&self.rt, &e.to_bytes(), &opts)?;
            self.sessions.insert(shape.clone(), s);
        }
        self.sessions[&shape].run(&x)
    }
}

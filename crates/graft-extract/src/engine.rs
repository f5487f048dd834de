//! What runs the trunk during an extraction: the model's own backend, or the model exported to
//! ONNX (graft-onnx) and run by ONNX Runtime (graft-ort) — the same function, ONNX Runtime's
//! CPU kernels (its NCHWc convolutions measured fastest of every form here on ResNet-50 at 224,
//! docs/speed.md) — or that graph quantised to int8 with ranges calibrated on target images
//! (graft-onnx's `quant`; 1.4–3.3× the fastest fp32 form here, docs/speed.md).

use std::collections::HashMap;
use std::sync::Arc;

use graft_backend::{Backend, DType, InputBatch, TensorData};
use graft_core::{Error, Result};
use graft_data::Loader;
use graft_onnx::Exported;
use graft_onnx::quant::{self, Ranges, WeightRange};
use graft_ort::{OnnxRuntime, OrtSession, SessionOptions};
use graft_zoo::{InferenceOptions, Model};

use crate::FeatureSpec;

/// The engine of a trunk pass.
#[derive(Debug, Clone, PartialEq, Default)]
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
    /// As [`Engine::OnnxRuntime`], on the int8 form of the graph (`graft_onnx::quant`:
    /// per-channel int8 weights, uint8 activations) with the ranges of `calibration` — the same
    /// quantisation for every dataset extracted with it, so train and test features agree.
    OnnxRuntimeInt8 {
        threads: usize,
        calibration: Arc<Int8Calibration>,
    },
}

impl Engine {
    /// ONNX Runtime's intra-op threads (0 for the backend engine: its own setting).
    pub fn threads(&self) -> usize {
        match self {
            Engine::Backend => 0,
            Engine::OnnxRuntime { threads } | Engine::OnnxRuntimeInt8 { threads, .. } => *threads,
        }
    }
    /// A label for cache keys and reports (empty for the backend: older caches stay valid).
    pub(crate) fn key(&self) -> String {
        match self {
            Engine::Backend => String::new(),
            Engine::OnnxRuntime { .. } => "+onnxruntime".into(),
            Engine::OnnxRuntimeInt8 { calibration, .. } => {
                // 7-bit weights (x86 without VNNI) give other features than 8-bit ones
                let bits = match WeightRange::for_host() {
                    WeightRange::Full => "",
                    WeightRange::Reduced => "-w7",
                };
                format!(
                    "+onnxruntime-int8{bits}:{:016x}",
                    calibration.ranges.fingerprint()
                )
            }
        }
    }
}

/// Images per calibration run.
const CALIBRATION_CHUNK: usize = 16;

/// The activation ranges of a model's fp32 inference copy over calibration images: what static
/// int8 quantisation needs ([`calibrate_int8`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Int8Calibration {
    /// The model calibrated (its name) and a hash of its weights: a calibration serves that
    /// model only.
    pub model: String,
    pub(crate) weights: u64,
    /// Each quantised activation's (min, max) seen.
    pub ranges: Ranges,
}

/// Calibrates `model` for int8 extraction: runs its fp32 inference copy (exported to ONNX, on
/// ONNX Runtime with `threads` threads) over the first `images` images of `loader` (all of them
/// if fewer) and records the range of every activation the int8 graph quantises. Calibrate on
/// data like the data to extract — a few hundred images of the target task is the usual size
/// (more only widens the ranges with rarer outliers).
pub fn calibrate_int8<B: Backend>(
    model: &Model<B>,
    loader: &Loader,
    images: usize,
    threads: usize,
) -> Result<Int8Calibration> {
    let what = "int8 calibration";
    if images == 0 {
        return Err(Error::invalid(
            what,
            "0 calibration images: ask for at least one",
        ));
    }
    let weights = crate::model_hash(model)?;
    let copy;
    let m = match model.inference() {
        Some(_) => model,
        None => {
            copy = model.for_inference(&InferenceOptions::default())?;
            &copy
        }
    };
    check_model(m, &[FeatureSpec::Pooled])?;
    let rt = OnnxRuntime::get_or_load(None)?;
    let mut runs: HashMap<Vec<usize>, CalibrationRun> = HashMap::new();
    let mut ranges = Ranges::default();
    for batch in loader.epoch(0) {
        if ranges.samples >= images {
            break;
        }
        let batch = batch?;
        m.check_batch(&batch.inputs)?;
        let x = images_of(m, &batch.inputs)?.cast(DType::F32);
        let x = x.as_f32(what)?;
        let take = (images - ranges.samples).min(x.shape()[0]);
        let x = x.slice_axis(ndarray::Axis(0), ndarray::Slice::from(0..take));
        // the calibration graph returns every quantised activation: a few images at a time
        // bound its memory (ResNet-50 at 224² holds ~40 MB of them per image)
        for chunk in x.axis_chunks_iter(ndarray::Axis(0), CALIBRATION_CHUNK) {
            let shape = chunk.shape().to_vec();
            let chunk = TensorData::f32(&shape, chunk.iter().copied().collect())?;
            if !runs.contains_key(&shape) {
                let e = graft_onnx::export(m, &shape, graft_onnx::Output::Pooled)?;
                runs.insert(shape.clone(), CalibrationRun::new(&rt, &e, threads)?);
            }
            runs[&shape].observe(&chunk, &mut ranges)?;
        }
    }
    if ranges.samples == 0 {
        return Err(Error::invalid(what, "the loader yielded no images"));
    }
    Ok(Int8Calibration {
        model: model.name().to_string(),
        weights,
        ranges,
    })
}

/// ONNX Runtime running an exported fp32 graph with every activation that int8 quantisation
/// will quantise (`quant::calibration_targets`) as an extra output: each batch run through it
/// widens a [`Ranges`]. What [`calibrate_int8`] runs per batch shape; for a graph of one's own
/// (a benchmark, a deployment script) it is the whole calibration step.
pub struct CalibrationRun {
    session: OrtSession,
    targets: Vec<String>,
}

impl std::fmt::Debug for CalibrationRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CalibrationRun")
            .field("targets", &self.targets.len())
            .finish_non_exhaustive()
    }
}

impl CalibrationRun {
    /// The calibration form of `graph`, loaded into ONNX Runtime with `threads` intra-op
    /// threads.
    pub fn new(rt: &OnnxRuntime, graph: &Exported, threads: usize) -> Result<Self> {
        let targets = quant::calibration_targets(graph)?;
        let bytes = quant::with_outputs(graph, &targets)?;
        let session = OrtSession::new(rt, &bytes, &SessionOptions { threads })?;
        Ok(Self { session, targets })
    }

    /// The tensors whose ranges a run observes, in graph order.
    pub fn targets(&self) -> &[String] {
        &self.targets
    }

    /// Runs `x` (the graph's input shape, f32) and widens `ranges` by every target tensor's
    /// values; counts its first dimension into `ranges.samples`. A target ONNX Runtime did not
    /// return is an error, not a silently missing range.
    pub fn observe(&self, x: &TensorData, ranges: &mut Ranges) -> Result<()> {
        let mut seen = 0;
        self.session.run_each(x, |name, _, values| {
            if self.targets.iter().any(|t| t == name) {
                seen += 1;
                ranges.observe(name, values)?;
            }
            Ok(())
        })?;
        if seen != self.targets.len() {
            return Err(Error::invalid(
                "int8 calibration",
                format!(
                    "ONNX Runtime returned {seen} of the graph's {} calibrated tensors",
                    self.targets.len()
                ),
            ));
        }
        ranges.samples += x.shape().first().copied().unwrap_or(1);
        Ok(())
    }
}

fn images_of<'a, B: Backend>(model: &Model<B>, inputs: &'a InputBatch) -> Result<&'a TensorData> {
    match inputs {
        InputBatch::Images(x) => Ok(x),
        _ => Err(Error::invalid(
            "extract (ONNX Runtime engine)",
            format!(
                "{}: the ONNX Runtime engine runs image models",
                model.name()
            ),
        )),
    }
}

fn check_model<B: Backend>(model: &Model<B>, specs: &[FeatureSpec]) -> Result<()> {
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
    Ok(())
}

/// One ONNX Runtime session per input shape (the traced graph's shapes are fixed: a loader's
/// last, shorter batch gets its own).
pub(crate) struct OrtTrunk {
    rt: OnnxRuntime,
    threads: usize,
    int8: Option<Arc<Int8Calibration>>,
    sessions: HashMap<Vec<usize>, OrtSession>,
}

impl OrtTrunk {
    /// Checks that `model` (the original: what a calibration was made of) and `specs` can run
    /// on ONNX Runtime, and loads the library.
    pub(crate) fn new<B: Backend>(
        model: &Model<B>,
        weights: u64,
        specs: &[FeatureSpec],
        engine: &Engine,
    ) -> Result<Option<Self>> {
        let (threads, int8) = match engine {
            Engine::Backend => return Ok(None),
            Engine::OnnxRuntime { threads } => (*threads, None),
            Engine::OnnxRuntimeInt8 {
                threads,
                calibration,
            } => {
                if calibration.weights != weights || calibration.model != model.name() {
                    return Err(Error::invalid(
                        "extract (ONNX Runtime int8 engine)",
                        format!(
                            "the calibration was made of {} with other weights than this {}: calibrate the model being extracted (calibrate_int8)",
                            calibration.model,
                            model.name()
                        ),
                    ));
                }
                (*threads, Some(calibration.clone()))
            }
        };
        check_model(model, specs)?;
        Ok(Some(Self {
            rt: OnnxRuntime::get_or_load(None)?,
            threads,
            int8,
            sessions: HashMap::new(),
        }))
    }

    /// The pooled features of one batch of images.
    pub(crate) fn pooled<B: Backend>(
        &mut self,
        model: &Model<B>,
        inputs: &InputBatch,
    ) -> Result<TensorData> {
        let x = images_of(model, inputs)?.cast(DType::F32);
        let shape = x.shape().to_vec();
        if !self.sessions.contains_key(&shape) {
            let mut e = graft_onnx::export(model, &shape, graft_onnx::Output::Pooled)?;
            if let Some(c) = &self.int8 {
                e = quant::quantize(&e, &c.ranges, WeightRange::for_host())?;
            }
            let opts = SessionOptions {
                threads: self.threads,
            };
            let s = OrtSession::new(&self.rt, &e.to_bytes(), &opts)?;
            self.sessions.insert(shape.clone(), s);
        }
        self.sessions[&shape].run(&x)
    }
}

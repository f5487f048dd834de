//! graft-extract: feature extraction — run the frozen trunk once over a dataset (eval mode, no
//! parameter changes), cache the features on disk, and fit heads on the cached features in
//! seconds.
//!
//! Owns: the feature cache (keyed by the model's name, a hash of its current weights and buffers,
//! the loader's transform, the feature spec and the dataset's fingerprint — a second identical
//! run does no trunk forward at all; each file carries a SHA-256 of its content, and one that no
//! longer matches is computed again); running the trunk pass on an inference copy of the model
//! (BatchNorm folded, channels-last where it pays, opt-in bf16 — graft-zoo builds it), on the
//! model's backend or, with [`Engine::OnnxRuntime`], traced to ONNX and run by ONNX Runtime (in
//! int8 with [`Engine::OnnxRuntimeInt8`], after [`calibrate_int8`] on the target's images); the heads
//! on host features (multinomial logistic regression through linfa, prototype / nearest class
//! mean by cosine, kNN); a Linear / MLP head trained on cached features with graft-train's
//! Trainer, in place on its trunk; the per-stage linear probe and the freeze depth it recommends;
//! exporting trunk + head as one user model; ranking candidate models before any training
//! ([`rank`]: LogME on the cached features, LEEP and NCE from a source head, kNN and linear
//! probes); on text ([`text`]): a zoo text encoder with its
//! tokenizer, sentence embeddings in length-sorted batches, the same cache, zero-shot
//! classification by cosine to embedded class descriptions; with CLIP ([`clip`]): image and text
//! embeddings and zero-shot image classification from class names and prompt templates.
//!
//! Must not know: concrete backends, the loop's internals (it hands the Trainer a plan), TOML.

pub mod clip;
mod engine;
mod episodes;
mod heads;
mod probe;
mod rank;
pub mod text;

pub use clip::{ClipEncoder, imagenet_templates, prompts};
pub use engine::{CalibrationRun, Engine, Int8Calibration, calibrate_int8};
pub use episodes::{EpisodeConfig, EpisodeHead, EpisodeReport, evaluate_episodes};
pub use heads::{
    HeadTraining, KnnHead, LogisticConfig, LogisticHead, PrototypeHead, accuracy, train_head,
};
pub use probe::{ProbeConfig, ProbeReport, ProbeRow, probe};
pub use rank::{
    Candidate, RankConfig, RankReport, RankRow, RankTimes, leep, logme, logme_regression, nce, rank,
};
pub use text::{TextData, TextEncoder, ZeroShot, embed_with, extract_texts};

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use graft_backend::init::stable_hash;
use graft_backend::safetensors_io::{load, save};
use graft_backend::{Backend, Ctx, DType, TensorData};
use graft_core::{Error, Result};
use graft_data::{FeatureDataset, Loader};
use graft_zoo::{InferenceOptions, Model};

/// Which features to take.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FeatureSpec {
    /// The pooled pre-logits features (`forward_head(pre_logits = true)`): what the model's
    /// classifier sees, so a head fitted on them exports onto the trunk.
    Pooled,
    /// A trunk stage's output, global-average-pooled to `[N, channels]`.
    Stage(String),
    /// The model's output (`forward`): its class scores — or, for a CLIP image tower, whose
    /// head projects into the image-text space, its image embedding.
    Logits,
}

impl std::fmt::Display for FeatureSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FeatureSpec::Pooled => f.write_str("pooled"),
            FeatureSpec::Stage(s) => f.write_str(s),
            FeatureSpec::Logits => f.write_str("logits"),
        }
    }
}

/// Features of a dataset: `[n, dim]` row-major, with labels and class names.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    pub n: usize,
    pub dim: usize,
    pub data: Vec<f32>,
    pub labels: Vec<usize>,
    /// The dataset's class names (label `i` is `classes[i]`).
    pub classes: Vec<String>,
    /// What the features are.
    pub spec: FeatureSpec,
}

impl Features {
    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
    /// The features as an in-memory dataset of feature rows (a [`Loader`] over it yields
    /// `[N, dim]` feature batches, on which the Trainer runs only the classifier).
    pub fn to_dataset(&self) -> Result<FeatureDataset> {
        FeatureDataset::new(
            self.dim,
            self.data.clone(),
            self.labels.clone(),
            self.classes.clone(),
        )
    }
}

/// What an extraction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractReport {
    /// The cache files, one per spec.
    pub paths: Vec<PathBuf>,
    /// True when every spec came from the cache.
    pub cached: bool,
    /// Trunk forwards run (0 on a cache hit).
    pub forwards: usize,
    /// Cache files found but not used, and why (a checksum mismatch, an unreadable file): the
    /// features were computed again and the file replaced.
    pub recomputed: Vec<String>,
}

pub(crate) fn model_hash<B: Backend>(model: &Model<B>) -> Result<u64> {
    let mut b = Vec::new();
    for (name, t) in model.params().to_data()? {
        b.extend(name.as_bytes());
        b.extend(
            stable_hash(&match &t {
                TensorData::F32(a) => a.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
                TensorData::BF16(a) => a.iter().flat_map(|v| v.to_le_bytes()).collect(),
                TensorData::I64(a) => a.iter().flat_map(|v| v.to_le_bytes()).collect(),
            })
            .to_le_bytes(),
        );
    }
    Ok(stable_hash(&b))
}

fn key_of(
    model_name: &str,
    weights: u64,
    form: &InferenceOptions,
    engine: &Engine,
    loader: &Loader,
    spec: &FeatureSpec,
) -> Result<u64> {
    let mut b = Vec::new();
    b.extend(model_name.as_bytes());
    b.extend(weights.to_le_bytes());
    b.extend(form.label().as_bytes());
    b.extend(engine.key().as_bytes());
    b.extend(format!("{:?}", loader.transform()).as_bytes());
    b.extend(format!("{spec:?}").as_bytes());
    b.extend(loader.dataset().fingerprint()?.to_le_bytes());
    Ok(stable_hash(&b))
}

/// The cache key of extracting `spec` from `model` over `loader` with the default options.
pub fn cache_key<B: Backend>(model: &Model<B>, loader: &Loader, spec: &FeatureSpec) -> Result<u64> {
    let o = ExtractOptions::default();
    key_of(
        model.name(),
        model_hash(model)?,
        &o.form(model),
        &o.engine,
        loader,
        spec,
    )
}

/// How the trunk runs during an extraction.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExtractOptions {
    /// The inference copy the trunk pass runs on (default: fp32, BatchNorm folded, channels-last
    /// where it pays — the same features within float rounding, faster). `bf16()` halves the
    /// precision for 2-6x the speed on CPUs with AMX (docs/benchmarks.md); the cache keeps the two apart. A model
    /// that already is an inference copy runs as it is.
    pub inference: InferenceOptions,
    /// What runs the trunk: the model's backend (default) or ONNX Runtime.
    pub engine: Engine,
}

impl ExtractOptions {
    /// bf16 extraction.
    pub fn bf16() -> Self {
        Self {
            inference: InferenceOptions::bf16(),
            engine: Engine::Backend,
        }
    }
    /// fp32 extraction on ONNX Runtime with `threads` intra-op threads (0: its default).
    pub fn onnx_runtime(threads: usize) -> Self {
        Self {
            engine: Engine::OnnxRuntime { threads },
            ..Self::default()
        }
    }
    /// int8 extraction on ONNX Runtime (`threads` intra-op threads) with the ranges of
    /// `calibration` ([`calibrate_int8`] of the same model).
    pub fn onnx_runtime_int8(threads: usize, calibration: std::sync::Arc<Int8Calibration>) -> Self {
        Self {
            engine: Engine::OnnxRuntimeInt8 {
                threads,
                calibration,
            },
            ..Self::default()
        }
    }
    fn form<B: Backend>(&self, model: &Model<B>) -> InferenceOptions {
        model.inference().copied().unwrap_or(self.inference)
    }
}

const CLASS_SEP: char = '\u{1f}';

/// The SHA-256 of a cache's features and labels as stored (little-endian bytes).
fn checksum(features: &[f32], labels: &[usize]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for v in features {
        h.update(v.to_le_bytes());
    }
    for &l in labels {
        h.update((l as i64).to_le_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A cache file, or why it cannot be used: unreadable, or its content no longer matches the
/// checksum written with it (a corrupted disk, a partial copy). Either way the caller computes
/// the features again.
pub(crate) fn try_cache(path: &Path, spec: &FeatureSpec) -> std::result::Result<Features, String> {
    let (f, stored) = read_cache(path, spec).map_err(|e| e.to_string())?;
    let actual = checksum(&f.data, &f.labels);
    match stored {
        Some(s) if s == actual => {}
        Some(_) => return Err(format!("{}: checksum mismatch (corrupted)", path.display())),
        None => return Err(format!("{}: no checksum (an older cache)", path.display())),
    }
    if let Some(i) = f.data.iter().position(|v| !v.is_finite()) {
        return Err(format!(
            "{}: non-finite feature at row {}",
            path.display(),
            i / f.dim.max(1)
        ));
    }
    Ok(f)
}

/// The features of a cache file and the checksum stored with them.
fn read_cache(path: &Path, spec: &FeatureSpec) -> Result<(Features, Option<String>)> {
    let (t, meta) = load(path)?;
    let (Some(x), Some(y)) = (t.get("features"), t.get("labels")) else {
        return Err(Error::format(
            path,
            "a feature cache holds `features` and `labels`",
        ));
    };
    let s = x.shape().to_vec();
    if s.len() != 2 || y.shape() != [s[0]] {
        return Err(Error::format(
            path,
            format!("features {s:?} and labels {:?} do not match", y.shape()),
        ));
    }
    let labels = y
        .as_i64("feature cache")?
        .iter()
        .map(|&v| v as usize)
        .collect();
    let classes = meta
        .as_ref()
        .and_then(|m| m.get("classes"))
        .filter(|c| !c.is_empty())
        .map(|c| c.split(CLASS_SEP).map(str::to_string).collect())
        .unwrap_or_default();
    let stored = meta.as_ref().and_then(|m| m.get("sha256").cloned());
    Ok((
        Features {
            n: s[0],
            dim: s[1],
            data: x.to_f32().iter().copied().collect(),
            labels,
            classes,
            spec: spec.clone(),
        },
        stored,
    ))
}

fn write_cache(path: &Path, model: &str, f: &Features) -> Result<()> {
    let mut t = BTreeMap::new();
    t.insert(
        "features".to_string(),
        TensorData::f32(&[f.n, f.dim], f.data.clone())?,
    );
    t.insert(
        "labels".to_string(),
        TensorData::i64(&[f.n], f.labels.iter().map(|&l| l as i64).collect())?,
    );
    let mut meta = HashMap::new();
    meta.insert("model".to_string(), model.to_string());
    meta.insert("spec".to_string(), f.spec.to_string());
    meta.insert("sha256".to_string(), checksum(&f.data, &f.labels));
    meta.insert(
        "classes".to_string(),
        f.classes.join(&CLASS_SEP.to_string()),
    );
    save(path, &t, Some(meta))
}

/// Extracts features (batches in dataset order, eval mode), reading them from `cache_dir` when
/// an identical extraction was cached and writing them there otherwise.
pub fn extract<B: Backend>(
    model: &Model<B>,
    loader: &Loader,
    spec: &FeatureSpec,
    cache_dir: &Path,
) -> Result<(Features, ExtractReport)> {
    let (mut v, r) = extract_many(model, loader, std::slice::from_ref(spec), cache_dir)?;
    let f = v
        .pop()
        .ok_or_else(|| Error::invalid("extract", "no features"))?;
    Ok((f, r))
}

/// Extracts several specs in one pass over the data (one trunk forward per batch serves every
/// stage asked for; pooled features take a full forward). Each spec has its own cache file; the
/// pass runs only when one of them is missing. Default [`ExtractOptions`].
pub fn extract_many<B: Backend>(
    model: &Model<B>,
    loader: &Loader,
    specs: &[FeatureSpec],
    cache_dir: &Path,
) -> Result<(Vec<Features>, ExtractReport)> {
    extract_many_with(model, loader, specs, cache_dir, &ExtractOptions::default())
}

/// [`extract_many`] with explicit options (bf16, say).
pub fn extract_many_with<B: Backend>(
    model: &Model<B>,
    loader: &Loader,
    specs: &[FeatureSpec],
    cache_dir: &Path,
    opts: &ExtractOptions,
) -> Result<(Vec<Features>, ExtractReport)> {
    if loader.config().shuffle {
        return Err(Error::invalid(
            "extract",
            "the loader must not shuffle (features are stored in dataset order)",
        ));
    }
    if specs.is_empty() {
        return Err(Error::invalid("extract", "no feature spec given"));
    }
    let weights = model_hash(model)?;
    let form = opts.form(model);
    let paths = specs
        .iter()
        .map(|s| {
            key_of(model.name(), weights, &form, &opts.engine, loader, s)
                .map(|k| cache_dir.join(format!("features-{k:016x}.safetensors")))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut recomputed = Vec::new();
    if paths.iter().all(|p| p.exists()) {
        let mut f = Vec::new();
        for (s, p) in specs.iter().zip(&paths) {
            match try_cache(p, s) {
                Ok(x) => f.push(x),
                Err(why) => {
                    recomputed.push(why);
                    break;
                }
            }
        }
        if recomputed.is_empty() {
            return Ok((
                f,
                ExtractReport {
                    paths,
                    cached: true,
                    forwards: 0,
                    recomputed,
                },
            ));
        }
    }
    let copy;
    let model = match model.inference() {
        Some(_) => model,
        None => {
            copy = model.for_inference(&form)?;
            &copy
        }
    };
    let b = model.backend();
    let ctx = Ctx::eval();
    let mut ort = engine::OrtTrunk::new(model, weights, specs, &opts.engine)?;
    let stages: Vec<&str> = specs
        .iter()
        .filter_map(|s| match s {
            FeatureSpec::Stage(n) => Some(n.as_str()),
            FeatureSpec::Pooled | FeatureSpec::Logits => None,
        })
        .collect();
    let want_pooled = specs.contains(&FeatureSpec::Pooled);
    let want_logits = specs.contains(&FeatureSpec::Logits);
    let mut out: Vec<(Vec<f32>, usize)> = vec![(Vec::new(), 0); specs.len()];
    let mut labels = Vec::new();
    let mut forwards = 0;
    for batch in loader.epoch(0) {
        let batch = batch?;
        let (pooled, logits, x) = match &mut ort {
            Some(t) => {
                // ONNX Runtime reads the batch from the host: checked, not uploaded
                model.check_batch(&batch.inputs)?;
                let p = b.from_data(&t.pooled(model, &batch.inputs)?)?;
                let l = match want_logits {
                    true => Some(model.forward_classifier(&p, &ctx)?),
                    false => None,
                };
                (Some(p), l, None)
            }
            None => {
                let x = model.input(&batch.inputs)?;
                let (p, l) = match (want_pooled, want_logits) {
                    (true, true) => {
                        let (p, l) = model.forward_pooled_and_logits(&x, &ctx)?;
                        (Some(p), Some(l))
                    }
                    (true, false) => (Some(model.forward_pooled(&x, &ctx)?), None),
                    (false, true) => (None, Some(model.forward(&x, &ctx)?)),
                    (false, false) => (None, None),
                };
                (p, l, Some(x))
            }
        };
        if want_pooled || want_logits {
            forwards += 1;
        }
        let maps = if stages.is_empty() {
            Vec::new()
        } else {
            forwards += 1;
            // the ONNX Runtime engine refuses stage specs before the loop
            let x = x.ok_or_else(|| {
                Error::invalid("extract", "stage features run on the backend engine")
            })?;
            model.forward_stages(&x, &stages, &ctx)?
        };
        let mut maps = maps.into_iter();
        for (spec, (data, dim)) in specs.iter().zip(out.iter_mut()) {
            let y = match spec {
                FeatureSpec::Pooled => pooled
                    .clone()
                    .ok_or_else(|| Error::invalid("extract", "pooled features missing"))?,
                FeatureSpec::Logits => logits
                    .clone()
                    .ok_or_else(|| Error::invalid("extract", "logits missing"))?,
                FeatureSpec::Stage(_) => {
                    let m = maps
                        .next()
                        .ok_or_else(|| Error::invalid("extract", "stage output missing"))?;
                    b.flatten(&b.adaptive_avg_pool2d(&m, (1, 1))?, 1, 3)?
                }
            };
            let y = b.to_data(&b.cast(&y, DType::F32)?)?.to_f32();
            *dim = y.shape()[1];
            if let Some(i) = y.iter().position(|v| !v.is_finite()) {
                return Err(non_finite(
                    model.name(),
                    spec,
                    labels.len() + i / (*dim).max(1),
                ));
            }
            data.extend(y.iter().copied());
        }
        labels.extend(batch.labels);
    }
    if labels.is_empty() {
        return Err(Error::invalid("extract", "the loader yielded no samples"));
    }
    std::fs::create_dir_all(cache_dir).map_err(|e| Error::io(cache_dir, e))?;
    let classes = loader.dataset().classes().to_vec();
    let mut feats = Vec::with_capacity(specs.len());
    for ((spec, (data, dim)), path) in specs.iter().zip(out).zip(&paths) {
        let f = Features {
            n: labels.len(),
            dim,
            data,
            labels: labels.clone(),
            classes: classes.clone(),
            spec: spec.clone(),
        };
        write_cache(path, model.name(), &f)?;
        feats.push(f);
    }
    Ok((
        feats,
        ExtractReport {
            paths,
            cached: false,
            forwards,
            recomputed,
        },
    ))
}

/// The error for a feature that is NaN or infinite: where it came from, and what usually causes
/// it (a NaN / infinite weight — the load report lists them — or input).
pub(crate) fn non_finite(model: &str, spec: &FeatureSpec, sample: usize) -> Error {
    Error::invalid(
        "extract",
        format!(
            "{model}: the {spec} features of sample {sample} are not finite (NaN or infinite weights or input values; the load report lists bad weights)"
        ),
    )
}

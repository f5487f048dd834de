//! graft-reuse: direct reuse — run a model trained on a related task on the target data as it
//! is. A [`LabelMap`] sends each target class to one or more source classes (their predicted
//! probabilities are summed); [`reestimate_batch_norm`] recomputes every BatchNorm layer's running
//! statistics as a cumulative average over unlabelled target data (through the forward context,
//! no parameter changes); [`evaluate_reuse`] reports accuracy, per-class accuracy and the
//! confusion matrix.
//!
//! Must not know: concrete backends, training, optimizers, TOML.

use graft_backend::{
    AutodiffBackend, Backend, Ctx, DType, ModeRule, ModeTable, NormMode, TensorData,
};
use graft_core::{Error, Result};
use graft_data::Loader;
use graft_zoo::Model;

/// Target class → source classes.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelMap {
    targets: Vec<String>,
    sources: Vec<Vec<usize>>,
    num_source: usize,
}

impl LabelMap {
    /// An explicit map: `sources[t]` are the source classes of target class `t`.
    pub fn new(targets: Vec<String>, sources: Vec<Vec<usize>>, num_source: usize) -> Result<Self> {
        if targets.len() != sources.len() {
            return Err(Error::invalid(
                "LabelMap",
                format!(
                    "{} target names for {} source lists",
                    targets.len(),
                    sources.len()
                ),
            ));
        }
        for (t, s) in targets.iter().zip(&sources) {
            if s.is_empty() {
                return Err(Error::invalid(
                    "LabelMap",
                    format!("target class {t:?} maps to no source class"),
                ));
            }
            if let Some(bad) = s.iter().find(|&&c| c >= num_source) {
                return Err(Error::invalid(
                    "LabelMap",
                    format!(
                        "target class {t:?} maps to source class {bad}, but the model has {num_source}"
                    ),
                ));
            }
        }
        Ok(Self {
            targets,
            sources,
            num_source,
        })
    }
    /// Identity by name: each target class maps to the source class of the same name; a target
    /// name the source lacks is an error naming it.
    pub fn by_names(targets: &[String], source: &[String]) -> Result<Self> {
        let sources = targets
            .iter()
            .map(|t| {
                source
                    .iter()
                    .position(|s| s == t)
                    .map(|i| vec![i])
                    .ok_or_else(|| {
                        Error::invalid(
                            "LabelMap",
                            format!(
                                "target class {t:?} is not a source class ({})",
                                source.join(", ")
                            ),
                        )
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        Self::new(targets.to_vec(), sources, source.len())
    }
    /// Target class names.
    pub fn targets(&self) -> &[String] {
        &self.targets
    }
    /// Sums the source probabilities of each target class.
    pub fn map_probs(&self, source_probs: &[f32]) -> Vec<f32> {
        self.sources
            .iter()
            .map(|s| {
                s.iter()
                    .map(|&c| source_probs.get(c).copied().unwrap_or(0.0))
                    .sum()
            })
            .collect()
    }
}

/// Accuracy of a reused model on target data.
#[derive(Debug, Clone, PartialEq)]
pub struct ReuseReport {
    pub samples: usize,
    pub accuracy: f64,
    pub per_class: Vec<f64>,
    /// `confusion[true][predicted]` over target classes.
    pub confusion: Vec<Vec<usize>>,
}

/// Runs `model` on every batch of `loader` (labels are target classes) in eval mode with
/// `modes`, maps the softmax probabilities through `map`, and scores the argmax.
pub fn evaluate_reuse<B: Backend>(
    model: &Model<B>,
    loader: &Loader,
    map: &LabelMap,
    modes: &ModeTable,
) -> Result<ReuseReport> {
    if model.num_classes() != map.num_source {
        return Err(Error::invalid(
            "evaluate_reuse",
            format!(
                "the label map is for {} source classes, {} has {}",
                map.num_source,
                model.name(),
                model.num_classes()
            ),
        ));
    }
    let b = model.backend();
    let nt = map.targets.len();
    let mut confusion = graft_core::confusion::Confusion::new(nt);
    let mut n = 0;
    for batch in loader.epoch(0) {
        let batch = batch?;
        let probs = b.softmax(
            &model.forward_batch(&batch.inputs, &Ctx::eval_with(modes))?,
            1,
        )?;
        let p = b.to_data(&b.cast(&probs, DType::F32)?)?.to_f32();
        let c = p.shape()[1];
        let flat: Vec<f32> = p.iter().copied().collect();
        for (i, &y) in batch.labels.iter().enumerate() {
            if y >= nt {
                return Err(Error::invalid(
                    "evaluate_reuse",
                    format!("label {y} but the map has {nt} target classes"),
                ));
            }
            let mapped = map.map_probs(&flat[i * c..(i + 1) * c]);
            let pred = mapped
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(k, _)| k);
            confusion.add(y, pred);
            n += 1;
        }
    }
    Ok(ReuseReport {
        samples: n,
        accuracy: confusion.accuracy(),
        per_class: confusion.per_class(),
        confusion: confusion.into_matrix(),
    })
}

/// Recomputes every BatchNorm layer's running mean / var as the cumulative average over up to
/// `max_batches` batches of `loader` (labels unused): statistics reset (mean 0, var 1, count 0),
/// then forwards with every BatchNorm in `Reestimate` mode and no autograd. Parameters are not
/// touched. Returns the number of batches used.
pub fn reestimate_batch_norm<B: AutodiffBackend>(
    model: &Model<B>,
    loader: &Loader,
    max_batches: Option<usize>,
) -> Result<usize> {
    let b = model.backend().clone();
    let layers = model.batch_norm_layers();
    if layers.is_empty() {
        return Err(Error::invalid(
            "reestimate_batch_norm",
            format!("{} has no BatchNorm layers", model.name()),
        ));
    }
    for l in &layers {
        for (name, value) in [
            ("running_mean", 0.0),
            ("running_var", 1.0),
            ("num_batches_tracked", 0.0),
        ] {
            let full = format!("{l}.{name}");
            if let Some(t) = model.params().try_get(&full) {
                let fill = b.full(&b.shape(t), value, b.dtype(t))?;
                b.no_grad(|| b.assign(t, &fill))?;
            }
        }
    }
    let mut modes = ModeTable::new();
    modes.set(
        "",
        ModeRule {
            norm: Some(NormMode::Reestimate),
            dropout_off: true,
        },
    );
    let mut used = 0;
    for batch in loader.epoch(0) {
        if max_batches.is_some_and(|m| used >= m) {
            break;
        }
        let batch = batch?;
        b.no_grad(|| model.forward_batch(&batch.inputs, &Ctx::eval_with(&modes)))?;
        used += 1;
    }
    if used == 0 {
        return Err(Error::invalid(
            "reestimate_batch_norm",
            "no batches to re-estimate on",
        ));
    }
    Ok(used)
}

/// Host values of every BatchNorm running statistic (to compare or restore).
pub fn batch_norm_stats<B: Backend>(model: &Model<B>) -> Result<Vec<(String, TensorData)>> {
    let b = model.backend();
    let mut v = Vec::new();
    for l in model.batch_norm_layers() {
        for name in ["running_mean", "running_var", "num_batches_tracked"] {
            let full = format!("{l}.{name}");
            if let Some(t) = model.params().try_get(&full) {
                v.push((full, b.to_data(t)?));
            }
        }
    }
    Ok(v)
}

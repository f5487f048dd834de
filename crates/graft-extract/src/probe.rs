//! The per-stage linear probe and the freeze depth it recommends.
//!
//! Rule: fit a logistic head on the pooled output of every trunk stage (one pass over the data
//! serves all stages) and score it on the validation set. The *chosen* stage is the deepest one
//! whose validation accuracy is within `tolerance` of the best; the recommendation is to freeze
//! the stages up to and including it and fine-tune the ones above (`FreezeConfig::freeze_to(k)`,
//! `k` = its index + 1). When the last stage is chosen, every trunk stage stays frozen: a linear
//! probe on the final features (feature extraction). A target far from the source probes best
//! low in the trunk (its top stages encode source-specific features), so more stages get freed.
//! The deepest stage within the tolerance wins ties because freezing more is cheaper and safer
//! with little target data.

use std::fmt;
use std::path::Path;

use graft_backend::Backend;
use graft_core::{Error, Result};
use graft_data::Loader;
use graft_surgery::FreezeConfig;
use graft_zoo::Model;

use crate::heads::{LogisticConfig, LogisticHead, accuracy};
use crate::{FeatureSpec, extract_many};

/// Probe settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeConfig {
    pub logistic: LogisticConfig,
    /// A stage within this much validation accuracy (a fraction) of the best counts as best.
    pub tolerance: f64,
    /// Stages to probe (default: every trunk stage).
    pub stages: Option<Vec<String>>,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            logistic: LogisticConfig::default(),
            tolerance: 0.01,
            stages: None,
        }
    }
}

/// One probed stage.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeRow {
    pub stage: String,
    /// Index in the model's stage table (stem = 0).
    pub index: usize,
    pub dim: usize,
    pub train_accuracy: f64,
    pub val_accuracy: f64,
}

/// The probe table and its recommendation.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeReport {
    pub model: String,
    pub rows: Vec<ProbeRow>,
    /// Row with the best validation accuracy.
    pub best: usize,
    /// Row the rule chose (the deepest within `tolerance` of the best).
    pub chosen: usize,
    /// Stages to freeze from the bottom: `chosen`'s stage index + 1.
    pub freeze_stages: usize,
    /// Trunk stages of the model.
    pub trunk_stages: usize,
    /// Forwards run (0 when every stage's features were cached).
    pub forwards: usize,
}

impl ProbeReport {
    /// The recommended freezing (`freeze_to(freeze_stages)`).
    pub fn freeze_config(&self) -> FreezeConfig {
        FreezeConfig::freeze_to(self.freeze_stages)
    }
}

impl fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "linear probe of {} per stage", self.model)?;
        writeln!(
            f,
            "{:<12} {:>6} {:>10} {:>10}",
            "stage", "dim", "train acc", "val acc"
        )?;
        for (i, r) in self.rows.iter().enumerate() {
            let mark = match (i == self.best, i == self.chosen) {
                (_, true) => "  <- chosen",
                (true, false) => "  (best)",
                _ => "",
            };
            writeln!(
                f,
                "{:<12} {:>6} {:>9.2}% {:>9.2}%{mark}",
                r.stage,
                r.dim,
                100.0 * r.train_accuracy,
                100.0 * r.val_accuracy
            )?;
        }
        let free = self.trunk_stages.saturating_sub(self.freeze_stages);
        if free == 0 {
            write!(
                f,
                "recommendation: freeze all {} trunk stages, train the head only (feature extraction)",
                self.trunk_stages
            )
        } else {
            write!(
                f,
                "recommendation: freeze the bottom {} stages (through {}), fine-tune the {free} above and the head",
                self.freeze_stages, self.rows[self.chosen].stage
            )
        }
    }
}

/// Probes every trunk stage of `model` (or `cfg.stages`): features of `train` and `val` cached
/// in `cache_dir`, a logistic head per stage, the table and the recommended freeze depth.
pub fn probe<B: Backend>(
    model: &Model<B>,
    train: &Loader,
    val: &Loader,
    cache_dir: &Path,
    cfg: &ProbeConfig,
) -> Result<ProbeReport> {
    let specs = model.arch().stage_specs();
    let names: Vec<String> = match &cfg.stages {
        Some(s) => s.clone(),
        None => specs.iter().map(|s| s.name.clone()).collect(),
    };
    if names.is_empty() {
        return Err(Error::invalid("probe", "no stage to probe"));
    }
    let mut index = Vec::with_capacity(names.len());
    for n in &names {
        match specs.iter().position(|s| &s.name == n) {
            Some(i) => index.push(i),
            None => {
                let all: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
                return Err(Error::invalid(
                    "probe",
                    format!("{} has no stage {n:?} (stages: {all:?})", model.name()),
                ));
            }
        }
    }
    let feature_specs: Vec<FeatureSpec> = names
        .iter()
        .map(|n| FeatureSpec::Stage(n.clone()))
        .collect();
    let (tr, rt) = extract_many(model, train, &feature_specs, cache_dir)?;
    let (va, rv) = extract_many(model, val, &feature_specs, cache_dir)?;
    let classes = train.dataset().classes().len();
    let mut rows = Vec::with_capacity(names.len());
    for ((name, &i), (t, v)) in names.iter().zip(&index).zip(tr.iter().zip(&va)) {
        let head = LogisticHead::fit(t, classes, &cfg.logistic)?;
        rows.push(ProbeRow {
            stage: name.clone(),
            index: i,
            dim: t.dim,
            train_accuracy: accuracy(&head.predict(t)?, t),
            val_accuracy: accuracy(&head.predict(v)?, v),
        });
    }
    let best = rows
        .iter()
        .enumerate()
        .max_by(|a, b| {
            a.1.val_accuracy
                .total_cmp(&b.1.val_accuracy)
                .then(b.1.index.cmp(&a.1.index))
        })
        .map_or(0, |(k, _)| k);
    let floor = rows[best].val_accuracy - cfg.tolerance;
    let chosen = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r.val_accuracy >= floor)
        .max_by_key(|(_, r)| r.index)
        .map_or(best, |(k, _)| k);
    Ok(ProbeReport {
        model: model.name().to_string(),
        freeze_stages: rows[chosen].index + 1,
        rows,
        best,
        chosen,
        trunk_stages: specs.len(),
        forwards: rt.forwards + rv.forwards,
    })
}

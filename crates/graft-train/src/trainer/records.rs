//! What a run records: step and epoch lines, the history, and the callback hooks.

use std::path::Path;

use graft_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::metrics::ClassMetrics;

/// One optimizer step, as logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub epoch: usize,
    pub step: usize,
    pub loss: f64,
    /// The highest group LR (the head's, under a spread).
    pub lr: f64,
    pub grad_norm: Option<f64>,
    /// Wall-clock seconds since the process started this run (not reproducible).
    pub time_s: f64,
}

/// One epoch, as logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub step: usize,
    pub train_loss: f64,
    pub val: Option<ClassMetrics>,
    pub ema_val: Option<ClassMetrics>,
    /// Training images per second this epoch (wall clock).
    pub img_per_s: f64,
    pub time_s: f64,
    /// Multi-task runs: each task's training loss and validation metrics this epoch.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub tasks: std::collections::BTreeMap<String, crate::multitask::TaskRecord>,
}

/// What a callback wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    Stop,
}

/// Hooks into the one loop (fastai's callbacks, reduced to what graft's strategies use). The
/// library's own LR finder is one ([`crate::lr_find`]): it drives the LR and stops the sweep.
pub trait Callback {
    /// The loss of each batch, before its backward pass (`step`: optimizer steps done so far).
    /// `Stop` ends the run here, before this batch changes anything — also when the loss is not
    /// finite, which is otherwise an error.
    fn on_loss(&mut self, _step: usize, _loss: f64) -> Control {
        Control::Continue
    }
    /// A factor on every group's base LR for optimizer step `step`, in place of the schedule's
    /// (`None`: the schedule's).
    fn lr_factor(&mut self, _step: usize) -> Option<f64> {
        None
    }
    /// After each optimizer step; `Stop` ends the run after this epoch's evaluation.
    fn on_step(&mut self, _r: &StepRecord) -> Control {
        Control::Continue
    }
    /// After each epoch; `Stop` ends the run.
    fn on_epoch(&mut self, _r: &EpochRecord) -> Control {
        Control::Continue
    }
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub steps: Vec<StepRecord>,
    pub epochs: Vec<EpochRecord>,
    pub stopped_early: bool,
}

impl History {
    /// Reads a run's `metrics.jsonl` back (step and epoch lines; wall-clock fields included).
    pub fn from_metrics(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut h = History::default();
        for (i, line) in text.lines().enumerate() {
            let v: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| Error::format(path, format!("line {}: {e}", i + 1)))?;
            let bad = |e: serde_json::Error| Error::format(path, format!("line {}: {e}", i + 1));
            match v.get("kind").and_then(|k| k.as_str()) {
                Some("step") => h.steps.push(serde_json::from_value(v).map_err(bad)?),
                Some("epoch") => h.epochs.push(serde_json::from_value(v).map_err(bad)?),
                _ => {
                    return Err(Error::format(
                        path,
                        format!("line {}: no kind step / epoch", i + 1),
                    ));
                }
            }
        }
        Ok(h)
    }
    /// Writes the history as a `metrics.jsonl` ([`History::from_metrics`] reads it back): step
    /// lines, then epoch lines, each with its `kind` (atomically).
    pub fn write_metrics(&self, path: &Path) -> Result<()> {
        fn line<T: Serialize>(kind: &str, r: &T) -> Result<String> {
            let mut v = serde_json::to_value(r).map_err(|e| Error::Training(e.to_string()))?;
            if let serde_json::Value::Object(m) = &mut v {
                m.insert("kind".into(), serde_json::Value::String(kind.into()));
            }
            Ok(format!("{v}\n"))
        }
        let mut out = String::new();
        for s in &self.steps {
            out.push_str(&line("step", s)?);
        }
        for e in &self.epochs {
            out.push_str(&line("epoch", e)?);
        }
        graft_backend::safetensors_io::write_atomic(path, out.as_bytes())
    }
}
